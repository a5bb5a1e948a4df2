"""``baton exporter`` logs through baton's logging configuration: its lines are JSON lines
in the configured file, not on its standard error."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from baton.config import Config
from baton.ledger import open_ledger
from tests.e2e.harness import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_the_exporter_writes_the_configured_log(config: Config, tmp_path: Path) -> None:
    open_ledger(config.ledger_url, init=True).close()
    log = tmp_path / "log" / "exporter.log"
    cfg = tmp_path / "baton.yaml"
    cfg.write_text(f"shared_drive: {config.shared_drive}\nstate_dir: {config.state_dir}\n"
                   "slurm:\n  backend: local\n"
                   "logging:\n  json_lines: true\n  file: ${EXPORTER_LOGS}/exporter.log\n")
    env = {**os.environ, "BATON_CONFIG": str(cfg), "EXPORTER_LOGS": str(log.parent),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    for var in ("SHARED_DRIVE", "BATON_STATE_DIR", "BATON_DATABASE_URL", "BATON_SLURM_BACKEND"):
        env.pop(var, None)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "baton", "exporter", "--port", str(port)],
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not (log.exists() and log.read_text().strip()):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no line in the exporter's log"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    first = json.loads(log.read_text().splitlines()[0])
    assert (first["level"], first["logger"]) == ("INFO", "baton.exporter.server")
    assert first["message"] == f"baton exporter on http://127.0.0.1:{port}/metrics"
    assert b"baton exporter on" not in stderr
