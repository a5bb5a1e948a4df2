"""The ``heartbeats`` table: when each sensor last ticked, and what it saw."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from baton.ledger.base import LedgerBase, transaction, utcnow
from baton.ledger.schema import heartbeats


class Heartbeats(LedgerBase):
    def heartbeat(self, name: str, detail: str | None = None) -> None:
        try:
            self._beat(name, detail)
        except IntegrityError:  # another process inserted the first beat meanwhile
            self._beat(name, detail)

    @transaction()
    def _beat(self, conn: Connection, name: str, detail: str | None) -> None:
        now = utcnow()
        done = conn.execute(update(heartbeats).where(heartbeats.c.name == name)
                            .values(beat_at=now, detail=detail)).rowcount
        if not done:
            conn.execute(insert(heartbeats).values(name=name, beat_at=now, detail=detail))

    def heartbeats(self) -> dict[str, datetime]:
        with self.read() as conn:
            return {r.name: r.beat_at for r in conn.execute(select(heartbeats))}
