"""``baton sql``'s ledger views: only the tables a query names are read, and each view is
the union of its table and the Parquet files ``baton db archive`` moved settled rows to
(``{state_dir}/archive/{table}/*.parquet``), through ``baton sql`` (a real process, real
DuckDB, a real SQLite ledger) and through the ``--views`` file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from baton.analyze.sqlviews import connect, ledger_batches, named_views, refresh
from baton.config import Config
from baton.ledger import Ledger, open_ledger


@pytest.fixture
def ledger(config: Config) -> Ledger:
    ledger = open_ledger(config.ledger_url, init=True)
    for n in range(3):
        ledger.claim_submission(f"k{n}", stage="evaluation", experiment=f"exp{n}",
                                backend="local")
    yield ledger
    ledger.close()


def archive(config: Config, ledger: Ledger, name: str, ids: list[int]) -> Path:
    """A Parquet file of slurm_jobs rows as ``baton db archive`` writes them (the table's
    columns): copies of the ledger's first row under other ids and keys."""
    rows = ledger_batches(ledger, "slurm_jobs").read_all().slice(0, 1)
    out = rows.take([0] * len(ids))
    out = out.set_column(out.schema.get_field_index("id"), "id",
                         pc.cast(ids, out.schema.field("id").type))
    out = out.set_column(out.schema.get_field_index("submission_key"), "submission_key",
                         pc.cast([f"old-{i}" for i in ids], "string"))
    folder = config.state_dir / "archive" / "slurm_jobs"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(out, folder / name)
    return folder / name


@pytest.mark.parametrize(("query", "views"), [
    ("SELECT * FROM metrics", []),
    ("SELECT count(*) FROM jobs", ["jobs"]),
    ('SELECT * FROM "Jobs" j JOIN main.signals s ON true', ["jobs", "signals"]),
    ("WITH x AS (SELECT * FROM heartbeats) SELECT 'campaigns' FROM x", ["heartbeats"]),
])
def test_a_query_reads_the_ledger_tables_it_names(query: str, views: list[str]) -> None:
    assert named_views(query) == views


def test_a_view_not_named_is_not_read(config: Config, ledger: Ledger) -> None:
    con = connect(config, ["jobs"])
    assert con.sql("SELECT count(*) FROM jobs").fetchall() == [(3,)]
    with pytest.raises(duckdb.CatalogException, match="signals"):
        con.sql("SELECT * FROM signals")


def test_a_ledger_view_streams_the_table_at_each_scan(config: Config, ledger: Ledger
                                                      ) -> None:
    """Nothing of the ledger is copied into DuckDB (its memory would grow with the table):
    each scan reads the table as the query runs, and a query may scan a view twice."""
    con = connect(config, ["jobs"])
    assert con.sql("SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE 'ledger%'"
                   ).fetchall() == [(0,)]
    ledger.claim_submission("k3", stage="evaluation", experiment="exp3", backend="local")
    assert con.sql("SELECT count(*) FROM jobs").fetchall() == [(4,)]  # read now, not before
    assert con.sql("SELECT count(*) FROM jobs a JOIN jobs b USING (id)").fetchall() == [(4,)]


def test_the_archive_is_part_of_the_view(config: Config, ledger: Ledger) -> None:
    con = connect(config, ["jobs"])
    assert con.sql("SELECT count(*) FROM jobs").fetchall() == [(3,)]  # no archive yet
    archive(config, ledger, "2026-01.parquet", [100, 101])
    archive(config, ledger, "2026-02.parquet", [102])
    con = connect(config)
    assert con.sql("SELECT count(*), count(DISTINCT submission_key), max(id) FROM jobs"
                   ).fetchall() == [(6, 6, 102)]
    env = {**os.environ, "SHARED_DRIVE": str(config.shared_drive),
           "BATON_STATE_DIR": str(config.state_dir), "BATON_CONFIG": "",
           "BATON_DATABASE_URL": ""}
    proc = subprocess.run([sys.executable, "-m", "baton", "sql", "--format", "csv",
                           "SELECT id FROM jobs WHERE submission_key LIKE 'old-%' ORDER BY id"],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["id", "100", "101", "102"]
    views = refresh(config)  # the duckdb CLI's file: the snapshot and the archive
    cli = duckdb.connect()
    cli.execute(views.read_text())
    assert cli.sql("SELECT count(*) FROM jobs").fetchall() == [(6,)]
