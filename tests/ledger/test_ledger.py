"""The ledger on SQLite and on a real PostgreSQL: schema, migrations, integrity check,
and the once-only writes everything else relies on."""

from __future__ import annotations

import json
import multiprocessing
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from baton.layout import DriveLayout
from baton.ledger import Ledger, open_ledger
from baton.ledger.migrate import head_revision
from baton.ledger.schema import FINAL_JOB, OPEN_JOB, signals, slurm_jobs
from baton.ledger.training import apply_training_signal
from baton.signals import read_signal
from baton.slurm.states import JobStatus


@pytest.fixture
def ledger(ledger_url: str):
    led = open_ledger(ledger_url, init=True)
    yield led
    led.close()


def test_init_is_idempotent_and_check_passes(ledger_url: str) -> None:
    led = Ledger(ledger_url, create=True)
    before, after = led.init()
    assert before is None and after == head_revision()
    assert led.init() == (head_revision(), head_revision())
    report = led.check()
    assert report.ok, report.lines()
    assert report.revision == head_revision()
    led.close()


def test_check_reports_uninitialised_and_drift(ledger_url: str) -> None:
    led = Ledger(ledger_url, create=True)
    report = led.check()
    assert not report.ok and "not initialised" in report.problems[0]
    led.init()
    with led.engine.begin() as conn:
        conn.execute(text("DROP TABLE heartbeats"))
    report = led.check()
    assert not report.ok
    assert any("heartbeats" in p for p in report.problems), report.problems
    led.close()


def test_sqlite_uses_wal_and_busy_timeout(tmp_path: Path) -> None:
    led = open_ledger(f"sqlite:///{tmp_path / 'l.db'}", init=True)
    with led.read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_sqlite_integrity_check_catches_corruption(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    led = open_ledger(f"sqlite:///{db}", init=True)
    for i in range(300):
        led.record_signal(f"k{i}", "training_complete", f"/d/{i}" * 20, "accepted")
    led.close()
    data = bytearray(db.read_bytes())
    for offset in range(4096 * 3, len(data), 4096):  # scribble over every page but the first
        data[offset + 8:offset + 64] = b"\xff" * 56
    db.write_bytes(bytes(data))
    report = Ledger(f"sqlite:///{db}").check()
    assert not report.ok
    assert report.problems, report.lines()


def _signal(ledger: Ledger, key: str) -> Any:
    with ledger.read() as conn:
        return conn.execute(select(signals).where(signals.c.idempotency_key == key)).first()


def test_signal_recorded_once(ledger: Ledger) -> None:
    assert ledger.record_signal("training_complete:e:abc", "training_complete", "/d/x",
                                "accepted", experiment="e")
    assert not ledger.record_signal("training_complete:e:abc", "training_complete", "/d/x",
                                    "accepted", experiment="e")
    assert ledger.record_signal("bad:1", "training_complete", "/d/y", "quarantined",
                                reason="malformed JSON")
    row = _signal(ledger, "bad:1")
    assert row.status == "quarantined" and row.reason == "malformed JSON"


def test_training_run_upsert_and_checkpoints(ledger: Ledger, drive: DriveLayout) -> None:
    exp = drive.experiment("exp1")
    exp.training_signal.parent.mkdir(parents=True)
    doc = {"timestamp": "2026-11-21T10:00:00Z", "experiment": "exp1",
           "checkpoint_path": str(exp.final_dir), "hostname": "gpu01", "user": "alice",
           "final_loss": 2.5, "campaign": "sweep",
           "checkpoints": [str(exp.checkpoint(100)), str(exp.checkpoint(200))]}
    exp.training_signal.write_text(json.dumps(doc))
    assert ledger.accept_signal(read_signal(exp.training_signal, drive), apply_training_signal)
    run_id = ledger.training_run("exp1").id
    doc["final_loss"] = 2.0  # the experiment is trained again
    exp.training_signal.write_text(json.dumps(doc))
    assert ledger.accept_signal(read_signal(exp.training_signal, drive), apply_training_signal)
    assert ledger.training_run("exp1").id == run_id
    row = ledger.training_run("exp1")
    assert (row.status, row.final_loss, row.campaign, row.user) == ("completed", 2.0, "sweep",
                                                                    "alice")
    with ledger.read() as conn:
        n = conn.execute(text("SELECT count(*) FROM checkpoints")).scalar()
    assert n == 3


def test_claim_is_exclusive_under_concurrency(ledger: Ledger) -> None:
    results = []

    def claim() -> None:
        results.append(ledger.claim_submission("evaluation:exp1:attempt-1", stage="evaluation",
                                               experiment="exp1", backend="local"))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(c.created for c in results) == 1
    assert len({c.row_id for c in results}) == 1
    assert len(ledger.jobs()) == 1


def _claim_in_process(url: str, n: int, queue: multiprocessing.Queue) -> None:
    led = Ledger(url)
    created = 0
    for i in range(n):
        created += led.claim_submission(f"k{i}", stage="evaluation", experiment=f"e{i}",
                                        backend="local").created
        led.heartbeat("sensor", f"tick {i}")
    queue.put(created)


def test_claims_across_processes(ledger: Ledger) -> None:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_claim_in_process, args=(ledger.url, 40, queue))
             for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert sum(queue.get() for _ in procs) == 40
    assert len(ledger.jobs()) == 40


