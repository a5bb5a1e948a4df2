"""Shared fixtures. Tests that need a real service fail in CI (CI=true) when it is
missing, and skip elsewhere with a message saying how to start it."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from baton.config import Config, load_config
from baton.layout import DriveLayout

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
DATA = Path(__file__).parent / "data"


@pytest.fixture(autouse=True)
def _root_logging_as_it_was() -> Iterator[None]:
    """A command run in-process sets up logging on the stream pytest gave that test; the
    next test must not log into that closed stream."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(autouse=True)
def _default_signal_dispositions() -> None:
    """Every test starts, and spawns its processes, with SIGINT and SIGTERM as a fresh
    Python has them. Dagster's ``capture_interrupts`` (run in-process by some tests) sets
    SIGTERM to whatever SIGINT is on its way out: when pytest was started in the
    background, SIGINT is ignored, so SIGTERM became ignored too, and every process a
    later test started (inheriting it) ignored the SIGTERM meant to stop it (seen:
    ``baton exporter`` and ``baton logs --follow`` outliving their tests)."""
    import signal

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """A command that failed (exit 1) as people must see it: one line, no traceback."""
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def require(condition: bool, message: str) -> None:
    """Skip on a developer machine, fail in CI: a missing service is never silent there."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI: {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def drive(tmp_path: Path) -> DriveLayout:
    layout = DriveLayout(tmp_path / "drive")
    layout.create()
    return layout


@pytest.fixture
def config(tmp_path: Path, drive: DriveLayout) -> Config:
    env = {"SHARED_DRIVE": str(drive.root), "BATON_STATE_DIR": str(tmp_path / "state")}
    return load_config(path=None, env=env)


def _postgres_url() -> str | None:
    return os.environ.get("BATON_TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The ledger tests run on both: SQLite on local disk and a real PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state' / 'ledger.db'}"
        return
    url = _postgres_url()
    require(url is not None, "BATON_TEST_POSTGRES_URL is not set; start one with "
            "`export BATON_TEST_POSTGRES_URL=$(deploy/ci/postgres.sh)`")
    assert url is not None
    from sqlalchemy import create_engine, text

    from baton.ledger.engine import normalize_url

    schema = f"t_{secrets.token_hex(6)}"
    admin = create_engine(normalize_url(url))
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in url else "?"
    try:
        yield f"{url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def slurm_ready() -> tuple[bool, str]:
    if not shutil.which("sbatch"):
        return False, "sbatch is not on PATH"
    try:
        proc = subprocess.run(["sinfo", "--noheader", "--format=%t"], capture_output=True,
                              text=True, timeout=20, check=False)
    except subprocess.TimeoutExpired:
        return False, "sinfo did not answer"
    if proc.returncode != 0:
        return False, f"sinfo failed: {proc.stderr.strip()}"
    if not any(s.strip().rstrip("*") in ("idle", "mix", "alloc") for s in proc.stdout.split()):
        return False, f"no usable node (sinfo says {proc.stdout.split()})"
    return True, ""


@pytest.fixture(scope="session")
def slurm() -> None:
    ok, why = slurm_ready()
    require(ok, f"no running Slurm cluster ({why}); start the single-node cluster with "
            "`sudo deploy/slurm/single-node.sh up`")
