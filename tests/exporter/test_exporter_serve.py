"""``baton exporter`` as it runs: a real HTTP /metrics that promtool accepts, with every
part up; and a process that never loads Dagster."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from baton.config import Config
from baton.ledger import open_ledger
from tests.e2e.harness import free_port
from tests.exporter.test_exporter import fake_squeue, flows, job, promtool_check_metrics, sample

ROOT = Path(__file__).resolve().parents[2]


def get(url: str, deadline: float = 60) -> tuple[bytes, str]:
    """The body and content type of ``url``, retried until the server answers."""
    end = time.monotonic() + deadline
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return r.read(), r.headers.get("Content-Type", "")
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > end:
                raise
            time.sleep(0.2)


def test_http_metrics_pass_promtool(config: Config, tmp_path: Path) -> None:
    ledger = open_ledger(config.ledger_url, init=True)
    job(ledger, "1", "evaluation", "COMPLETED")
    job(ledger, "2", "evaluation", "PENDING")
    flows(ledger)
    ledger.close()
    calls = tmp_path / "squeue-calls"
    port = free_port()
    env = {**os.environ, "SHARED_DRIVE": str(config.shared_drive),
           "BATON_STATE_DIR": str(config.state_dir), "BATON_SLURM_BACKEND": "sbatch",
           "BATON_CONFIG": "", "PATH": f"{fake_squeue(tmp_path, calls)}:{os.environ['PATH']}",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("BATON_DATABASE_URL", None)
    log = tmp_path / "exporter.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "baton", "exporter", "--port",
                                 str(port), "--queue-ttl", "3600"], env=env, cwd=tmp_path,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        body, content_type = get(f"http://127.0.0.1:{port}/metrics")
        assert content_type.startswith("text/plain"), content_type
        text = body.decode()
        for component in ("ledger", "slurm", "drive"):
            assert sample(text, "baton_exporter_component_up", component=component) == 1, \
                log.read_text()
        # the queue as the tracker last saw it (the ledger: job 2 pending), not squeue's
        assert sample(text, "baton_queue_depth") == 1
        assert sample(text, "baton_queue_jobs", state="pending") == 1
        assert sample(text, "baton_jobs", stage="evaluation", state="finished") == 1
        assert sample(text, "baton_training_to_evaluation_seconds_count") == 2
        promtool_check_metrics(body)
        get(f"http://127.0.0.1:{port}/metrics")  # a second scrape
        assert not calls.exists()  # the exporter asks Slurm nothing
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def test_exporter_imports_no_dagster() -> None:
    """The exporter runs where Dagster is not installed (design principle 7)."""
    code = ("import sys\nimport baton.exporter.server\nimport baton.cli\n"
            "print('\\n'.join(sorted(m for m in sys.modules if m.startswith('dagster'))))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"loaded: {proc.stdout.split()}"
    # the check itself sees a module that is loaded
    proc = subprocess.run([sys.executable, "-c", code.replace("import baton.cli",
                                                              "import dagster")],
                          capture_output=True, text=True, check=False, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert "dagster" in proc.stdout.split()
