"""Only ``baton db init`` (and the demo, and tests by asking) create a ledger: every other
way in refuses a missing, unreachable or outdated one with one line naming the URL (never
its password), and leaves no file, folder or spool change behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from baton.ledger import Ledger, LedgerMissing, LedgerUnavailable, open_ledger
from baton.ledger.migrate import head_revision, upgrade


def baton(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "baton", *args], capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=120, check=False)


def _tables(ledger_url: str) -> list[str]:
    from sqlalchemy import create_engine, inspect

    from baton.ledger.engine import normalize_url

    engine = create_engine(normalize_url(ledger_url))
    try:
        return inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_open_refuses_a_missing_ledger_and_creates_nothing(ledger_url: str,
                                                           tmp_path: Path) -> None:
    with pytest.raises(LedgerMissing) as err:
        open_ledger(ledger_url)
    message = str(err.value)
    assert "baton db init" in message and "\n" not in message
    assert "ledger " + ("sqlite:///" if ledger_url.startswith("sqlite") else "postgresql")\
        in message
    assert not (tmp_path / "state").exists()  # neither the SQLite file nor its folder
    if not ledger_url.startswith("sqlite"):
        assert _tables(ledger_url) == []


def test_init_creates_then_open_reads(ledger_url: str) -> None:
    open_ledger(ledger_url, init=True).close()
    ledger = open_ledger(ledger_url)
    assert ledger.quarantined() == []
    ledger.close()


def test_upgrade_refuses_a_missing_ledger(ledger_url: str, tmp_path: Path) -> None:
    with pytest.raises(LedgerMissing):
        Ledger(ledger_url).init()
    assert not (tmp_path / "state").exists()
    if not ledger_url.startswith("sqlite"):
        assert _tables(ledger_url) == []


def test_open_refuses_an_outdated_schema(ledger_url: str) -> None:
    ledger = Ledger(ledger_url, create=True)
    upgrade(ledger.engine, "0006")
    ledger.close()
    with pytest.raises(LedgerUnavailable, match="run `baton db upgrade`"):
        open_ledger(ledger_url)
    ledger = Ledger(ledger_url)
    assert ledger.init()[1] == head_revision()  # upgrade takes an existing ledger along
    ledger.close()
    open_ledger(ledger_url).close()


def test_unreachable_postgres_is_one_line_without_password() -> None:
    url = "postgresql://baton:s3cret@127.0.0.1:1/nowhere"
    with pytest.raises(LedgerUnavailable) as err:
        open_ledger(url)
    message = str(err.value)
    assert message.startswith("ledger postgresql://baton:***@127.0.0.1:1/nowhere: ")
    assert "s3cret" not in message and "\n" not in message


def test_a_bad_url_is_one_line() -> None:
    with pytest.raises(LedgerUnavailable, match="not a database URL"):
        open_ledger("no-such-scheme://x:secret@host/db")


def test_read_only_ledger_refuses_writes(ledger_url: str) -> None:
    from sqlalchemy.exc import DBAPIError

    open_ledger(ledger_url, init=True).close()
    ledger = open_ledger(ledger_url, read_only=True)
    assert ledger.quarantined() == []
    with pytest.raises(DBAPIError), ledger.engine.begin() as conn:
        conn.execute(text("DELETE FROM signals"))
    ledger.close()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """SHARED_DRIVE set, no configuration: the default ledger is in a state folder that
    does not exist."""
    return {"SHARED_DRIVE": str(tmp_path / "drive"), "BATON_STATE_DIR": str(tmp_path / "state"),
            "BATON_CONFIG": "", "BATON_DATABASE_URL": ""}


@pytest.mark.parametrize("command", [("status", "list"), ("sql", "SELECT 1"),
                                     ("exporter", "--port", "0"), ("signal", "quarantined"),
                                     ("db", "upgrade"), ("db", "check"),
                                     ("campaign", "list")])
def test_commands_refuse_a_missing_ledger(tmp_path: Path, env: dict[str, str],
                                          command: tuple[str, ...]) -> None:
    (tmp_path / "drive").mkdir()
    report = baton("status", "report", "--project", "p", "--job", "j", "--status", "started",
                   env=env)
    assert report.returncode == 0, report.stderr
    spool = sorted((tmp_path / "drive" / "status" / "spool").iterdir())
    assert spool
    proc = baton(*command, env=env)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert "baton db init" in proc.stderr + proc.stdout
    assert str(tmp_path / "state" / "ledger.db") in proc.stderr + proc.stdout
    assert not (tmp_path / "state").exists()
    assert sorted((tmp_path / "drive" / "status" / "spool").iterdir()) == spool


def test_db_init_creates_the_ledger(tmp_path: Path, env: dict[str, str]) -> None:
    proc = baton("db", "init", env=env)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "state" / "ledger.db").is_file()
    assert baton("db", "check", env=env).returncode == 0


@pytest.mark.parametrize("command", [("status", "list"), ("sql", "SELECT 1"),
                                     ("exporter", "--port", "0"), ("campaign", "list"),
                                     ("db", "upgrade"), ("db", "check")])
def test_commands_name_an_unreachable_ledger_in_one_line(env: dict[str, str],
                                                         command: tuple[str, ...]) -> None:
    url = "postgresql://baton:s3cret@127.0.0.1:1/baton"
    proc = baton(*command, env={**env, "BATON_DATABASE_URL": url})
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and "s3cret" not in proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("baton: error: ledger postgresql://baton:***@127.0.0.1:1/baton: ")
    assert "Connection refused" in line
