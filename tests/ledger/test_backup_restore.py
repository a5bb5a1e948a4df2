"""`baton db backup` and `baton db restore` on SQLite and PostgreSQL: a verified copy taken
while the ledger is open, rotation, the outcome recorded for the exporter, a restore that
refuses while a daemon ticks, and a damaged backup refused with one line."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from baton.config import Config, load_config
from baton.errors import ConfigError
from baton.exporter.collector import BatonCollector, QueueSnapshot
from baton.exporter.lifetime import lifetime_metrics
from baton.ledger import Ledger, open_ledger
from baton.maintenance.backups import backups, keep
from tests.conftest import one_error_line


def baton(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "baton", *args], capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=300, check=False)


@pytest.fixture
def site(config: Config, ledger_url: str) -> tuple[dict[str, str], Ledger]:
    env = {"SHARED_DRIVE": str(config.shared_drive), "BATON_STATE_DIR": str(config.state_dir),
           "BATON_DATABASE_URL": ledger_url, "BATON_CONFIG": ""}
    return env, open_ledger(ledger_url, init=True)


def _claims(ledger: Ledger) -> list[str]:
    return sorted(j.submission_key for j in ledger.jobs())


def _claim(ledger: Ledger, key: str) -> None:
    ledger.claim_submission(key, stage="evaluation", experiment="e1", backend="local")


def _metric(ledger: Ledger, name: str) -> float:
    [value] = [s.value for m in lifetime_metrics(ledger) for s in m.samples if s.name == name]
    return value


def test_backup_restore_round_trip(site: tuple[dict[str, str], Ledger], tmp_path: Path
                                   ) -> None:
    env, ledger = site
    _claim(ledger, "evaluation:e1:attempt-1")
    assert _metric(ledger, "baton_ledger_backup_last_success_timestamp_seconds") == 0
    proc = baton("db", "backup", env=env)  # the ledger stays open meanwhile
    assert proc.returncode == 0, proc.stderr
    assert "verified" in proc.stdout
    folder = tmp_path / "state-backups"  # the state folder's sibling, not the drive
    [(_, copy)] = backups(folder)
    assert copy.name.endswith(".pgdump" if "postgresql" in env["BATON_DATABASE_URL"]
                              else ".sqlite")
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temp left
    before = datetime.now(UTC).timestamp()
    assert before - 60 < _metric(ledger, "baton_ledger_backup_last_success_timestamp_seconds")
    assert _metric(ledger, "baton_ledger_size_bytes") > 0
    collector = BatonCollector(load_config(None, env=env), ledger, QueueSnapshot(lambda: None))
    served = {m.name for m in collector.compute_ledger()}  # what the exporter serves
    assert {"baton_ledger_backup_last_success_timestamp_seconds", "baton_ledger_size_bytes",
            "baton_ledger_backup_failures"} <= served

    _claim(ledger, "evaluation:e1:attempt-2")  # after the backup: the restore forgets it
    ledger.heartbeat("training_sensor")
    refused = baton("db", "restore", str(copy), env=env)
    assert "a daemon is using the ledger" in one_error_line(refused)
    assert "--force" in refused.stderr
    assert _claims(ledger) == ["evaluation:e1:attempt-1", "evaluation:e1:attempt-2"]

    proc = baton("db", "restore", str(copy), "--force", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "restored from" in proc.stdout and "upgrade" not in proc.stdout
    assert _claims(ledger) == ["evaluation:e1:attempt-1"]  # the open engine sees it too
    ledger.close()


def test_a_damaged_backup_is_refused_and_the_ledger_kept(
        site: tuple[dict[str, str], Ledger], tmp_path: Path) -> None:
    env, ledger = site
    _claim(ledger, "evaluation:e1:attempt-1")
    pg = "postgresql" in env["BATON_DATABASE_URL"]
    bad = tmp_path / ("ledger-20260101-000000.pgdump" if pg else "ledger-20260101-000000.sqlite")
    bad.write_bytes(b"SQLite format 3\0" + b"\xff" * 4000)
    line = one_error_line(baton("db", "restore", str(bad), env=env))
    assert str(bad) in line
    assert _claims(ledger) == ["evaluation:e1:attempt-1"]
    line = one_error_line(baton("db", "restore", str(tmp_path / "nope.sqlite"), env=env))
    assert "no such backup file" in line
    ledger.close()


def test_a_failed_backup_is_recorded_and_counted(site: tuple[dict[str, str], Ledger],
                                                 tmp_path: Path) -> None:
    env, ledger = site
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the folder should be")
    line = one_error_line(baton("db", "backup", "--to", str(blocked), env=env))
    assert str(blocked) in line
    assert _metric(ledger, "baton_ledger_backup_failures_total") == 1
    assert _metric(ledger, "baton_ledger_backup_last_success_timestamp_seconds") == 0
    ledger.close()


def test_a_backup_refused_before_it_runs_is_counted_as_a_failure(
        site: tuple[dict[str, str], Ledger], config: Config) -> None:
    """Refused before any copy (the default folder on the shared drive, a ledger at
    another schema): a failure all the same, or the failed-backup alert stays silent."""
    env, ledger = site
    on_drive = {**env, "BATON_STATE_DIR": str(config.shared_drive / "state")}
    assert "set backup.dir" in one_error_line(baton("db", "backup", env=on_drive))
    assert _metric(ledger, "baton_ledger_backup_failures_total") == 1
    with ledger.write() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0010'"))
    assert "baton db upgrade" in one_error_line(baton("db", "backup", env=env))
    assert _metric(ledger, "baton_ledger_backup_failures_total") == 2
    assert _metric(ledger, "baton_ledger_backup_last_success_timestamp_seconds") == 0
    ledger.close()


def test_restore_of_a_lost_sqlite_ledger_puts_the_file_back(config: Config,
                                                             tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state' / 'ledger.db'}"
    env = {"SHARED_DRIVE": str(config.shared_drive), "BATON_STATE_DIR": str(config.state_dir),
           "BATON_DATABASE_URL": url, "BATON_CONFIG": ""}
    ledger = open_ledger(url, init=True)
    _claim(ledger, "evaluation:e1:attempt-1")
    ledger.close()
    assert baton("db", "backup", "--to", str(tmp_path / "b"), env=env).returncode == 0
    [(_, copy)] = backups(tmp_path / "b")
    for p in (tmp_path / "state").glob("ledger.db*"):
        p.unlink()
    proc = baton("db", "restore", str(copy), env=env)
    assert proc.returncode == 0, proc.stderr
    restored = open_ledger(url)
    assert _claims(restored) == ["evaluation:e1:attempt-1"]
    restored.close()


def test_rotation_keeps_the_newest_of_each_day_and_week() -> None:
    start = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)  # a Monday
    stamps = [start + timedelta(days=d, hours=h) for d in range(28) for h in (0, 12)]
    kept = keep(stamps, daily=3, weekly=2)
    newest_days = [start + timedelta(days=d, hours=12) for d in (25, 26, 27)]
    week_ends = [start + timedelta(days=d, hours=12) for d in (20, 27)]  # Sundays
    assert kept == set(newest_days) | set(week_ends)
    assert keep(stamps, daily=1, weekly=0) == {stamps[-1]}


def test_backup_dir_on_the_drive_is_refused(tmp_path: Path) -> None:
    env = {"SHARED_DRIVE": str(tmp_path / "drive"), "BATON_STATE_DIR": str(tmp_path / "s")}
    cfg = tmp_path / "baton.yaml"
    cfg.write_text(f"backup:\n  dir: {tmp_path / 'drive' / 'backups'}\n")
    with pytest.raises(ConfigError, match=r"backup\.dir"):
        load_config(cfg, env=env)
    assert load_config(None, env=env).backup_dir == tmp_path / "s-backups"
    # a state folder on the drive: every command but the backup goes on
    drive = tmp_path / "drive"
    env = {"SHARED_DRIVE": str(drive), "BATON_STATE_DIR": str(drive / "state"),
           "BATON_DATABASE_URL": "sqlite:////var/tmp/x.db", "BATON_CONFIG": ""}
    assert load_config(None, env=env).backup_dir == drive / "state-backups"
    assert "set backup.dir" in one_error_line(baton("db", "backup", env=env))


def test_a_ledger_file_that_is_not_a_database_is_restored_over(
        config: Config, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state' / 'ledger.db'}"
    env = {"SHARED_DRIVE": str(config.shared_drive), "BATON_STATE_DIR": str(config.state_dir),
           "BATON_DATABASE_URL": url, "BATON_CONFIG": ""}
    open_ledger(url, init=True).close()
    assert baton("db", "backup", "--to", str(tmp_path / "b"), env=env).returncode == 0
    [(_, copy)] = backups(tmp_path / "b")
    (tmp_path / "state" / "ledger.db").write_bytes(b"not a database at all" * 100)
    line = one_error_line(baton("db", "backup", "--to", str(tmp_path / "c"), env=env))
    assert "ledger" in line
    proc = baton("db", "restore", str(copy), env=env)
    assert proc.returncode == 0, proc.stderr  # the damaged file is replaced
    restored = open_ledger(url)
    assert restored.check().ok
    restored.close()
