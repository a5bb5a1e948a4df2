"""Low-water marks that keep a sensor's idle tick from re-reading the ledger's history.

A row that needs no more attention (a reported model, a joined evaluation, a job in its
final state) stays that way, and ids only grow. So each query reads only rows with an id
at or above the lowest one still open at the last tick, and an idle tick costs what is
open, not what the lab has ever run. A periodic full pass (every
``sensors.full_rescan_seconds``, with the drive's full rescan) reads everything again: it
catches a row that committed after a row with a higher id (PostgreSQL hands out sequence
values before commit; SQLite has one writer, so there it never happens)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Table, func, select


@dataclass
class Window:
    low: dict[str, int] = field(default_factory=dict)  # where each query starts reading
    next: dict[str, int] = field(default_factory=dict)  # where it starts on the next tick

    @classmethod
    def from_cursor(cls, saved: dict[str, Any] | None) -> Window:
        return cls(low={k: int(v) for k, v in (saved or {}).items()})

    def since(self, name: str) -> int:
        return self.low.get(name, 0)

    def top(self, conn: Connection, table: Table) -> int | None:
        """The largest id before the query runs: rows added meanwhile have larger ones."""
        return conn.execute(select(func.max(table.c.id))).scalar()

    def keep(self, name: str, open_ids: Iterable[int], top: int | None) -> None:
        """Start the next tick at the lowest id still open, or past ``top`` if none is."""
        after = self.since(name) if top is None else top + 1
        self.next[name] = min(open_ids, default=after)


def since(window: Window | None, name: str) -> int:
    return window.since(name) if window else 0
