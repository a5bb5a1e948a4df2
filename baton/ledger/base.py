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
from sqlalchemy.exc import IntegrityError

from baton.ledger import migrate
from baton.ledger.engine import make_engine, with_retry

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
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = make_engine(url)

    def init(self) -> tuple[str | None, str]:
        return migrate.upgrade(self.engine)

    def check(self) -> migrate.CheckReport:
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
