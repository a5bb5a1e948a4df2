"""The ``supervisions`` table: one row per repair decided, claimed by a unique key so that a
job is supervised once per reason however many ticks or daemons see it."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, String, and_, cast, func, insert, literal, select, update

from baton.ledger.base import LedgerBase, transaction, utcnow
from baton.ledger.schema import facts, slurm_jobs, supervisions
from baton.slurm.states import is_terminal

# execution statuses that may still change (the job they follow has not ended)
LIVE = ("pending", "running")
# dispatch statuses of a repair not dispatched yet: ``pending`` (not tried) and
# ``retrying`` (a try failed; the next comes after a backoff). Every try failed: ``failed``.
UNDISPATCHED = ("pending", "retrying")
# how a failed try is recorded in dispatch_error, e.g.
# "try 2 of 5 failed at 2026-11-22T02:19:31+00:00: sbatch: error: ..."
_FAILED_TRY = re.compile(r"^try (\d+) of \d+ failed at (\S+): ")
STAGES = ("evaluation", "analysis")


def job_key(job_row: int, reason: str) -> str:
    return f"job-{job_row}:{reason}"


def execution_status(state: str) -> str:
    """A Slurm state in the supervision table's words."""
    if state in ("SUBMITTING", "PENDING") or state.startswith("REQUEUE"):
        return "pending"
    if not is_terminal(state):
        return "running"
    return {"COMPLETED": "completed", "CANCELLED": "cancelled"}.get(state, "failed")


def failed_try_text(n: int, of: int, at: datetime, error: object) -> str:
    return f"try {n} of {of} failed at {at.isoformat(timespec='seconds')}: {error}"


def failed_tries(dispatch_error: str | None) -> tuple[int, datetime | None]:
    """How many dispatch tries have failed so far, and when the last one did."""
    m = _FAILED_TRY.match(dispatch_error or "")
    if m is None:
        return (1 if dispatch_error else 0), None
    return int(m.group(1)), datetime.fromisoformat(m.group(2))


class Supervisions(LedgerBase):
    """The repairs decided and followed (the supervision sensor and `baton supervise`)."""

    def claim_supervision(self, key: str, **values: Any) -> tuple[int, bool]:
        """Insert the supervision ``key`` once; returns (id, created)."""
        new = self._insert_supervision(key, values)
        if new is not None:
            return new, True
        with self.read() as conn:
            return int(conn.execute(select(supervisions.c.id).where(
                supervisions.c.key == key)).scalar_one()), False

    @transaction(duplicate=None)
    def _insert_supervision(self, conn: Connection, key: str, values: dict[str, Any]
                            ) -> int | None:
        return int(conn.execute(insert(supervisions).values(
            key=key, created_at=utcnow(), **values)).inserted_primary_key[0])

    @transaction()
    def update_supervision(self, conn: Connection, sid: int, *,
                           only_if: dict[str, Any] | None = None, **values: Any) -> bool:
        """Update supervision ``sid`` (only while its columns match ``only_if``)."""
        conds = [supervisions.c[k] == v for k, v in (only_if or {}).items()]
        return conn.execute(update(supervisions).where(
            supervisions.c.id == sid, *conds).values(**values)).rowcount == 1

    def supervision(self, sid: int) -> Row[Any] | None:
        with self.read() as conn:
            return conn.execute(select(supervisions).where(supervisions.c.id == sid)).first()

    def list_supervisions(self, *, limit: int = 50, stage: str | None = None,
                experiment: str | None = None, open_only: bool = False) -> Sequence[Row[Any]]:
        """Newest first. ``open_only``: repairs in flight, and give-ups and failed dispatches
        nobody has handled."""
        q = select(supervisions).order_by(supervisions.c.id.desc()).limit(limit)
        if stage:
            q = q.where(supervisions.c.stage == stage)
        if experiment:
            q = q.where(supervisions.c.experiment == experiment)
        if open_only:
            q = q.where(supervisions.c.execution_status.in_((*LIVE, "open"))
                        | (supervisions.c.dispatch_status == "failed"))
        with self.read() as conn:
            return conn.execute(q).all()

    def supervision_candidates(self) -> tuple[Sequence[Row[Any]], set[str]]:
        """Stage jobs that may need supervision (not succeeded, not cancelled, and not yet
        supervised for how they ended), and the keys already taken for them."""
        ended = select(supervisions.c.id).where(
            supervisions.c.job_row == slurm_jobs.c.id,
            supervisions.c.reason.not_in(("late_pending", "late_running"))).exists()
        with self.read() as conn:
            rows = conn.execute(select(slurm_jobs).where(
                slurm_jobs.c.stage.in_(STAGES), slurm_jobs.c.job_id.is_not(None),
                slurm_jobs.c.state.not_in(("COMPLETED", "CANCELLED", "SUBMIT_FAILED")),
                ~ended).order_by(slurm_jobs.c.id)).all()
            keys = set(conn.execute(select(supervisions.c.key).where(
                supervisions.c.job_row.in_([r.id for r in rows]))).scalars()) if rows else set()
        return rows, keys

    def undispatched_repairs(self) -> Sequence[Row[Any]]:
        """Claimed repairs not yet dispatched (new, their dispatcher died, or a try failed)."""
        with self.read() as conn:
            return conn.execute(select(supervisions).where(
                supervisions.c.dispatch_status.in_(UNDISPATCHED)).order_by(supervisions.c.id)
            ).all()

    def live_supervisions(self) -> Sequence[Row[Any]]:
        """Supervisions whose execution is still followed, with the state of the job they
        follow: the repair for a resubmission, the supervised job for a cancel or alert."""
        target = slurm_jobs.alias("target")
        follows = and_(target.c.id == supervisions.c.repair_row) | and_(
            supervisions.c.repair_row.is_(None), target.c.id == supervisions.c.job_row)
        with self.read() as conn:
            return conn.execute(select(
                supervisions.c.id, supervisions.c.execution_status,
                target.c.state, target.c.ended_at).join(target, follows).where(
                supervisions.c.execution_status.in_(LIVE),
                supervisions.c.dispatch_status.in_(("dispatched", "not_needed")))).all()

    def open_give_ups(self, job_row: int) -> Sequence[Row[Any]]:
        with self.read() as conn:
            return conn.execute(select(supervisions).where(
                supervisions.c.job_row == job_row, supervisions.c.action == "gave_up",
                supervisions.c.execution_status == "open")).all()

    def unreported_repairs(self) -> Sequence[Row[Any]]:
        """Dispatched resubmissions whose Dagster event is not confirmed yet (fact
        ``supervision:{id}``)."""
        reported = select(facts.c.id).where(
            facts.c.key == literal("supervision:") + cast(supervisions.c.id, String)).exists()
        with self.read() as conn:
            return conn.execute(select(supervisions).where(
                supervisions.c.action == "resubmit", supervisions.c.dispatch_status == "dispatched",
                ~reported).order_by(supervisions.c.id)).all()

    def supervision_counts(self) -> list[tuple[str, str, str, str, str, int]]:
        """How many supervisions per (stage, reason, action, execution, dispatch)."""
        s = supervisions.c
        cols = (s.stage, s.reason, s.action, s.execution_status, s.dispatch_status)
        with self.read() as conn:
            return [(*r[:5], int(r[5])) for r in conn.execute(
                select(*cols, func.count()).group_by(*cols))]
