"""What every part of the ledger shares: the engine, read and write connections, and the
one way to write: :func:`transaction`, a method in one write transaction, retried while
the database is busy."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError

from baton.ledger import migrate
from baton.ledger.engine import (
    LedgerMissing,
    LedgerUnavailable,
    make_engine,
    one_line,
    sqlite_file,
    with_retry,
)

P = ParamSpec("P")
T = TypeVar("T")
L = TypeVar("L", bound="LedgerBase")
_RAISE: Any = object()


def utcnow() -> datetime:
    return datetime.now(UTC)


def transaction(*, duplicate: Any = _RAISE
                ) -> Callable[[Callable[Concatenate[L, Connection, P], T]],
                              Callable[Concatenate[L, P], T]]:
    """Run the decorated method in one write transaction (BEGIN IMMEDIATE on SQLite, so
    writers queue), handing it the connection; retried whole while the database is busy.
    ``duplicate``: what the method returns when a unique key it inserts is already taken
    (the transaction is rolled back); by default the IntegrityError propagates."""
    def decorate(fn: Callable[Concatenate[L, Connection, P], T]
                 ) -> Callable[Concatenate[L, P], T]:
        @functools.wraps(fn)
        def method(self: L, /, *args: P.args, **kwargs: P.kwargs) -> T:
            def once() -> T:
                try:
                    with self.write() as conn:
                        return fn(self, conn, *args, **kwargs)
                except IntegrityError:
                    if duplicate is _RAISE:
                        raise
                    return duplicate  # type: ignore[no-any-return]

            return with_retry(once, what=f"ledger {fn.__name__}")
        return method
    return decorate


class LedgerBase:
    """``create``: :meth:`init` may create the ledger (``baton db init``, the demo, tests);
    otherwise it only upgrades one that exists. ``read_only``: no transaction can write."""

    def __init__(self, url: str, *, create: bool = False, read_only: bool = False) -> None:
        self.url = url
        self.create = create
        self.engine: Engine = make_engine(url, create=create, read_only=read_only)

    def init(self) -> tuple[str | None, str]:
        """Create (with ``create``) or upgrade the schema; returns (before, after)."""
        if not self.create:
            self.revision()  # refuses a ledger that does not exist
        try:
            return migrate.upgrade(self.engine)
        except DBAPIError as exc:
            raise LedgerUnavailable(self.url, one_line(exc)) from None

    def revision(self) -> str:
        """The schema revision of an existing ledger; refuses a missing or unreachable one."""
        path = sqlite_file(self.url)
        if path is not None and not path.is_file():
            raise LedgerMissing(self.url)
        try:
            rev = migrate.current_revision(self.engine)
        except DBAPIError as exc:
            raise LedgerUnavailable(self.url, one_line(exc)) from None
        if rev is None:
            raise LedgerMissing(self.url)
        return rev

    def require_current(self) -> None:
        """Refuse a ledger that is missing, unreachable or not at the code's schema."""
        rev, head = self.revision(), migrate.head_revision()
        if rev != head:
            raise LedgerUnavailable(self.url, f"schema is at {rev}, this baton expects {head}:"
                                              " run `baton db upgrade`")

    def check(self) -> migrate.CheckReport:
        path = sqlite_file(self.url)
        if path is not None and not path.is_file() and not self.create:
            return migrate.CheckReport(ok=False, revision=None, head=migrate.head_revision(),
                                       problems=[f"{path} does not exist: run `baton db "
                                                 "init` to create it"])
        return migrate.check(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction (BEGIN IMMEDIATE on SQLite, so writers queue); callers in
        the ledger use :func:`transaction`, which also retries."""
        with self.engine.connect().execution_options(sqlite_immediate=True) as conn, \
                conn.begin():
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn
