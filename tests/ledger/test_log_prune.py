"""`baton db prune` on SQLite and PostgreSQL: Slurm logs of successful jobs compressed,
then deleted, by age; a failure's logs kept, and the rendered scripts while a job in the
ledger names them; the logs' size recorded for the exporter; a later run reads only the
jobs of the retention window."""

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


def test_scripts_go_once_their_jobs_left_for_the_archive(config: Config,
                                                         ledger_url: str) -> None:
    """A script a job in the ledger names is kept (`baton db rebuild` reads it); once its
    jobs are archived, having succeeded, it ages out like a log; a failure's is kept."""
    from baton.maintenance.archive import archive

    cfg = config.model_copy(update={"database_url": ledger_url})
    ledger = open_ledger(ledger_url, init=True)
    now = datetime.now(UTC)
    folder = cfg.drive.logs / "scripts" / "evaluation" / "x"
    folder.mkdir(parents=True)
    scripts = {n: folder / f"{n}.sh" for n in ("archived", "failed", "shared", "recent")}
    for path in scripts.values():
        path.write_text("#!/bin/bash\n")
    for key, state, days, script in (("a", "COMPLETED", 100, "archived"),
                                     ("f", "FAILED", 100, "failed"),
                                     ("s1", "COMPLETED", 100, "shared"),
                                     ("s2", "COMPLETED", 5, "shared"),
                                     ("r", "COMPLETED", 5, "recent")):
        with ledger.write() as conn:
            conn.execute(insert(slurm_jobs).values(
                submission_key=key, stage="evaluation", experiment="x", backend="local",
                state=state, exit_code=0 if state == "COMPLETED" else 1, restarts=0,
                ended_at=now - timedelta(days=days), script_path=str(scripts[script]),
                created_at=now, updated_at=now))
    assert archive(cfg, timedelta(days=90), now=now).rows["slurm_jobs"] == 3
    result = prune(cfg, now=now)
    assert result.deleted == 1 and not scripts["archived"].exists()
    assert scripts["failed"].is_file()  # a failure's script is kept
    assert scripts["shared"].is_file()  # a job still in the ledger names it
    assert scripts["recent"].is_file()
    assert ledger.last_run("prune").detail["archive_read_through"] == \
        now.strftime("%Y%m%d-%H%M%S")
    assert prune(cfg, now=now).deleted == 0  # the archive file is read once
    ledger.close()
