"""Copies of the ledger's database, taken while it is in use, and put back.

SQLite: the backup API (a consistent copy of a live WAL database), checked with
``PRAGMA integrity_check``; put back through the same API into the existing file (one
SQLite transaction, which a process that still holds the file sees whole), or by rename
where there is no file or one SQLite cannot read. PostgreSQL: ``pg_dump
--format=custom`` of the ledger's schema, read back by ``pg_restore --list``; put back by
``pg_restore --clean --single-transaction`` (all or nothing; the schema itself is never
dropped). The password travels in PGPASSWORD, never on a command line."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import text
from sqlalchemy.engine import make_url

from baton.errors import BatonError
from baton.ledger.engine import LedgerUnavailable, make_engine, normalize_url, sqlite_file

PG_TIMEOUT_S = 6 * 3600


def suffix(url: str) -> str:
    """The extension of a backup of ``url``'s database."""
    return ".sqlite" if sqlite_file(url) is not None else ".pgdump"


def write_copy(url: str, dest: Path) -> None:
    """A consistent copy of the live database at ``dest`` (which must not exist), checked;
    a copy that fails its check is removed and the check's answer raised."""
    path = sqlite_file(url)
    try:
        if path is not None:
            if not path.is_file():
                raise LedgerUnavailable(url, "no ledger there to back up")
            try:
                with _sqlite(path, "ro") as src, _sqlite(dest, "rwc") as dst:
                    src.backup(dst)
                    dst.execute("PRAGMA journal_mode=DELETE")  # one file: no WAL beside it
            except sqlite3.Error as exc:
                raise BatonError(f"cannot copy {path} to {dest}: {exc}") from None
        else:
            _pg("pg_dump", url, "--format=custom", "--no-owner", "--no-privileges",
                f"--schema={_schema(url)}", f"--file={dest}")
        verify(dest, pgdump=path is None)
    except BaseException:
        dest.unlink(missing_ok=True)
        raise


def verify(copy: Path, *, pgdump: bool | None = None) -> None:
    """Refuse a copy that is not a whole, readable ledger backup (one line why);
    ``pgdump``: a PostgreSQL dump (by default: a name ending ``.pgdump``)."""
    if not copy.is_file():
        raise BatonError(f"{copy}: no such backup file")
    if pgdump if pgdump is not None else copy.suffix == ".pgdump":
        listing = _run(["pg_restore", "--list", str(copy)], {}, f"{copy}")
        if "alembic_version" not in listing:
            raise BatonError(f"{copy}: not a backup of a ledger (no alembic_version table)")
        return
    try:
        with _sqlite(copy, "ro") as conn:
            rows = [r[0] for r in conn.execute("PRAGMA integrity_check")]
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    except sqlite3.DatabaseError as exc:
        raise BatonError(f"{copy}: not a readable SQLite database ({exc})") from None
    if rows != ["ok"]:
        raise BatonError(f"{copy}: integrity check failed: {'; '.join(rows[:3])}")
    if "alembic_version" not in tables:
        raise BatonError(f"{copy}: not a backup of a ledger (no alembic_version table)")


def put_back(url: str, copy: Path) -> None:
    """Replace the ledger at ``url`` with the verified backup ``copy``, all or nothing."""
    verify(copy)
    path = sqlite_file(url)
    if path is None:
        if copy.suffix != ".pgdump":
            raise BatonError(f"{copy}: a SQLite backup cannot restore the PostgreSQL ledger")
        _pg_restore(url, copy)
        return
    if copy.suffix == ".pgdump":
        raise BatonError(f"{copy}: a PostgreSQL backup cannot restore the SQLite ledger")
    if path.is_file() and _is_database(path):
        try:
            with _sqlite(copy, "ro") as src, _sqlite(path, "rw") as dst:
                src.backup(dst)  # one transaction on the live file (its WAL included)
        except sqlite3.Error as exc:
            raise BatonError(f"cannot restore {copy} into {path}: {exc} (the ledger is "
                             "as it was)") from None
        return
    # no file, or one SQLite cannot read: the copy takes its place by rename
    if not path.parent.is_dir():
        raise BatonError(f"cannot restore to {path}: its folder {path.parent} does not exist")
    tmp = path.with_name(f".{path.name}.restoring")
    shutil.copyfile(copy, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    for stale in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        stale.unlink(missing_ok=True)  # another database's WAL must never meet this file
    os.replace(tmp, path)


def _pg_restore(url: str, copy: Path) -> None:
    """Every object of the dump, dropped and created again in one transaction; its schema
    is made if missing but never dropped (it may hold what is not the ledger's)."""
    listing = _run(["pg_restore", "--list", str(copy)], {}, str(copy)).splitlines()
    schemas = [ln.split()[5] for ln in listing if re.match(r"^\d+; \d+ \d+ SCHEMA - ", ln)]
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            for name in schemas:
                conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{name}"'))
    except Exception as exc:
        raise LedgerUnavailable(url, str(exc).splitlines()[0]) from None
    finally:
        engine.dispose()
    with tempfile.NamedTemporaryFile("w", suffix=".list") as kept:
        kept.write("\n".join(ln for ln in listing if " SCHEMA - " not in ln) + "\n")
        kept.flush()
        _pg("pg_restore", url, "--clean", "--if-exists", "--single-transaction",
            "--exit-on-error", "--no-owner", "--no-privileges", f"--use-list={kept.name}",
            str(copy))


def _is_database(path: Path) -> bool:
    try:
        with _sqlite(path, "ro") as conn:
            conn.execute("PRAGMA schema_version").fetchone()
        return True
    except sqlite3.DatabaseError:
        return False


@contextmanager
def _sqlite(path: Path, mode: str) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection by URI (``ro``: never writes; ``rw``: never creates)."""
    uri = f"file:{quote(str(path.absolute()))}?mode={mode}"
    conn = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def _schema(url: str) -> str:
    """The schema the ledger lives in (its URL's search_path, else public)."""
    engine = make_engine(url, read_only=True)
    try:
        with engine.connect() as conn:
            return str(conn.execute(text("SELECT current_schema()")).scalar_one())
    except Exception as exc:
        raise LedgerUnavailable(url, str(exc).splitlines()[0]) from None
    finally:
        engine.dispose()


def _pg(tool: str, url: str, *args: str) -> str:
    parsed = make_url(normalize_url(url))
    env = {"PGPASSWORD": parsed.password} if parsed.password else {}
    libpq = parsed.set(drivername="postgresql", password=None).render_as_string(
        hide_password=False)
    return _run([tool, f"--dbname={libpq}", *args], env, tool)


def _run(argv: list[str], env: dict[str, str], what: str) -> str:
    if shutil.which(argv[0]) is None:
        raise BatonError(f"{argv[0]} is not installed (Debian: apt-get install "
                         "postgresql-client): it reads and writes PostgreSQL backups")
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=PG_TIMEOUT_S,
                              env={**os.environ, **env}, check=False)
    except subprocess.TimeoutExpired:
        raise BatonError(f"{what}: {argv[0]} did not finish in {PG_TIMEOUT_S} s") from None
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        raise BatonError(f"{what}: {argv[0]} failed: {lines[0] if lines else proc.returncode}")
    return proc.stdout
