"""Engines for the ledger: SQLite on local disk by default, PostgreSQL by URL.

SQLite gets WAL, a busy timeout and ``BEGIN IMMEDIATE`` for writes, so concurrent
writers queue instead of failing; what still fails with SQLITE_BUSY is retried.
Only an engine made with ``create=True`` (``baton db init``, the demo, tests) may create a
SQLite file or its folder: sqlite3 creates a missing file on connect otherwise, and a
command run with the wrong configuration would quietly start an empty ledger.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from sqlalchemy import URL, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from baton.errors import BatonError
from baton.retry import retry

T = TypeVar("T")
BUSY_TIMEOUT_MS = 30_000
CONNECT_TIMEOUT_S = 10  # PostgreSQL, unless the URL sets connect_timeout
STREAM_ROWS = 10_000  # rows fetched at a time by a query that streams (yield_per)


def normalize_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here (the driver baton installs)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


class LedgerUnavailable(BatonError):
    """The ledger cannot be used: names its URL (without password) and the problem."""

    def __init__(self, url: str, problem: str) -> None:
        self.url = display_url(url)
        self.problem = problem
        super().__init__(f"ledger {self.url}: {problem}")


class LedgerMissing(LedgerUnavailable):
    """No ledger at the URL: only ``baton db init`` (and the demo) create one."""

    def __init__(self, url: str) -> None:
        super().__init__(url, "no ledger there: run `baton db init` to create it (or point "
                              "--config / BATON_CONFIG / BATON_DATABASE_URL at the right one)")


def display_url(url: str) -> str:
    """The URL without its password, for messages and logs. One that cannot be read
    (SQLAlchemy's parser says so with ArgumentError, or ValueError for a port that is no
    number) loses everything before its last ``@`` after the scheme: no parser decides
    there where a password ends."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        scheme, sep, rest = url.partition("://") if "://" in url else ("", "", url)
        if "@" in rest:
            rest = "***@" + rest.rsplit("@", 1)[1]
        return scheme + sep + rest


def one_line(exc: BaseException) -> str:
    """The first line of a database driver's message (psycopg adds hints on more lines)."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip()
    return text.splitlines()[0].strip() if text else type(orig).__name__


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (None for PostgreSQL and in-memory SQLite)."""
    parsed = make_url(normalize_url(url))
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def make_engine(url: str, *, create: bool = False, read_only: bool = False) -> Engine:
    """An engine on ``url``. ``create``: a missing SQLite file (and its folder) may be
    created. ``read_only``: every transaction is read-only (SQLite opened ``mode=ro``,
    PostgreSQL ``SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY``)."""
    try:
        parsed = make_url(normalize_url(url))
    except (ArgumentError, ValueError) as exc:  # ValueError: a port that is no number
        raise LedgerUnavailable(url, f"not a database URL ({exc})") from None
    if parsed.get_backend_name() != "sqlite":
        # a host that drops packets would otherwise hold a command for the TCP timeout
        args = {} if "connect_timeout" in parsed.query else {"connect_timeout": CONNECT_TIMEOUT_S}
        engine = create_engine(parsed, pool_pre_ping=True, pool_size=5, max_overflow=5,
                               connect_args=args)
        if read_only:
            @event.listens_for(engine, "connect")
            def _read_only(dbapi_conn: Any, _record: Any) -> None:
                with dbapi_conn.cursor() as cur:
                    cur.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
                dbapi_conn.commit()
        return engine
    path = sqlite_file(url)
    if path is not None:
        if create and not read_only:
            path.parent.mkdir(parents=True, exist_ok=True)
        mode = "ro" if read_only else ("rwc" if create else "rw")
        parsed = parsed.set(database="file:" + quote(str(path.absolute())),
                            query={**parsed.query, "mode": mode, "uri": "true"})
    return _sqlite_engine(parsed, read_only)


def _sqlite_engine(parsed: URL, read_only: bool) -> Engine:
    engine = create_engine(parsed, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
        cur = dbapi_conn.cursor()
        if not read_only:  # a read-only connection cannot change the journal mode
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
