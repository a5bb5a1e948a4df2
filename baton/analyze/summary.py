"""DuckDB over one experiment's metrics Parquet: what the pipeline reports and checks. The
rows counted are the newest generation's (a retrain's results, not its predecessor's);
every file's schema is checked. Each mean is taken two ways, and named by the way it was
taken wherever it is shown (:meth:`MetricsSummary.labelled`): over every checkpoint, and at
the final checkpoint (the number the analysis report shows)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow.parquet as pq

from baton.analyze.data import last_checkpoint
from baton.analyze.numbers import FINAL, MEAN_OVER_CHECKPOINTS, labelled, rounded
from baton.evaluate.metric_schema import schema_problems, with_generation
from baton.layout import DriveLayout, ExperimentLayout


@dataclass
class MetricsSummary:
    files: int = 0
    rows: int = 0
    datasets: list[str] = field(default_factory=list)
    checkpoints: list[str] = field(default_factory=list)
    means: dict[str, float] = field(default_factory=dict)  # "dataset/metric" -> mean
    # "dataset/metric" -> mean at the final checkpoint (the report's number)
    finals: dict[str, float] = field(default_factory=dict)
    final_checkpoint: str | None = None
    schema_problems: dict[str, list[str]] = field(default_factory=dict)  # file -> problems
    generation: int | None = None  # the newest generation, whose rows are summarized

    def labelled(self) -> dict[str, float]:
        """Both means of each dataset/metric, each named by its aggregation (the
        campaign table's columns): ``heldout/perplexity (final checkpoint)``, ..."""
        out = {labelled(k, FINAL): v for k, v in self.finals.items()}
        out.update({labelled(k, MEAN_OVER_CHECKPOINTS): v for k, v in self.means.items()})
        return dict(sorted(out.items()))


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
    summary.means = {f"{d}/{m}": rounded(v) for d, m, v in con.execute(
        "SELECT dataset, metric, avg(value) FROM m GROUP BY 1, 2 ORDER BY 1, 2").fetchall()}
    if summary.checkpoints:
        final = summary.final_checkpoint = last_checkpoint(summary.checkpoints)
        summary.finals = {f"{d}/{m}": rounded(v) for d, m, v in con.execute(
            "SELECT dataset, metric, avg(value) FROM m WHERE checkpoint = ? GROUP BY 1, 2 "
            "ORDER BY 1, 2", [final]).fetchall()}
    con.close()
    return summary


def campaign_table(drive: DriveLayout, experiments: list[str]
                   ) -> tuple[list[str], list[dict[str, Any]]]:
    """The campaign's summary table (``summary.csv``): one row per experiment, its row
    count and each dataset/metric mean, named by its aggregation as in the reports."""
    rows: list[dict[str, Any]] = []
    for exp in experiments:
        summary = summarize(drive.experiment(exp))
        rows.append({"experiment": exp, "rows": summary.rows,
                     "final checkpoint": summary.final_checkpoint or "",
                     **summary.labelled()})
    fixed = ["experiment", "rows", "final checkpoint"]
    return [*fixed, *sorted({k for r in rows for k in r} - set(fixed))], rows
