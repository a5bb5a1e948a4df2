"""Every Slurm call baton makes is counted by command and kind of process, all of them
share one budget, and the exporter serves the counts: on the real single-node Slurm."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from baton.config import Config, load_config
from baton.exporter.server import build_registry
from baton.ledger import open_ledger
from baton.slurm.budget import ProcessKind, read_calls
from baton.slurm.factory import make_backend
from baton.slurm.sbatch import SbatchBackend
from baton.slurm.spec import JobSpec
from tests.exporter.test_exporter import sample

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm")]
ROOT = Path(__file__).resolve().parents[2]


def sbatch_backend(config: Config, process: ProcessKind) -> SbatchBackend:
    backend = make_backend(config, "sbatch", process)
    assert isinstance(backend, SbatchBackend)
    return backend


def recorded(backend: SbatchBackend) -> Counter[str]:
    """The commands ``backend`` really runs from now on, as they start."""
    seen: Counter[str] = Counter()
    runner = backend.runner

    def run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        seen[argv[0]] += 1
        return runner(argv)

    backend.runner = run
    return seen


def by_process(config: Config, process: str) -> Counter[str]:
    return Counter({c: n for (c, p), n in read_calls(config.state_dir).items() if p == process})


def test_calls_are_counted_by_command_and_process(config: Config, tmp_path: Path) -> None:
    run = sbatch_backend(config, "run")
    ran = recorded(run)
    script = tmp_path / "counted.sh"
    script.write_text("#!/bin/bash\nsleep 60\n")
    spec = JobSpec(name="counted", script=script.read_text(), time="00:05:00", mem="50M",
                   output=str(tmp_path / "%j.out"))
    job = run.submit(spec, script).job_id
    try:
        run.queue_states()
        assert run.status([job])[job].state in ("PENDING", "RUNNING")
    finally:
        run.cancel([job])
    assert set(ran) == {"sbatch", "squeue", "scancel"}  # a queued job: squeue, no sacct
    assert by_process(config, "run") == ran

    daemon = sbatch_backend(config, "daemon")
    polled = recorded(daemon)
    daemon.status([job], known={job: "CANCELLED"})  # it left the queue: sacct only
    assert by_process(config, "daemon") == polled and polled["sacct"] >= 1
    assert by_process(config, "run") == ran  # the daemon's calls are its own

    env = {**os.environ, "SHARED_DRIVE": str(config.shared_drive), "BATON_CONFIG": "",
           "BATON_STATE_DIR": str(config.state_dir), "BATON_SLURM_BACKEND": "sbatch",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("BATON_DATABASE_URL", None)
    proc = subprocess.run([sys.executable, "-m", "baton", "slurm", "status", job], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    command = by_process(config, "command")
    assert command["sacct"] >= 1 and set(command) <= {"sacct", "squeue", "scontrol"}, command
    assert by_process(config, "daemon") == polled and by_process(config, "run") == ran


RATE, BURST, CALLS = 4.0, 2, 8  # two processes of CALLS squeue each: 4 s at 4 calls/s


def _poll(config_path: str, process: ProcessKind, out: multiprocessing.Queue) -> None:
    backend = sbatch_backend(load_config(config_path, env={}), process)
    runner = backend.runner

    def timed(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        out.put(time.time())  # when the command really starts
        return runner(argv)

    backend.runner = timed
    for _ in range(CALLS):
        backend.queue_states()


def test_two_processes_share_the_budget(tmp_path: Path) -> None:
    path = tmp_path / "baton.yaml"
    path.write_text(f"shared_drive: {tmp_path / 'drive'}\nstate_dir: {tmp_path / 'state'}\n"
                    f"slurm:\n  calls_per_second: {RATE}\n  calls_burst: {BURST}\n")
    config = load_config(path, env={})
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_poll, args=(str(path), kind, out))
             for kind in ("daemon", "run")]
    for p in procs:
        p.start()
    times = sorted(out.get(timeout=120) for _ in range(2 * CALLS))
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert read_calls(config.state_dir) == {("squeue", "daemon"): CALLS,
                                            ("squeue", "run"): CALLS}
    # a token bucket: no window of w seconds holds more than BURST + RATE x w calls (with
    # 0.25 s for a sleep that ends late); unpaced, the 16 calls come within a second
    slack = 0.25
    for i, j in itertools.combinations(range(len(times)), 2):
        window = times[j] - times[i]
        assert j - i + 1 <= BURST + RATE * (window + slack), (i, j, window, times)


def test_exporter_serves_the_counts(config: Config) -> None:
    open_ledger(config.ledger_url, init=True).close()
    daemon = sbatch_backend(config, "daemon")
    polled = recorded(daemon)
    daemon.queue_states()
    registry, collector = build_registry(config)
    text = generate_latest(registry).decode()
    assert sample(text, "baton_exporter_component_up", component="slurm_calls") == 1
    assert sample(text, "baton_slurm_calls_total", command="squeue",
                  process="daemon") == polled["squeue"] == 1
    # the exporter's queue figures come from the tracker's snapshot (the ledger): no squeue
    assert sample(text, "baton_slurm_calls_total", command="squeue", process="exporter") == 0
    assert sample(text, "baton_slurm_calls_total", command="sbatch", process="run") == 0
    collector.ledger.close()