def test_job_lifecycle(ledger: Ledger) -> None:
    claim = ledger.claim_submission("evaluation:exp1:attempt-1", stage="evaluation",
                                    experiment="exp1", backend="sbatch", req_mem_mb=100.0)
    ledger.mark_submitted(claim.row_id, "123", script_path="/d/logs/scripts/x.sh")
    assert [r.job_id for r in ledger.unfinished_jobs()] == ["123"]
    t0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
    changed = ledger.apply_statuses({"123": JobStatus(
        job_id="123", state="FAILED", exit_code=0, exit_signal=9, started_at=t0,
        ended_at=t0, max_rss_mb=310.5, cpu_seconds=1.5, node="n1", restarts=1)})
    assert changed == 1
    row = ledger.job(claim.row_id)
    assert (row.state, row.exit_signal, row.max_rss_mb, row.node) == ("FAILED", 9, 310.5, "n1")
    assert row.started_at == t0 and row.restarts == 1 and row.req_mem_mb == 100.0
    assert ledger.unfinished_jobs() == []  # final, with its accounting data
    # the same poll again changes nothing
    assert ledger.apply_statuses({"123": JobStatus(job_id="123", state="FAILED")}) == 0


def test_submit_failure_is_kept_and_can_be_retried(ledger: Ledger) -> None:
    claim = ledger.claim_submission("k", stage="analysis", experiment="e", backend="sbatch")
    ledger.mark_submit_failed(claim.row_id, "sbatch: error: invalid partition")
    row = ledger.job(claim.row_id)
    assert row.state == "SUBMIT_FAILED" and "invalid partition" in row.reason
    # Slurm never accepted it: trying again (e.g. from the UI, after fixing the partition)
    # re-claims the same row, and only one of several callers wins
    results = []

    def retry() -> None:
        results.append(ledger.claim_submission("k", stage="analysis", experiment="e",
                                               backend="sbatch"))

    threads = [threading.Thread(target=retry) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(c.created for c in results) == 1
    assert {c.row_id for c in results} == {claim.row_id}
    assert ledger.job(claim.row_id).state == "SUBMITTING"


def test_heartbeats(ledger: Ledger) -> None:
    ledger.heartbeat("training_sensor")
    first = ledger.heartbeats()["training_sensor"]
    ledger.heartbeat("training_sensor", "2 new signals")
    beats = ledger.heartbeats()
    assert beats["training_sensor"] >= first and beats["training_sensor"].tzinfo is UTC


def test_final_job_waits_for_accounting_data(ledger: Ledger) -> None:
    claim = ledger.claim_submission("k", stage="evaluation", experiment="e", backend="sbatch")
    ledger.mark_submitted(claim.row_id, "7")
    now = datetime.now(UTC)
    # the controller knows the end first; slurmdbd's CPU time and MaxRSS come a bit later
    ledger.apply_statuses({"7": JobStatus(job_id="7", state="COMPLETED", ended_at=now)})
    assert [r.job_id for r in ledger.unfinished_jobs()] == ["7"]
    assert ledger.unfinished_jobs(settle_seconds=0) == []  # gives up after the window
    ledger.apply_statuses({"7": JobStatus(job_id="7", state="COMPLETED", cpu_seconds=0.2)})
    assert ledger.unfinished_jobs() == []
    # killed by signal 9: CPU time may come before MaxRSS, which tells over-memory apart
    claim = ledger.claim_submission("k9", stage="evaluation", experiment="e", backend="sbatch")
    ledger.mark_submitted(claim.row_id, "9")
    ledger.apply_statuses({"9": JobStatus(job_id="9", state="FAILED", ended_at=now,
                                          exit_code=0, exit_signal=9, cpu_seconds=0.0)})
    assert [r.job_id for r in ledger.unfinished_jobs()] == ["9"]
    ledger.apply_statuses({"9": JobStatus(job_id="9", state="FAILED", max_rss_mb=900.0)})
    assert ledger.unfinished_jobs() == []


def test_upgrade_from_an_older_schema_keeps_the_data(ledger_url: str) -> None:
    led = Ledger(ledger_url, create=True)
    from baton.ledger import migrate

    assert migrate.upgrade(led.engine, "0001") == (None, "0001")
    led.record_signal("old:1", "training_complete", "/d/x", "accepted", experiment="e")
    assert led.check().problems[0].startswith("schema is at 0001")
    before, after = led.init()
    assert (before, after) == ("0001", head_revision())
    assert _signal(led, "old:1").experiment == "e"
    assert led.check().ok
    led.close()


def test_a_write_blocked_past_the_busy_timeout_is_retried(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """SQLite's busy timeout covers short waits; a writer held up longer (a long
    transaction elsewhere) gets SQLITE_BUSY, and the ledger retries instead of failing."""
    import sqlite3

    from baton.ledger import engine

    monkeypatch.setattr(engine, "BUSY_TIMEOUT_MS", 100)
    path = tmp_path / "l.db"
    ledger = open_ledger(f"sqlite:///{path}", init=True)
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    release = threading.Timer(1.0, blocker.execute, args=("COMMIT",))
    release.start()
    try:
        with caplog.at_level("WARNING", logger="baton.retry"):
            assert ledger.record_signal("k1", "training_complete", "/d/s", "accepted")
    finally:
        release.join()
        blocker.close()
    assert _signal(ledger, "k1") is not None
    retried = [r.getMessage() for r in caplog.records if "database is locked" in
               r.getMessage()]
    assert retried, "the write succeeded without ever meeting the lock"


def test_unfinished_jobs_read_only_open_and_lately_ended_rows(tmp_path: Path) -> None:
    """The tracker asks every tick; its questions go through indexes (a partial one for
    open jobs), so the cost follows the jobs in flight, not the history."""
    led = open_ledger(f"sqlite:///{tmp_path / 'l.db'}", init=True)
    with led.read() as conn:
        plans = [" ".join(str(r[-1]) for r in conn.exec_driver_sql(
            "EXPLAIN QUERY PLAN " + str(q.compile(conn.engine, compile_kwargs={
                "literal_binds": True}))).all()) for q in (
            select(slurm_jobs).where(OPEN_JOB),
            select(slurm_jobs).where(slurm_jobs.c.ended_at > datetime.now(UTC),
                                     slurm_jobs.c.cpu_seconds.is_(None), FINAL_JOB))]
    assert "USING INDEX ix_slurm_jobs_open" in plans[0], plans
    assert "USING INDEX ix_slurm_jobs_ended_at" in plans[1], plans
