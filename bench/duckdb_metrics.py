"""4. DuckDB over the metrics: the typical ad-hoc queries (mean accuracy per experiment and
item group; one experiment's learning curve) over 10^7 and 10^8 rows in the Parquet
layout, through ``baton sql``'s view, against pandas reading the same files. Partition
pruning: what the ``metric=`` folders and an experiment's own folder save.

The experiment's folder (``evaluation/{experiment}/``) is not a ``key=value`` partition,
so the learning curve through the view opens every experiment's files: its cost grows with
the number of experiments, not with the experiment's own rows. ``experiment_metrics(name)``
reads the experiment's own folder; both are measured. A third size keeps 10^7 rows but
spreads them over ten times as many experiments (learning-curve figures only; quick mode:
10^6 rows, four times the experiments)."""

from __future__ import annotations

import glob
import re
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from baton.analyze.sqlviews import connect
from baton.config import Config
from baton.evaluate.metric_schema import METRIC_SCHEMA
from baton.layout import DriveLayout
from baton.ledger import open_ledger
from bench.common import Result, say, timed
from bench.context import Context

TITLE = "DuckDB over the metrics Parquet (baton sql) vs pandas"
EXPERIMENTS, DATASETS, METRICS, CHECKPOINTS, GROUPS, FORMS = 50, 2, 2, 10, 20, 4
PER_EXPERIMENT = """SELECT experiment, item_group, avg(value) AS accuracy FROM metrics
WHERE metric = 'accuracy' GROUP BY ALL"""
CURVE = """SELECT checkpoint, dataset, avg(value) AS accuracy FROM metrics
WHERE experiment = '{exp}' AND metric = 'accuracy' GROUP BY ALL ORDER BY ALL"""


def _strings(indices: np.ndarray, values: list[str]) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(indices, pa.int32()),
                                          pa.array(values)).cast(pa.string())


def generate(drive: DriveLayout, rows: int, experiments: int = EXPERIMENTS) -> int:
    """Write ``rows`` metric rows the way evaluation workers do: one file per experiment,
    dataset, metric and checkpoint. Returns the number of files."""
    files = experiments * DATASETS * METRICS * CHECKPOINTS
    per_file = rows // files
    rng = np.random.default_rng(1)
    stamp = pa.array(np.full(per_file, datetime.now(UTC).timestamp() * 1e6, np.int64)
                     ).cast(METRIC_SCHEMA.field("timestamp").type)
    zeros = np.zeros(per_file, np.int32)
    groups = [f"group-{g:02d}" for g in range(GROUPS)]
    forms = [f"form-{f}" for f in range(FORMS)]
    for e in range(experiments):
        exp = f"exp-{e:03d}"
        for d in range(DATASETS):
            for m, metric in enumerate(("accuracy", "loss")[:METRICS]):
                folder = drive.experiment(exp).metrics_dir / f"dataset=ds{d}" / \
                    f"metric={metric}"
                folder.mkdir(parents=True, exist_ok=True)
                for c in range(CHECKPOINTS):
                    skill = 0.3 + 0.6 * (c + 1) / CHECKPOINTS
                    value = (rng.random(per_file) < skill).astype(np.float64) if m == 0 \
                        else rng.exponential(2 - skill, per_file)
                    table = pa.table({
                        "experiment": _strings(zeros, [exp]),
                        "checkpoint": _strings(zeros, [f"checkpoint-{c}"]),
                        "dataset": _strings(zeros, [f"ds{d}"]),
                        "item_group": _strings(rng.integers(0, GROUPS, per_file), groups),
                        "form": _strings(rng.integers(0, FORMS, per_file), forms),
                        "value": pa.array(value), "timestamp": stamp,
                    }, schema=METRIC_SCHEMA)
                    pq.write_table(table, folder / f"part-checkpoint-{c}-1000.parquet")
    return files


def pandas_per_experiment(root: Path):  # type: ignore[no-untyped-def]
    """The baseline: read the accuracy files (pruned by path, as a pandas user would)."""
    import pandas as pd

    files = glob.glob(str(root / "evaluation/*/metrics/dataset=*/metric=accuracy/*.parquet"))
    df = pd.concat([pd.read_parquet(f, columns=["experiment", "item_group", "value"])
                    for f in files], ignore_index=True)
    return df.groupby(["experiment", "item_group"])["value"].mean()


def pandas_curve(root: Path, exp: str):  # type: ignore[no-untyped-def]
    import pandas as pd

    files = glob.glob(str(root / f"evaluation/{exp}/metrics/dataset=*/metric=accuracy/*"))
    df = pd.concat([pd.read_parquet(f, columns=["checkpoint", "dataset", "value"])
                    for f in files], ignore_index=True)
    return df.groupby(["checkpoint", "dataset"])["value"].mean()


