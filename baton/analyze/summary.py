"""DuckDB over one experiment's metrics Parquet: what the pipeline reports and checks."""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb
import pyarrow.parquet as pq

from baton.evaluate.metric_schema import schema_problems
from baton.layout import ExperimentLayout


@dataclass
class MetricsSummary:
    files: int = 0
    rows: int = 0
    datasets: list[str] = field(default_factory=list)
    checkpoints: list[str] = field(default_factory=list)
    means: dict[str, float] = field(default_factory=dict)  # "dataset/metric" -> mean
    schema_problems: dict[str, list[str]] = field(default_factory=dict)  # file -> problems


def summarize(exp: ExperimentLayout) -> MetricsSummary:
    """Row counts and mean value per dataset and metric; each file's schema checked."""
    files = exp.metric_files()
    summary = MetricsSummary(files=len(files))
    good = []
    for f in files:
        try:
            problems = schema_problems(pq.read_schema(f))
        except Exception as exc:  # unreadable Parquet is a schema problem, not a crash
            problems = [f"unreadable: {exc}"]
        if problems:
            summary.schema_problems[str(f.relative_to(exp.metrics_dir))] = problems
        else:
            good.append(str(f))
    if not good:
        return summary
    con = duckdb.connect()
    con.read_parquet(good, hive_partitioning=True).create_view("m")
    summary.rows = con.execute("SELECT count(*) FROM m").fetchone()[0]
    summary.datasets = [r[0] for r in con.execute("SELECT DISTINCT dataset FROM m ORDER BY 1")
                        .fetchall()]
    summary.checkpoints = [r[0] for r in con.execute(
        "SELECT DISTINCT checkpoint FROM m ORDER BY 1").fetchall()]
    summary.means = {f"{d}/{m}": round(v, 6) for d, m, v in con.execute(
        "SELECT dataset, metric, avg(value) FROM m GROUP BY 1, 2 ORDER BY 1, 2").fetchall()}
    con.close()
    return summary
