"""A real dagster-daemon (and web UI, and exporter) on a temporary drive, through the
end-to-end tests' harness, with evaluation jobs that real Slurm accepts but holds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

from baton.config import load_config
from bench.common import say
from bench.context import Context, scancel
from bench.slurm_held import held_config
from tests.e2e.harness import Pipeline, free_port


def start_pipeline(ctx: Context, name: str, interval: int = 1) -> Pipeline:
    """The harness's daemon, its baton.yaml replaced by one whose jobs are held."""
    root = ctx.dir(name)
    pipe = Pipeline(root, "sbatch")
    doc = yaml.safe_load(held_config(root / "held", interval_seconds=interval).read_text())
    doc.update(shared_drive=str(pipe.drive.root), state_dir=str(root / "state"))
    pipe.config_file.write_text(yaml.safe_dump(doc))
    pipe.config = load_config(pipe.config_file, pipe.env)
    ctx.at_exit(lambda: cancel_all(pipe))
    ctx.at_exit(pipe.stop)
    pipe.start()
    say(f"  dagster-daemon started (pid {pipe.daemon.pid if pipe.daemon else '?'}); "
        "waiting for the first sensor tick")
    pipe.wait_for("the training sensor's first tick",
                  lambda: "training_sensor" in pipe.ledger.heartbeats(), timeout=300)
    return pipe


def cancel_all(pipe: Pipeline) -> None:
    scancel([r.job_id for r in pipe.ledger.jobs() if r.job_id])


class Exporter:
    """``baton exporter`` on the pipeline's config, scraped like Prometheus would."""

    def __init__(self, pipe: Pipeline) -> None:
        self.port = free_port()
        log = open(pipe.tmp / "exporter.log", "ab")  # noqa: SIM115 - the process keeps it
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "baton"), "exporter", "--port", str(self.port)],
            env=pipe.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                self.scrape()
                return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError("the exporter did not answer within 60 s")

    def scrape(self) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=60) as r:
            return r.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)
