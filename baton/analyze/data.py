"""DuckDB over the hive-partitioned metrics of one experiment and its campaign."""

from __future__ import annotations

import re
from dataclasses import dataclass

import duckdb
import numpy as np

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


@dataclass
class Frame:
    """A small query result: column names and rows."""

    columns: list[str]
    rows: list[tuple]

    def column(self, name: str) -> list:
        i = self.columns.index(name)
        return [r[i] for r in self.rows]


class Metrics:
    """One DuckDB connection with a view ``m`` over the given experiments' metrics."""

    def __init__(self, drive: DriveLayout, experiments: list[str]) -> None:
        self.con = duckdb.connect()
        files = metrics_glob(drive, experiments)
        if not files:
            raise FileNotFoundError(f"no metrics Parquet for {', '.join(experiments)}")
        self.con.read_parquet(files, hive_partitioning=True).create_view("m")

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
