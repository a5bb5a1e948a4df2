"""A failed task of an array is retried alone: the repair is a job of its own, and the
task that succeeded is not run again (the real local backend, a real SQLite ledger)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from baton.pipeline.submission import submit_jobs
from baton.supervision.actions import tick
from baton.supervision.policy import SETTLE_SECONDS
from tests.supervision.site import local_site


def test_a_failed_array_task_is_resubmitted_alone(tmp_path: Path) -> None:
    config, ledger, backend, final = local_site(
        tmp_path, 'if [ "$SLURM_ARRAY_TASK_ID" = 1 ]; then exit 3; fi')
    other = final.parent / "step-100"
    other.mkdir()
    (other / "model.safetensors").write_bytes(b"\1")
    outcomes = submit_jobs(config, ledger, backend, "evaluation",
                           [("exp1", str(other)), ("exp1", str(final))])
    rows = [ledger.job(o.row_id) for o in outcomes]
    assert all(r.job_id.startswith(f"{rows[0].array_job_id}_") for r in rows)  # one array
    deadline = time.monotonic() + 60
    while ledger.unfinished_jobs(settle_seconds=0):
        assert time.monotonic() < deadline
        ledger.apply_statuses(backend.status([r.job_id for r in ledger.unfinished_jobs()]))
        time.sleep(0.1)
    states = {ledger.job(o.row_id).array_task_id: ledger.job(o.row_id).state for o in outcomes}
    assert states == {0: "COMPLETED", 1: "FAILED"}
    failed = next(o.row_id for o in outcomes if ledger.job(o.row_id).state == "FAILED")
    report = tick(config, ledger, backend,
                  datetime.now(UTC) + timedelta(seconds=SETTLE_SECONDS + 1))
    assert len(report.dispatched) == 1, report
    repairs = [r for r in ledger.jobs() if r.parent_id is not None]
    assert len(repairs) == 1 and repairs[0].parent_id == failed
    assert repairs[0].array_task_id is None and "_" not in repairs[0].job_id  # alone
    assert len(ledger.jobs()) == 3  # the completed task was not submitted again
    ledger.close()