def files_read(con, sql: str) -> int | None:  # type: ignore[no-untyped-def]
    """How many Parquet files DuckDB opened for ``sql`` (from EXPLAIN ANALYZE)."""
    plan = "\n".join(str(r[-1]) for r in con.execute("EXPLAIN ANALYZE " + sql).fetchall())
    found = re.findall(r"Total Files Read:\s*(\d+)", plan)
    return sum(int(n) for n in found) if found else None


def one_size(ctx: Context, rows: int, experiments: int = EXPERIMENTS,
             curve_only: bool = False) -> list[Result]:
    root = ctx.dir(f"duckdb-{rows}-{experiments}")
    drive = DriveLayout(root)
    t = time.monotonic()
    nfiles = generate(drive, rows, experiments)
    say(f"  wrote {rows:,} rows of {experiments} experiments in {nfiles} files in "
        f"{time.monotonic() - t:.0f}s")
    config = Config(shared_drive=root, state_dir=root / "state")
    open_ledger(config.ledger_url, init=True).close()  # the views include the ledger's
    con = connect(config)
    exp = "exp-007"
    curve = CURVE.format(exp=exp)
    direct = curve.replace("FROM metrics", f"FROM experiment_metrics('{exp}')")
    # the same numbers with the filter inside the aggregate, where DuckDB cannot use it to
    # skip folders: what the query costs without partition pruning
    unpruned = ("SELECT experiment, item_group, avg(value) FILTER (WHERE metric = 'accuracy') "
                "FROM metrics GROUP BY ALL")
    repeat = 3 if rows >= 10**8 else 5
    size = f"10^{len(str(rows)) - 1} rows" + \
        ("" if experiments == EXPERIMENTS else f", {experiments} experiments")
    r: list[Result] = []
    if not curve_only:
        t_q1 = timed(lambda: con.execute(PER_EXPERIMENT).fetchall(), repeat=repeat)
        t_q1_pd = timed(lambda: pandas_per_experiment(root), repeat=max(1, repeat - 2))
        t_q1_all = timed(lambda: con.execute(unpruned).fetchall(),
                         repeat=max(1, repeat - 2))
        read_q1, read_all = files_read(con, PER_EXPERIMENT), files_read(con, unpruned)
        say(f"  files read: per-experiment {read_q1} (no pruning {read_all}) of {nfiles}")
        r += [Result("4 DuckDB", f"accuracy per experiment x item group, {size}", t_q1, "s",
                     t_q1_pd, "pandas"),
              Result("4 DuckDB", f"pruning: per-experiment query, metric= folders, {size}",
                     t_q1, "s", t_q1_all, "same, unpruned")]
        if read_q1 is not None and read_all is not None:
            r.append(Result("4 DuckDB", f"pruning: files read, per-experiment query, {size}",
                            read_q1, "files", read_all, "unpruned"))
    t_q2 = timed(lambda: con.execute(curve).fetchall(), repeat=repeat)
    t_q2_pd = timed(lambda: pandas_curve(root, exp), repeat=repeat)
    t_q2_dir = timed(lambda: con.execute(direct).fetchall(), repeat=repeat)
    read_q2, read_dir = files_read(con, curve), files_read(con, direct)
    say(f"  files read: learning curve {read_q2} (own folder {read_dir}) of {nfiles}")
    r += [Result("4 DuckDB", f"one experiment's learning curve, {size}", t_q2_dir, "s",
                 t_q2_pd, "pandas, its files only"),
          Result("4 DuckDB", f"one experiment's learning curve via the metrics view, {size}",
                 t_q2, "s", t_q2_pd, "pandas, its files only"),
          Result("4 DuckDB", f"pruning: learning curve from its own folder, {size}", t_q2_dir,
                 "s", t_q2, "via the view")]
    if read_q2 is not None and read_dir is not None:
        r.append(Result("4 DuckDB", f"pruning: files read, learning curve, {size}",
                        read_dir, "files", read_q2, "via the view"))
    con.close()
    shutil.rmtree(root, ignore_errors=True)
    return r


def run(ctx: Context) -> list[Result]:
    results = []
    for rows in ctx.pick([10**6], [10**7, 10**8]):
        results += one_size(ctx, rows)
    # the same rows over ten times the experiments (four in quick mode, to keep its few
    # minutes): what the learning curve costs grows with the number of experiments (their
    # folders are not key=value partitions)
    results += one_size(ctx, ctx.pick(10**6, 10**7), EXPERIMENTS * ctx.pick(4, 10),
                        curve_only=True)
    return results
