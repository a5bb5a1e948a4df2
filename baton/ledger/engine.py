"""Engines for the ledger: SQLite on local disk by default, PostgreSQL by URL.

SQLite gets WAL, a busy timeout and ``BEGIN IMMEDIATE`` for writes, so concurrent
writers queue instead of failing; what still fails with SQLITE_BUSY is retried.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from baton.retry import retry

T = TypeVar("T")
BUSY_TIMEOUT_MS = 30_000
STREAM_ROWS = 10_000  # rows fetched at a time by a query that streams (yield_per)


def normalize_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here (the driver baton installs)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str) -> Engine:
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def is_busy(exc: BaseException) -> bool:
    """SQLITE_BUSY / SQLITE_LOCKED, and PostgreSQL's serialization and deadlock errors."""
    if not isinstance(exc, OperationalError):
        return False
    text = str(exc.orig).lower()
    return any(s in text for s in ("database is locked", "database is busy", "deadlock",
                                   "could not serialize"))


def with_retry(fn: Callable[[], T], what: str = "ledger write") -> T:
    return retry(fn, should_retry=is_busy, attempts=8, base=0.05, cap=2.0, what=what)
