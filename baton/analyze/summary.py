"""DuckDB over one experiment's metrics Parquet: what the pipeline reports and checks. The
rows counted are the newest generation's (a retrain's results, not its predecessor's);
every file's schema is checked."""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb
import pyarrow.parquet as pq

from baton.evaluate.metric_schema import schema_problems, with_generation
from baton.layout import ExperimentLayout


@dataclass
class MetricsSummary:
    files: int = 0
    rows: int = 0
    datasets: list[str] = field(default_factory=list)
    checkpoints: list[str] = field(default_factory=list)
    means: dict[str, float] = field(default_factory=dict)  # "dataset/metric" -> mean
    schema_problems: dict[str, list[str]] = field(default_factory=dict)  # file -> problems
    generation: int | None = None  # the newest generation, whose rows are summarized


def summarize(exp: ExperimentLayout, generation: int | None = None) -> MetricsSummary:
    """Row counts and mean value per dataset and metric of ``generation`` (else the
    newest); each file's schema checked."""
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
    listed = "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in good) + "]"
    con.execute("CREATE VIEW every_generation AS " + with_generation(
        f"read_parquet({listed}, hive_partitioning = true, union_by_name = true)"))
    summary.generation = generation or con.execute(
        "SELECT max(generation) FROM every_generation").fetchone()[0]
    con.execute("CREATE VIEW m AS SELECT * FROM every_generation WHERE generation = "
                f"{int(summary.generation or 0)}")  # no rows at all: none
    summary.rows = con.execute("SELECT count(*) FROM m").fetchone()[0]
    summary.datasets = [r[0] for r in con.execute("SELECT DISTINCT dataset FROM m ORDER BY 1")
                        .fetchall()]
    summary.checkpoints = [r[0] for r in con.execute(
        "SELECT DISTINCT checkpoint FROM m ORDER BY 1").fetchall()]
    summary.means = {f"{d}/{m}": round(v, 6) for d, m, v in con.execute(
        "SELECT dataset, metric, avg(value) FROM m GROUP BY 1, 2 ORDER BY 1, 2").fetchall()}
    con.close()
    return summary
