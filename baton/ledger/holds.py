"""Experiments held back because the drive has results the ledger does not know (a lost
or new ledger facing a drive with history), and the operator's word that releases them:
both are rows of ``facts`` (``held:{training signal}``, ``adopted:{experiment}`` or
``adopted:*`` for the whole drive). An experiment is held while the ledger has no
evaluation of it and it is not adopted; ``baton db rebuild`` gives it its evaluations
back, ``baton db adopt`` takes the drive's results as the past of a new history."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select

from baton.ledger.base import LedgerBase, transaction, utcnow
from baton.ledger.schema import evaluation_jobs, facts, slurm_jobs

HELD = "experiment_held"
ADOPTED = "drive_adopted"
WHOLE_DRIVE = "*"


def _adopted(experiment: str) -> str:
    return f"adopted:{experiment}"


def _prefixed(prefix: str) -> Any:
    """SQL: facts whose key starts with ``prefix`` (a range on the unique index of
    ``key``, in SQLite and PostgreSQL alike; ``;`` follows ``:``)."""
    return (facts.c.key >= prefix) & (facts.c.key < prefix[:-1] + ";")


class Holds(LedgerBase):
    def unguarded(self, experiments: list[str]) -> set[str]:
        """Of ``experiments``, those the hold applies to: no evaluation in the ledger (not
        even a submission whose run died before it recorded the evaluation: the ledger
        made the drive's results), and neither they nor the whole drive adopted."""
        if not experiments:
            return set()
        with self.read() as conn:
            if self._has(conn, _adopted(WHOLE_DRIVE)):
                return set()
            evaluated = {r[0] for r in conn.execute(select(
                evaluation_jobs.c.experiment_name).where(
                evaluation_jobs.c.experiment_name.in_(experiments)).distinct())}
            evaluated |= {r[0] for r in conn.execute(select(slurm_jobs.c.experiment).where(
                slurm_jobs.c.stage == "evaluation",
                slurm_jobs.c.experiment.in_(experiments)).distinct())}
            # adopted, or evaluated with its evaluations archived since (settled.py)
            adopted = {r[0] for r in conn.execute(select(facts.c.experiment).where(
                facts.c.key.in_([_adopted(e) for e in experiments]
                                + [f"archived:{e}" for e in experiments])))}
        return set(experiments) - evaluated - adopted

    @staticmethod
    def _has(conn: Connection, key: str) -> bool:
        return conn.execute(select(facts.c.id).where(facts.c.key == key)).first() is not None

    @transaction(duplicate=False)
    def hold(self, conn: Connection, experiment: str, signal_key: str, found: list[str]
             ) -> bool:
        """Record that ``experiment``'s training signal is held; False when it already was."""
        conn.execute(insert(facts).values(
            key=f"held:{signal_key}", kind=HELD, experiment=experiment, created_at=utcnow(),
            detail={"signal_key": signal_key, "found": found[:5]}))
        return True

    @transaction()
    def adopt(self, conn: Connection, experiments: list[str] | None) -> list[str]:
        """Release ``experiments`` (None: the whole drive, now and later) for the pipeline
        to evaluate as new; returns what was not already adopted."""
        new: list[str] = []
        for name in experiments if experiments is not None else [WHOLE_DRIVE]:
            if not self._has(conn, _adopted(name)):
                conn.execute(insert(facts).values(
                    key=_adopted(name), kind=ADOPTED, created_at=utcnow(),
                    experiment=None if name == WHOLE_DRIVE else name))
                new.append(name)
        return new

    def held_experiments(self) -> list[tuple[str, Any]]:
        """(experiment, when it was first held) of every experiment held now."""
        with self.read() as conn:
            rows = conn.execute(select(facts.c.experiment, facts.c.created_at).where(
                _prefixed("held:")).order_by(facts.c.id)).all()
        first: dict[str, Any] = {}
        for exp, at in rows:
            first.setdefault(exp, at)
        still = self.unguarded(list(first))
        return [(e, at) for e, at in first.items() if e in still]
