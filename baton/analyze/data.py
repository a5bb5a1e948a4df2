"""DuckDB over the hive-partitioned metrics of one experiment and its campaign: each
experiment's newest generation (a retrained experiment is analysed on its retrain's
results; a file written before generations is generation 1)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import duckdb
import numpy as np

from baton.evaluate.metric_schema import with_generation
from baton.layout import DriveLayout

STEP = re.compile(r"checkpoint-(\d+)$")


def metrics_glob(drive: DriveLayout, experiments: list[str]) -> list[str]:
    files = []
    for exp in experiments:
        files += [str(p) for p in drive.experiment(exp).metric_files()]
    return files


def step_of(checkpoint: str, final_step: int | None) -> int | None:
    m = STEP.search(checkpoint)
    if m:
        return int(m.group(1))
    return final_step if checkpoint == "final" else None


def last_checkpoint(names: list[str], final_step: int | None = None) -> str:
    """The checkpoint a "final checkpoint" number is taken at: ``final`` (the copy of
    the last one the training announces) if it was evaluated, else the highest step."""
    if "final" in names:
        return "final"
    return max(names, key=lambda c: step_of(c, final_step) or -1)


@dataclass
class Frame:
    """A small query result: column names and rows."""

    columns: list[str]
    rows: list[tuple]

    def column(self, name: str) -> list:
        i = self.columns.index(name)
        return [r[i] for r in self.rows]


class Metrics:
    """One DuckDB connection with a view ``m`` over the given experiments' metrics, each
    experiment's newest generation only."""

    def __init__(self, drive: DriveLayout, experiments: list[str]) -> None:
        self.con = duckdb.connect()
        files = metrics_glob(drive, experiments)
        if not files:
            raise FileNotFoundError(f"no metrics Parquet for {', '.join(experiments)}")
        listed = "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"
        source = f"read_parquet({listed}, hive_partitioning = true, union_by_name = true)"
        self.con.execute(f"CREATE VIEW m AS SELECT * FROM ({with_generation(source)}) "
                         "QUALIFY generation = max(generation) OVER (PARTITION BY experiment)")

    def query(self, sql: str, params: list | None = None) -> Frame:
        cur = self.con.execute(sql, params or [])
        return Frame([d[0] for d in cur.description], cur.fetchall())

    def values(self, experiment: str, checkpoint: str, group: str, metric: str) -> np.ndarray:
        rows = self.con.execute(
            "SELECT value FROM m WHERE experiment = ? AND checkpoint = ? AND item_group = ? "
            "AND metric = ?", [experiment, checkpoint, group, metric]).fetchall()
        return np.array([r[0] for r in rows], dtype=float)

    def close(self) -> None:
        self.con.close()
