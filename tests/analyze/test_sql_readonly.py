"""``baton sql`` is read-only: it reads the drive's Parquet and its own ledger snapshot and
nothing else; a statement that would write, attach, install or reconfigure is refused with one
line, and an error raised while rows are fetched is one line too (real processes, real
DuckDB, a real SQLite ledger)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from baton.config import Config
from baton.evaluate.metric_schema import METRIC_SCHEMA
from baton.ledger import open_ledger
from tests.conftest import one_error_line


@pytest.fixture
def site(config: Config) -> tuple[Config, dict[str, str]]:
    """A ledger with one job and one experiment's metrics on the drive."""
    ledger = open_ledger(config.ledger_url, init=True)
    ledger.claim_submission("k1", stage="evaluation", experiment="exp1", backend="local")
    ledger.close()
    folder = config.drive.evaluation / "exp1" / "metrics" / "dataset=d1" / "metric=accuracy"
    folder.mkdir(parents=True)
    rows = {"experiment": ["exp1"], "checkpoint": ["final"], "dataset": ["d1"],
            "item_group": ["all"], "form": ["f"], "value": [0.75],
            "timestamp": [datetime(2026, 1, 1, tzinfo=UTC)]}
    pq.write_table(pa.table(rows, schema=METRIC_SCHEMA), folder / "part-0.parquet")
    env = {**os.environ, "SHARED_DRIVE": str(config.shared_drive),
           "BATON_STATE_DIR": str(config.state_dir), "BATON_CONFIG": "",
           "BATON_DATABASE_URL": ""}
    return config, env


def sql(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "baton", "sql", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_reads_the_views(site: tuple[Config, dict[str, str]]) -> None:
    _, env = site
    proc = sql(env, "SELECT experiment, value FROM metrics; SELECT count(*) FROM jobs",
               "--format", "csv")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["count_star()", "1"]
    proc = sql(env, "SELECT experiment, metric, value FROM metrics", "--format", "csv")
    assert proc.stdout.splitlines() == ["experiment,metric,value", "exp1,accuracy,0.75"]


def test_copy_cannot_overwrite_the_ledger(site: tuple[Config, dict[str, str]]) -> None:
    config, env = site
    db = config.state_dir / "ledger.db"
    before = db.read_bytes()
    line = one_error_line(sql(env, f"COPY (SELECT 1) TO '{db}' (FORMAT csv)"))
    assert line.startswith("baton: error: ") and "read-only" in line and "COPY" in line
    assert db.read_bytes() == before
    ledger = open_ledger(config.ledger_url)
    assert [j.experiment for j in ledger.jobs()] == ["exp1"]
    ledger.close()


@pytest.mark.parametrize("where", ["state", "drive", "tmp"])
def test_copy_writes_nowhere(site: tuple[Config, dict[str, str]], tmp_path: Path,
                             where: str) -> None:
    config, env = site
    folder = {"state": config.state_dir / "sql" / "ledger", "drive": config.drive.evaluation,
              "tmp": tmp_path}[where]
    target = folder / "out.parquet"
    one_error_line(sql(env, f"COPY (SELECT * FROM jobs) TO '{target}'"))
    assert not target.exists()
    assert where == "state" or not (config.state_dir / "sql").exists()


@pytest.mark.parametrize("statement", [
    "ATTACH 'https://example.com/x.db' AS x",
    "ATTACH '{tmp}/attached.db' AS x",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET enable_external_access = true",
    "SET lock_configuration = false",
    "EXPORT DATABASE '{tmp}/export'",
    "CREATE TABLE t AS SELECT 1",
    "SELECT 1; COPY (SELECT 1) TO '{tmp}/second.csv'",
])
def test_statements_that_write_or_reach_out_are_refused(
        site: tuple[Config, dict[str, str]], tmp_path: Path, statement: str) -> None:
    config, env = site
    out = tmp_path / "out"
    out.mkdir()
    line = one_error_line(sql(env, statement.format(tmp=out)))
    assert "read-only" in line
    assert list(out.iterdir()) == []
    assert not (config.state_dir / "sql").exists()  # refused before any snapshot


@pytest.mark.parametrize("source", ["read_csv('/etc/passwd')",
                                    "read_parquet('https://example.com/x.parquet')",
                                    "read_text('/etc/hostname')"])
def test_reading_outside_the_drive_and_the_snapshot_is_refused(
        site: tuple[Config, dict[str, str]], source: str) -> None:
    _, env = site
    line = one_error_line(sql(env, f"SELECT * FROM {source}"))
    assert line.startswith("baton: error: query failed: ")


@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
def test_an_error_while_fetching_is_one_line(site: tuple[Config, dict[str, str]],
                                             fmt: str) -> None:
    _, env = site
    proc = sql(env, "SELECT CAST(experiment || 'x' AS INTEGER) FROM jobs", "--format", fmt)
    line = one_error_line(proc)
    assert "query failed" in line and "Conversion" in line
    assert proc.stdout == ""  # no header of a table that never came


@pytest.mark.parametrize("value", ["-1", "0", "many"])
def test_max_rows_must_be_positive(site: tuple[Config, dict[str, str]], value: str) -> None:
    _, env = site
    proc = sql(env, "SELECT 1", "--max-rows", value)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr  # argparse's usage error
    assert "--max-rows" in proc.stderr.strip().splitlines()[-1]
