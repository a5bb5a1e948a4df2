"""Retrained experiments in ``baton sql`` and the analysis: every generation's metrics stay
queryable (``metrics.generation``; a file from before generations reads as 1),
``latest_metrics`` holds each experiment's newest generation only, and the analysis and
the metrics summary read the newest generation."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from baton.analyze.data import Metrics
from baton.analyze.sqlviews import connect, refresh
from baton.analyze.summary import summarize
from baton.config import Config
from baton.evaluate.metric_schema import METRIC_SCHEMA
from baton.evaluate.writer import DatasetWriter
from baton.ledger import open_ledger

WHEN = datetime(2026, 1, 1, tzinfo=UTC)


def _legacy(config: Config, experiment: str, value: float) -> None:
    """Metrics as baton wrote them before generations: no ``generation`` column."""
    folder = (config.drive.experiment(experiment).metrics_dir / "dataset=toy" /
              "metric=accuracy")
    folder.mkdir(parents=True)
    pq.write_table(pa.table({"experiment": [experiment] * 2, "checkpoint": ["final"] * 2,
                             "dataset": ["toy"] * 2, "item_group": ["a", "b"],
                             "form": [""] * 2, "value": [value] * 2, "timestamp": [WHEN] * 2},
                            schema=METRIC_SCHEMA), folder / "part-final-11.parquet")


def _write(config: Config, experiment: str, generation: int, value: float, job: str) -> None:
    writer = DatasetWriter(config.drive.experiment(experiment), "final", "toy", job,
                           generation=generation)
    writer.add_all([{"metric": "accuracy", "value": value, "item_group": g,
                     "detail": {"id": g}} for g in ("a", "b", "c")])
    writer.commit()


@pytest.fixture
def retrained(config: Config) -> Config:
    """``old`` evaluated before generations, then retrained (generation 2, the same
    checkpoint name); ``new`` evaluated once (generation 1) and retrained (3 rows, 2)."""
    open_ledger(config.ledger_url, init=True).close()
    _legacy(config, "old", 0.25)
    _write(config, "old", 2, 0.75, "21")
    _write(config, "new", 1, 0.5, "31")
    _write(config, "new", 2, 1.0, "32")
    return config


BY_GENERATION = ("SELECT experiment, generation, count(*), avg(value) FROM {} "
                 "GROUP BY ALL ORDER BY ALL")


def test_baton_sql_shows_every_generation_and_the_latest(retrained: Config) -> None:
    con = connect(retrained)
    assert con.sql(BY_GENERATION.format("metrics")).fetchall() == [
        ("new", 1, 3, 0.5), ("new", 2, 3, 1.0), ("old", 1, 2, 0.25), ("old", 2, 3, 0.75)]
    assert con.sql(BY_GENERATION.format("latest_metrics")).fetchall() == [
        ("new", 2, 3, 1.0), ("old", 2, 3, 0.75)]
    assert con.sql(BY_GENERATION.format("experiment_metrics('old')")).fetchall() == [
        ("old", 1, 2, 0.25), ("old", 2, 3, 0.75)]
    assert con.sql("SELECT experiment, generation, count(*) FROM predictions GROUP BY ALL "
                   "ORDER BY ALL").fetchall() == [("new", 1, 3), ("new", 2, 3), ("old", 2, 3)]
    assert con.sql("SELECT count(*) FROM training_generations").fetchall() == [(0,)]


def test_the_duckdb_views_file_shows_them_too(retrained: Config) -> None:
    con = duckdb.connect()
    con.execute(refresh(retrained).read_text())
    assert con.sql(BY_GENERATION.format("latest_metrics")).fetchall() == [
        ("new", 2, 3, 1.0), ("old", 2, 3, 0.75)]
    assert con.sql(BY_GENERATION.format("metrics")).fetchall()[2] == ("old", 1, 2, 0.25)


def test_baton_sql_before_any_generation_was_written(config: Config) -> None:
    """Only history: the column is there all the same (generation 1)."""
    open_ledger(config.ledger_url, init=True).close()
    _legacy(config, "old", 0.25)
    env = {**os.environ, "SHARED_DRIVE": str(config.shared_drive),
           "BATON_STATE_DIR": str(config.state_dir), "BATON_CONFIG": "",
           "BATON_DATABASE_URL": ""}
    out = subprocess.run([sys.executable, "-m", "baton", "sql", BY_GENERATION.format(
        "latest_metrics"), "--format", "csv"], env=env, capture_output=True, text=True,
        timeout=120, check=True).stdout
    assert out.splitlines()[1:] == ["old,1,2,0.25"]


def test_the_analysis_and_the_summary_read_the_newest_generation(retrained: Config) -> None:
    metrics = Metrics(retrained.drive, ["old", "new"])
    assert list(metrics.values("old", "final", "a", "accuracy")) == [0.75]
    assert list(metrics.values("new", "final", "c", "accuracy")) == [1.0]
    metrics.close()
    summary = summarize(retrained.drive.experiment("old"))
    assert (summary.generation, summary.rows, summary.means) == (2, 3, {"toy/accuracy": 0.75})
    assert not summary.schema_problems  # the history's missing column is no problem
