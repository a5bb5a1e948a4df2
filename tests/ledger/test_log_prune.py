"""`baton db prune` on SQLite and PostgreSQL: Slurm logs of successful jobs compressed,
then deleted, by age; a failure's logs and the rendered scripts kept; the logs' size
recorded for the exporter; a later run reads only the jobs of the retention window."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

from baton.config import Config
from baton.exporter.lifetime import lifetime_metrics
from baton.ledger import open_ledger
from baton.ledger.schema import slurm_jobs
from baton.maintenance.logprune import prune, tree_bytes


def _log(config: Config, name: str) -> Path:
    path = config.drive.logs / "evaluation" / name
    path.write_text(f"output of {name}\n" * 50)
    return path


def test_prune_compresses_then_deletes_successes_and_keeps_failures(
        config: Config, ledger_url: str) -> None:
    cfg = config.model_copy(update={"database_url": ledger_url})
    ledger = open_ledger(ledger_url, init=True)
    now = datetime.now(UTC)
    logs = {n: _log(cfg, f"{n}.log") for n in ("fresh", "week", "month", "failed", "late")}
    script = cfg.drive.logs / "scripts" / "evaluation" / "x" / "slurm_eval_x.attempt-1.sh"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/bash\n")

    def job(name: str, state: str, days: float, code: int = 0) -> None:
        with ledger.write() as conn:
            conn.execute(insert(slurm_jobs).values(
                submission_key=name, stage="evaluation", experiment="x", backend="local",
                state=state, exit_code=code, ended_at=now - timedelta(days=days), restarts=0,
                stdout_path=str(logs[name]), stderr_path=str(logs[name]),
                script_path=str(script), created_at=now, updated_at=now))

    job("fresh", "COMPLETED", 2)
    job("week", "COMPLETED", 10)
    job("month", "COMPLETED", 40)
    job("failed", "FAILED", 40, code=1)
    result = prune(cfg, now=now)
    assert (result.compressed, result.deleted) == (1, 1)
    assert logs["fresh"].is_file() and logs["failed"].is_file() and script.is_file()
    assert not logs["week"].exists()
    assert gzip.decompress(logs["week"].with_name("week.log.gz").read_bytes()) == \
        b"output of week.log\n" * 50
    assert not logs["month"].exists() and not logs["month"].with_name("month.log.gz").exists()
    assert result.logs_bytes == tree_bytes(cfg.drive.logs)
    [size] = [s.value for m in lifetime_metrics(ledger) for s in m.samples
              if s.name == "baton_drive_logs_bytes"]
    assert size == result.logs_bytes

    # a job that ended before the last run's window is not read again (its log is left)
    job("late", "COMPLETED", 45)
    env = {"SHARED_DRIVE": str(cfg.shared_drive), "BATON_STATE_DIR": str(cfg.state_dir),
           "BATON_DATABASE_URL": ledger_url, "BATON_CONFIG": ""}
    proc = subprocess.run([sys.executable, "-m", "baton", "db", "prune"], capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "compressed 0 and deleted 0 log(s)" in proc.stdout
    assert logs["late"].is_file()
    # the week-old log ages into deletion: its .gz goes
    later = prune(cfg, now=now + timedelta(days=25))
    assert later.deleted == 1 and not logs["week"].with_name("week.log.gz").exists()
    assert logs["fresh"].with_name("fresh.log.gz").is_file()
    ledger.close()
