"""A real Dagster daemon on baton's code location, with its own DAGSTER_HOME, drive, state
and baton.yaml, for the end-to-end tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from baton.config import load_config
from baton.inbox import publish
from baton.layout import DriveLayout
from baton.ledger import Ledger, open_ledger
from baton.signals import TrainingComplete

ROOT = Path(__file__).resolve().parents[2]
E2E = Path(__file__).resolve().parent


class Pipeline:
    def __init__(self, tmp: Path, backend: str, extra_env: dict[str, str] | None = None,
                 extra_config: str = "") -> None:
        self.tmp = tmp
        self.home = tmp / "dagster_home"
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        self.drive = DriveLayout(tmp / "drive")
        self.drive.create()
        self.config_file = tmp / "baton.yaml"
        py = sys.executable
        self.config_file.write_text(
            f"shared_drive: {self.drive.root}\nstate_dir: {tmp / 'state'}\n"
            f"slurm:\n  backend: {backend}\n  local_max_concurrent: 4\n"
            "sensors:\n  interval_seconds: 1\n  debounce_seconds: 0.2\n"
            "  full_rescan_seconds: 30\n  missing_signal_grace_seconds: 20\n"
            "stages:\n"
            f"  evaluation:\n    time: '00:05:00'\n    mem: 200M\n    cpus: 1\n"
            f"    command: {py} {E2E / 'fake_eval.py'}\n"
            f"  analysis:\n    time: '00:05:00'\n    mem: 200M\n    cpus: 1\n"
            f"    command: {py} {E2E / 'fake_analysis.py'}\n" + extra_config)
        self.env = {**os.environ, "DAGSTER_HOME": str(self.home),
                    "BATON_CONFIG": str(self.config_file), **(extra_env or {})}
        for var in ("SHARED_DRIVE", "BATON_STATE_DIR", "BATON_DATABASE_URL",
                    "BATON_SLURM_BACKEND"):
            self.env.pop(var, None)
        # create Dagster's storage once, before daemon and webserver race to create it
        subprocess.run([str(Path(sys.executable).parent / "dagster"), "instance", "migrate"],
                       env=self.env, check=True, capture_output=True, timeout=300)
        self.config = load_config(self.config_file, self.env)
        self.ledger: Ledger = open_ledger(self.config.ledger_url)
        self.daemon: subprocess.Popen[bytes] | None = None

    # --- the daemon ----------------------------------------------------------------------
    def start(self) -> None:
        log = open(self.tmp / "daemon.log", "ab")  # noqa: SIM115 - the daemon keeps it
        self.daemon = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w",
             str(ROOT / "workspace.yaml")], cwd=ROOT, env=self.env, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self, sig: int = signal.SIGKILL, group: bool = True) -> None:
        """Stop the daemon; ``group=False`` kills only the daemon process, as a crash of it
        would (the runs it launched go on)."""
        if self.daemon and self.daemon.poll() is None:
            if group:
                os.killpg(self.daemon.pid, sig)
            else:
                os.kill(self.daemon.pid, sig)
            self.daemon.wait(60)
        self.daemon = None

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def log_tail(self, n: int = 60) -> str:
        path = self.tmp / "daemon.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) \
            if path.exists() else ""

    # --- what a training run does ---------------------------------------------------------
    def train(self, experiment: str, campaign: str | None = None,
              checkpoints: list[str] | None = None) -> Path:
        layout = self.drive.experiment(experiment)
        layout.final_dir.mkdir(parents=True, exist_ok=True)
        (layout.final_dir / "model.safetensors").write_bytes(b"\0" * 1024)
        return publish(self.drive, TrainingComplete(
            timestamp=datetime.now(UTC), experiment=experiment, campaign=campaign,
            checkpoint_path=str(layout.final_dir), hostname="gpu01", user="tester",
            final_loss=1.5, total_steps=100, checkpoints=checkpoints))

    # --- Dagster's view ------------------------------------------------------------------
    def instance(self):
        from dagster import DagsterInstance

        os.environ["DAGSTER_HOME"] = str(self.home)
        return DagsterInstance.get()

    def materialized(self, asset: str, partition: str) -> bool:
        from dagster import AssetKey, AssetRecordsFilter

        records = self.instance().fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[partition]),
            limit=1).records
        return bool(records)

    def wait_for(self, what: str, condition: Callable[[], bool], timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.daemon is not None and self.daemon.poll() is not None:
                raise AssertionError(f"the daemon died while waiting for {what}:\n"
                                     + self.log_tail())
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}\n" + self.log_tail())
            time.sleep(1)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Webserver:
    """dagster-webserver on the same instance and code location, for the GraphQL API and
    the UI."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.p = pipeline
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        log = open(pipeline.tmp / "webserver.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster-webserver"), "-w",
             str(ROOT / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(self.port)],
            cwd=ROOT, env=pipeline.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        pipeline.wait_for("the webserver", self._up, timeout=120)
        self.graphql("mutation { setNuxSeen }")  # no "join the community" modal on top

    def _up(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(f"{self.url}/server_info", timeout=2) as r:
                return r.status == 200
        except OSError:
            if self.proc.poll() is not None:
                raise AssertionError((self.p.tmp / "webserver.log").read_text()) from None
            return False

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        import json
        import urllib.request

        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        req = urllib.request.Request(f"{self.url}/graphql", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            doc = json.loads(r.read())
        assert "errors" not in doc, doc
        return doc["data"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(60)
