"""The ``signals`` table: every signal file seen, once by its key, accepted or quarantined
with the reason."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, func, insert, select
from sqlalchemy.exc import IntegrityError

from baton.ledger.base import LedgerBase, transaction, utcnow
from baton.ledger.schema import signals
from baton.signals import SignalFile

# applies an accepted signal to the pipeline's state inside the accepting transaction
Applier = Callable[[Connection, SignalFile], Any]


def insert_accepted(conn: Connection, sf: SignalFile) -> None:
    """The ``signals`` row of an accepted signal (its key must be new)."""
    # kept, not refused: a lab's own fields travel with its signal (SQL NULL: none)
    extra = {"extra_fields": lab} if (lab := sf.signal.extra_fields()) else {}
    conn.execute(insert(signals).values(
        idempotency_key=sf.idempotency_key, kind=sf.kind, path=str(sf.path),
        status="accepted", experiment=sf.signal.experiment, sha256=sf.sha256,
        signal_time=sf.signal.timestamp, file_mtime=sf.mtime, seen_at=utcnow(), **extra))


class SignalLog(LedgerBase):
    """Signals seen: recorded once, and applied to the pipeline's state in the same
    transaction as their record."""

    @transaction(duplicate=False)
    def record_signal(self, conn: Connection, key: str, kind: str, path: str, status: str, *,
                      experiment: str | None = None, reason: str | None = None,
                      sha256: str | None = None, signal_time: datetime | None = None,
                      file_mtime: float | None = None) -> bool:
        """Record a signal once. Returns False when the key was already recorded."""
        if status not in ("accepted", "quarantined"):
            raise ValueError(f"unknown signal status {status!r}")
        conn.execute(insert(signals).values(
            idempotency_key=key, kind=kind, path=path, status=status, experiment=experiment,
            reason=reason, sha256=sha256, signal_time=signal_time, file_mtime=file_mtime,
            seen_at=utcnow()))
        return True

    @transaction(duplicate=False)
    def accept_signal(self, conn: Connection, sf: SignalFile, apply: Applier | None = None
                      ) -> bool:
        """Record an accepted signal once and, in the same transaction, ``apply`` it to the
        pipeline's state: a crash between the two cannot leave a signal seen but unacted.
        Returns False when the signal was already recorded (and applied)."""
        insert_accepted(conn, sf)
        if apply is not None:
            try:
                apply(conn, sf)
            except IntegrityError as exc:  # the applier's own constraint: not a duplicate
                raise RuntimeError(f"applying {sf.path} broke a ledger constraint: "
                                   f"{exc.orig}") from exc
        return True

    def known_signal_files(self, kind: str) -> dict[str, float | None]:
        """Path -> mtime of every signal file of ``kind`` recorded (for the full rescan)."""
        with self.read() as conn:
            return {r.path: r.file_mtime for r in conn.execute(
                select(signals.c.path, signals.c.file_mtime).where(signals.c.kind == kind))}

    def quarantined(self, limit: int = 100) -> Sequence[Row[Any]]:
        with self.read() as conn:
            return conn.execute(select(signals).where(signals.c.status == "quarantined")
                                .order_by(signals.c.id.desc()).limit(limit)).all()

    def lab_fields(self, keys: Collection[str]) -> dict[str, dict[str, Any]]:
        """Key -> a lab's own fields, for the accepted signals of ``keys`` that had any."""
        if not keys:
            return {}
        with self.read() as conn:
            return {k: v for k, v in conn.execute(
                select(signals.c.idempotency_key, signals.c.extra_fields).where(
                    signals.c.idempotency_key.in_(sorted(set(keys))),
                    signals.c.extra_fields.is_not(None)))}

    def lab_fields_of(self, experiment: str, kind: str, signal_time: datetime
                      ) -> dict[str, Any]:
        """A lab's own fields of the experiment's latest accepted signal of ``kind`` whose
        timestamp is ``signal_time`` (a stage's row keeps the time of the signal that
        answered it, not its key); {} when it had none."""
        with self.read() as conn:
            row = conn.execute(select(signals.c.extra_fields).where(
                signals.c.experiment == experiment, signals.c.kind == kind,
                signals.c.status == "accepted", signals.c.signal_time == signal_time)
                .order_by(signals.c.id.desc()).limit(1)).first()
        return dict(row.extra_fields or {}) if row else {}

    def signal_counts(self) -> list[tuple[str, str, int]]:
        """(kind, status, how many) of every signal seen."""
        with self.read() as conn:
            return [(k, s, int(n)) for k, s, n in conn.execute(
                select(signals.c.kind, signals.c.status, func.count())
                .group_by(signals.c.kind, signals.c.status))]
