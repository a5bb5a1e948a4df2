"""The ``status_events`` table: every status report any script sent, once by its id."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, func, insert, select
from sqlalchemy.exc import DataError, StatementError

from baton.errors import BatonError
from baton.ledger.base import LedgerBase, transaction
from baton.ledger.engine import one_line
from baton.ledger.schema import status_events as ev


class UnstorableEvent(BatonError, ValueError):
    """A status event the database refuses (text it cannot encode, a value out of range):
    the event's fault, not the ledger's, so its ingester sets it aside and goes on."""


class StatusEvents(LedgerBase):
    @transaction(duplicate=False)
    def add_status_event(self, conn: Connection, row: dict[str, Any]) -> bool:
        """Keep one report; False when its id was seen before (a forwarded copy, another
        ingester); UnstorableEvent (a ValueError) when the database refuses the row."""
        try:
            conn.execute(insert(ev).values(**row))
        except (StatementError, ValueError, OverflowError) as exc:  # UnicodeEncodeError too
            cause = getattr(exc, "orig", exc)
            if isinstance(exc, StatementError) and not (
                    isinstance(exc, DataError) or isinstance(cause, (ValueError, OverflowError))):
                raise  # the ledger's problem (busy, gone, a duplicate): not this row's
            raise UnstorableEvent(f"status event {row.get('event_id')} cannot be stored: "
                                  f"{one_line(exc)}") from None
        return True

    def last_reports(self) -> list[Row[Any]]:
        """Each (project, job)'s latest report by the time it was made (a forwarded event
        can arrive after a newer one)."""
        ranked = select(ev, func.row_number().over(
            partition_by=(ev.c.project, ev.c.job),
            order_by=(ev.c.reported_at.desc(), ev.c.id.desc())).label("n")).subquery()
        with self.read() as conn:
            return list(conn.execute(select(ranked).where(ranked.c.n == 1).order_by(
                ranked.c.project, ranked.c.job)).all())

    def status_history(self, project: str, job: str | None = None, limit: int = 200
                       ) -> Sequence[Row[Any]]:
        """The latest ``limit`` reports of ``project`` (and ``job``), oldest first."""
        q = select(ev).where(ev.c.project == project).order_by(
            ev.c.reported_at.desc(), ev.c.id.desc())
        if job:
            q = q.where(ev.c.job == job)
        with self.read() as conn:
            return conn.execute(q.limit(limit)).all()[::-1]
