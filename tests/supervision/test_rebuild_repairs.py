"""``baton db rebuild`` brings back the supervisor's repairs: a resubmitted job, its task
(the original's trigger, ``#attempt-N``), and the supervision that made it, as they were,
from the repair's audit script (which names the supervision it answers) and Slurm's
accounting. Local backend (its accounting keeps comments), SQLite ledgers."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from baton.inbox import publish
from baton.ledger import Ledger, open_ledger
from baton.ledger.schema import evaluation_jobs, slurm_jobs, supervisions
from baton.ledger.training import apply_training_signal
from baton.pipeline.recovery import rebuild_ledger
from baton.pipeline.steps import submit_evaluations
from baton.signals import TrainingComplete, read_signal
from baton.supervision.actions import record, tick
from baton.supervision.policy import Decision
from tests.supervision.site import local_site

JOB = ("id", "submission_key", "attempt", "parent_id", "job_id", "state", "submitted_at",
       "ended_at", "exit_code", "script_path")
TASK = ("id", "trigger_key", "checkpoint_path", "slurm_job_row", "slurm_job_id", "status",
        "generation")
SUPERVISION = ("id", "key", "job_row", "job_id", "attempt", "reason", "action", "note",
               "requested_by", "new_mem_mb", "new_time_s", "dispatch_status", "repair_row",
               "repair_job_id", "execution_status")


def rows(ledger: Ledger) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    with ledger.read() as conn:
        for name, table, fields in (("jobs", slurm_jobs, JOB), ("tasks", evaluation_jobs, TASK),
                                    ("supervisions", supervisions, SUPERVISION)):
            out[name] = [tuple(getattr(r, f) for f in fields)
                         for r in conn.execute(select(table).order_by(table.c.id))]
    return out


def settle(ledger: Ledger, backend: Any) -> None:
    deadline = time.monotonic() + 60
    while not all(j.state in ("COMPLETED", "FAILED") for j in ledger.jobs()):
        assert time.monotonic() < deadline, ledger.jobs()
        ledger.apply_statuses(backend.status([j.job_id for j in ledger.jobs()]))
        time.sleep(0.1)
    ledger.sync_stage_rows()


def test_a_repaired_job_is_rebuilt_with_its_supervision(tmp_path: Path, ledger_url: str
                                                        ) -> None:
    marker = tmp_path / "failed-once"
    config, ledger, backend, final = local_site(
        tmp_path, f"test -e {marker} || {{ touch {marker}; exit 1; }}")  # fails once
    sf = read_signal(publish(config.drive, TrainingComplete(
        timestamp=datetime.now(UTC), experiment="exp1", hostname="h", user="u",
        checkpoint_path=str(final))), config.drive)
    assert ledger.accept_signal(sf, apply_training_signal)
    submit_evaluations(config, ledger, backend, ["exp1"])
    settle(ledger, backend)
    tick(config, ledger, backend, datetime.now(UTC))  # resubmits the failed job
    settle(ledger, backend)
    tick(config, ledger, backend, datetime.now(UTC))  # follows it to its end
    before = rows(ledger)
    assert [(j[2], j[5]) for j in before["jobs"]] == [(1, "FAILED"), (2, "COMPLETED")]
    assert [s[6] for s in before["supervisions"]] == ["resubmit"]
    ledger.close()

    rebuilt = open_ledger(ledger_url, init=True)
    report = rebuild_ledger(config, rebuilt, backend)
    assert report.skipped == [], report.lines()
    assert report.rebuilt.jobs == 2
    assert rows(rebuilt) == before
    # the next supervision takes a new id (PostgreSQL's sequence moved past the rebuilt)
    [repair] = rebuilt.jobs()[1:]
    sid, created = record(rebuilt, repair, "late_running", Decision("alert", "late"), "me")
    assert created and sid == before["supervisions"][-1][0] + 1
    rebuilt.close()
