"""5. Evaluation worker write throughput: baton's DatasetWriter (validation, per-metric
files, batches, temp name + rename) against a bare pyarrow writer of the same rows."""

from __future__ import annotations

import random
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from baton.evaluate.metric_schema import METRIC_SCHEMA
from baton.evaluate.writer import DatasetWriter
from baton.layout import DriveLayout
from bench.common import Result, say
from bench.context import Context

TITLE = "evaluation worker write throughput vs bare pyarrow"
BATCH = 5000


def make_rows(n: int) -> list[dict]:
    """What an evaluator yields: one row per item and metric."""
    rnd = random.Random(3)
    return [{"metric": "accuracy" if i % 2 else "loss", "value": rnd.random(),
             "item_group": f"group-{i % 20:02d}", "form": f"form-{i % 4}"} for i in range(n)]


def bare_pyarrow(rows: list[dict], folder: Path, exp: str, checkpoint: str,
                 dataset: str) -> None:
    """The baseline: the same rows, batched per metric, straight into ParquetWriters."""
    stamp = datetime.now(UTC)
    buffers: dict[str, list[dict]] = defaultdict(list)
    writers: dict[str, pq.ParquetWriter] = {}

    def flush(metric: str) -> None:
        batch = buffers.pop(metric, [])
        if not batch:
            return
        n = len(batch)
        table = pa.table({
            "experiment": [exp] * n, "checkpoint": [checkpoint] * n, "dataset": [dataset] * n,
            "item_group": [r["item_group"] for r in batch], "form": [r["form"] for r in batch],
            "value": [r["value"] for r in batch], "timestamp": [stamp] * n,
        }, schema=METRIC_SCHEMA)
        if metric not in writers:
            (folder / metric).mkdir(parents=True, exist_ok=True)
            writers[metric] = pq.ParquetWriter(folder / metric / "part.parquet", METRIC_SCHEMA)
        writers[metric].write_table(table)

    for row in rows:
        buffers[row["metric"]].append(row)
        if len(buffers[row["metric"]]) >= BATCH:
            flush(row["metric"])
    for metric in list(buffers):
        flush(metric)
    for w in writers.values():
        w.close()


def run(ctx: Context) -> list[Result]:
    n = ctx.pick(100_000, 1_000_000)
    root = ctx.dir("writer")
    rows = make_rows(n)
    drive = DriveLayout(root / "drive")
    rates_b, rates_p = [], []
    for i in range(3):
        exp = drive.experiment(f"exp-{i}")
        t = time.perf_counter()
        w = DatasetWriter(exp, "checkpoint-1", "ds0", "1000", batch_rows=BATCH)
        w.add_all(rows)
        w.commit()
        rates_b.append(n / (time.perf_counter() - t))
        t = time.perf_counter()
        bare_pyarrow(rows, root / f"bare-{i}", exp.name, "checkpoint-1", "ds0")
        rates_p.append(n / (time.perf_counter() - t))
    best_b, best_p = sorted(rates_b)[1], sorted(rates_p)[1]
    say(f"  {n:,} rows: DatasetWriter {best_b:,.0f} rows/s, bare pyarrow {best_p:,.0f} rows/s")
    return [Result("5 writer", f"rows/s written, {n:,} rows", best_b, "rows/s", best_p,
                   "bare pyarrow", lower_better=False)]
