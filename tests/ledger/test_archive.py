"""`baton db archive` on SQLite and PostgreSQL: settled history leaves the ledger for
Parquet (one file per table, the table's columns), what a staying row refers to stays,
and a crash at either side of the delete leaves no row in both places nor in neither."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from sqlalchemy import insert, select

from baton.config import Config
from baton.ledger import Ledger, open_ledger
from baton.ledger.schema import (
    analysis_jobs,
    analysis_outputs,
    evaluation_jobs,
    evaluation_results,
    metadata,
    signals,
    slurm_jobs,
    status_events,
    supervisions,
)
from baton.maintenance import archive as archive_mod
from baton.maintenance.archive import archive, archive_dir

NOW = datetime.now(UTC).replace(microsecond=0)
OLD = NOW - timedelta(days=100)
RECENT = NOW - timedelta(days=10)


def _job(conn: Any, key: str, state: str, ended: datetime | None, stage: str = "evaluation",
         experiment: str = "old", parent: int | None = None) -> int:
    return int(conn.execute(insert(slurm_jobs).values(
        submission_key=key, stage=stage, experiment=experiment, backend="local", attempt=1,
        job_id=key, state=state, ended_at=ended, restarts=0, parent_id=parent,
        created_at=OLD, updated_at=ended or NOW, metadata={"k": [1]})).inserted_primary_key[0])


@pytest.fixture
def site(config: Config, ledger_url: str, tmp_path: Path) -> tuple[Config, Ledger, dict[str, int]]:
    cfg = config.model_copy(update={"database_url": ledger_url})
    ledger = open_ledger(ledger_url, init=True)
    kept_signal = config.shared_drive / "models" / "kept" / ".training_complete"
    kept_signal.parent.mkdir(parents=True)
    kept_signal.write_text("{}")
    with ledger.write() as conn:
        ids = {"j1": _job(conn, "j1", "COMPLETED", OLD),
               "j2": _job(conn, "j2", "COMPLETED", OLD, stage="analysis"),
               "j3": _job(conn, "j3", "OUT_OF_MEMORY", OLD, experiment="repaired"),
               "j5": _job(conn, "j5", "COMPLETED", RECENT, experiment="new")}
        ids["j4"] = _job(conn, "j4", "PENDING", None, experiment="repaired", parent=ids["j3"])
        ids["e1"] = int(conn.execute(insert(evaluation_jobs).values(
            experiment_name="old", slurm_job_row=ids["j1"], status="completed",
            metadata={"a": 1})).inserted_primary_key[0])
        conn.execute(insert(evaluation_results).values(
            evaluation_job_id=ids["e1"], metric_name="acc", metric_value=0.5))
        ids["a1"] = int(conn.execute(insert(analysis_jobs).values(
            experiment_name="old", slurm_job_row=ids["j2"], evaluation_job_id=ids["e1"],
            status="completed")).inserted_primary_key[0])
        conn.execute(insert(analysis_outputs).values(
            analysis_job_id=ids["a1"], output_type="report", output_path="/r.html"))
        conn.execute(insert(supervisions).values(
            key="job-3:oom", experiment="repaired", stage="evaluation", job_row=ids["j3"],
            attempt=1, reason="oom", action="resubmit", requested_by="supervisor",
            dispatch_status="dispatched", repair_row=ids["j4"], execution_status="pending",
            created_at=OLD))
        for n, at in enumerate((OLD, OLD + timedelta(hours=1))):
            conn.execute(insert(status_events).values(
                event_id=f"ev{n}", project="p", job="train", status="running",
                reported_at=at, ingested_at=at))
        for name, path in (("gone", config.shared_drive / "models" / "gone" / ".x"),
                           ("kept", kept_signal)):
            conn.execute(insert(signals).values(
                idempotency_key=f"sig-{name}", kind="training_complete", experiment=name,
                path=str(path), status="accepted", seen_at=OLD))
    return cfg, ledger, ids


def _left(ledger: Ledger, table: str) -> list[int]:
    t = metadata.tables[table]
    with ledger.read() as conn:
        return [r[0] for r in conn.execute(select(t.c.id).order_by(t.c.id))]


def _archived(cfg: Config, table: str) -> list[int]:
    files = sorted((archive_dir(cfg) / table).glob("*.parquet"))
    if not files:
        return []
    return [r[0] for r in duckdb.sql(
        f"SELECT id FROM read_parquet({[str(f) for f in files]}) ORDER BY id").fetchall()]


def test_settled_history_moves_to_parquet(site: tuple[Config, Ledger, dict[str, int]]) -> None:
    cfg, ledger, ids = site
    result = archive(cfg, timedelta(days=90), now=NOW)
    assert result.rows == {"slurm_jobs": 2, "evaluation_jobs": 1, "analysis_jobs": 1,
                           "evaluation_results": 1, "analysis_outputs": 1,
                           "status_events": 1, "signals": 1}
    stamp = NOW.strftime("%Y%m%d-%H%M%S")
    for table in result.rows:
        path = archive_dir(cfg) / table / f"{stamp}.parquet"
        assert path.is_file()
        columns = [c[0] for c in duckdb.sql(f"DESCRIBE SELECT * FROM '{path}'").fetchall()]
        assert columns == [c.name for c in metadata.tables[table].columns]
    # the old experiment's jobs left; the repaired one's failure stays (its repair, still
    # open, refers to it), and so does its supervision
    assert _archived(cfg, "slurm_jobs") == [ids["j1"], ids["j2"]]
    assert _left(ledger, "slurm_jobs") == [ids["j3"], ids["j5"], ids["j4"]]
    assert _left(ledger, "supervisions") and not _archived(cfg, "supervisions")
    assert _left(ledger, "evaluation_jobs") == [] and _left(ledger, "analysis_outputs") == []
    assert len(_left(ledger, "status_events")) == 1  # the job's latest report stays
    with ledger.read() as conn:
        assert [r.idempotency_key for r in conn.execute(select(signals))] == ["sig-kept"]
    [row] = duckdb.sql(f"SELECT metadata, ended_at FROM '{archive_dir(cfg)}/slurm_jobs/"
                       f"{stamp}.parquet' LIMIT 1").fetchall()
    assert row[0] == '{"k": [1]}' and row[1] == OLD
    # the archived experiment was evaluated: a retrain of it is not held
    assert ledger.unguarded(["old"]) == set()
    assert ledger.last_run("archive").detail["stamp"] == stamp
    assert ledger.last_run("vacuum") is not None  # VACUUM followed
    # nothing settled is left: a second run moves nothing and writes no file
    again = archive(cfg, timedelta(days=90), now=NOW + timedelta(seconds=1))
    assert again.rows == {} and again.files == []
    ledger.close()


def test_a_crash_before_the_delete_leaves_the_rows_and_no_file(
        site: tuple[Config, Ledger, dict[str, int]], monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, ledger, ids = site

    def killed(*_: object, **__: object) -> None:
        raise KeyboardInterrupt  # the process dies before the delete commits

    monkeypatch.setattr(Ledger, "delete_settled", killed)
    with pytest.raises(KeyboardInterrupt):
        archive(cfg, timedelta(days=90), now=NOW)
    assert not list(archive_dir(cfg).glob("*/*.parquet*"))
    assert ids["j1"] in _left(ledger, "slurm_jobs")
    ledger.close()


def test_a_crash_after_the_delete_is_completed_by_the_next_run(
        site: tuple[Config, Ledger, dict[str, int]], monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, ledger, ids = site
    real = archive_mod._promote

    def killed(_: Path) -> Path:
        raise KeyboardInterrupt  # the delete committed; the process dies before renaming

    monkeypatch.setattr(archive_mod, "_promote", killed)
    with pytest.raises(KeyboardInterrupt):
        archive(cfg, timedelta(days=90), now=NOW)
    assert ids["j1"] not in _left(ledger, "slurm_jobs")
    assert _archived(cfg, "slurm_jobs") == []  # pending: not shown yet, never twice
    monkeypatch.setattr(archive_mod, "_promote", real)
    result = archive(cfg, timedelta(days=90), now=NOW + timedelta(seconds=1))
    assert any("completed slurm_jobs/" in line for line in result.recovered)
    assert _archived(cfg, "slurm_jobs") == [ids["j1"], ids["j2"]]
    assert not list(archive_dir(cfg).glob("*/*.pending"))
    ledger.close()


def test_pending_files_of_a_run_that_never_deleted_are_removed(
        site: tuple[Config, Ledger, dict[str, int]]) -> None:
    cfg, ledger, ids = site
    stray = archive_dir(cfg) / "slurm_jobs" / "20200101-000000.parquet.pending"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"half")
    result = archive(cfg, timedelta(days=90), now=NOW)
    assert any(str(stray) in line and "never left" in line for line in result.recovered)
    assert not stray.exists()
    assert _archived(cfg, "slurm_jobs") == [ids["j1"], ids["j2"]]
    ledger.close()


def test_the_command_archives_and_refuses_a_bad_age(
        site: tuple[Config, Ledger, dict[str, int]]) -> None:
    import os
    import subprocess
    import sys

    cfg, ledger, ids = site
    env = {**os.environ, "SHARED_DRIVE": str(cfg.shared_drive),
           "BATON_STATE_DIR": str(cfg.state_dir), "BATON_DATABASE_URL": cfg.ledger_url,
           "BATON_CONFIG": ""}

    def baton(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "baton", "db", "archive", *args],
                              capture_output=True, text=True, env=env, timeout=120,
                              check=False)

    bad = baton("--older-than", "90x")
    assert bad.returncode == 2 and "'90x' is not an age" in bad.stderr
    assert "Traceback" not in bad.stderr
    proc = baton("--older-than", "90d")
    assert proc.returncode == 0, proc.stderr
    assert "archived 2 slurm_jobs" in proc.stdout
    assert _archived(cfg, "slurm_jobs") == [ids["j1"], ids["j2"]]
    ledger.close()


def test_a_row_written_meanwhile_that_refers_to_the_plan_stops_the_archive(
        site: tuple[Config, Ledger, dict[str, int]], monkeypatch: pytest.MonkeyPatch) -> None:
    """A repair of an old job submitted between the plan and the delete: the delete would
    leave its parent_id dangling, so nothing is archived and no file is left."""
    from baton.errors import BatonError

    cfg, ledger, ids = site
    plan = Ledger.settled

    def planned_then_repaired(self: Ledger, *args: Any) -> Any:
        out = plan(self, *args)
        with self.write() as conn:
            _job(conn, "j1-repair", "PENDING", None, parent=ids["j1"])
        return out

    monkeypatch.setattr(Ledger, "settled", planned_then_repaired)
    with pytest.raises(BatonError, match="changed while the archive was written"):
        archive(cfg, timedelta(days=90), now=NOW)
    assert ids["j1"] in _left(ledger, "slurm_jobs")
    assert not list(archive_dir(cfg).glob("*/*.parquet*"))
    ledger.close()
