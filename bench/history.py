"""10. History that stays cheap (issue 16), at 10^3, 10^5 and 10^6 job rows: the
exporter's computation of the ledger's numbers from its running totals of the settled
history (baton/exporter/folds.py), against today's pass over the whole history
(``BatonCollector(full_every=None)``); and ``baton sql``'s first query, which reads only the
ledger tables it names, streamed in Arrow batches, against the copy of every ledger table
into Python lists that ``baton sql`` made on each call until then (:func:`copy_all`, kept
here as the baseline). Each figure is measured in a fresh process: its time and the
memory it adds (peak RSS during it minus RSS before it). The two exporters' scrapes are
compared sample by sample first (bench/exporter.py's comparison)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from baton.config import Config
from baton.exporter.collector import BatonCollector, QueueSnapshot
from baton.ledger import open_ledger
from bench.common import Result, say
from bench.context import Context
from bench.exporter import QUEUE, compare, parse
from bench.ledger_fill import fill_range

TITLE = "history that stays cheap: exporter running totals, baton sql's first query"
BENCH = "11 history"
# one query that names a ledger table, one that names none (the metrics, on an empty drive)
QUERIES = {"jobs": "SELECT state, count(*) FROM jobs GROUP BY state",
           "metrics": "SELECT count(*) FROM metrics"}

MEASURE = r"""
import json, sys
from collections import Counter
from pathlib import Path
from baton.config import Config
from bench.common import peak_growth
root, which = Path(sys.argv[1]), sys.argv[2]
config = Config(shared_drive=root / "drive", state_dir=root)
if which.startswith("exporter"):
    from baton.exporter.collector import BatonCollector, QueueSnapshot
    from baton.ledger import open_ledger
    ledger = open_ledger(config.ledger_url, read_only=True)
    c = BatonCollector(config, ledger, QueueSnapshot(lambda: Counter({"PENDING": 5}), 30),
                       full_every=None if which == "exporter-whole" else 86400)
    c._integrity_metric()  # cached: not part of a computation
    if which == "exporter-folded":
        c.compute_ledger()  # the exporter's first computation, when it starts
    work = c.compute_ledger
else:
    from baton.analyze.sqlviews import connect, named_views
    from bench.history import copy_all
    query = sys.argv[3]
    def work():
        con = copy_all(config) if which == "sql-copy" else connect(config, named_views(query))
        con.sql(query).fetchall()
print(json.dumps(peak_growth(work)))
"""


def copy_all(config: Config):  # type: ignore[no-untyped-def]
    """``baton sql``'s ledger views as the base commit (d967042) made them: every table
    read into Python lists, then into DuckDB (the drive's views are the same either way)."""
    import pyarrow as pa
    from sqlalchemy import select

    from baton.analyze.sqlviews import ARROW, LEDGER_VIEWS, connect
    from baton.ledger.schema import metadata
    from baton.ledger.tables import _plain

    con = connect(config, [])  # the drive's views; then the copy of the ledger
    ledger = open_ledger(config.ledger_url, read_only=True)
    try:
        for view, table in LEDGER_VIEWS.items():
            t = metadata.tables[table]
            with ledger.read() as conn:
                rows = conn.execute(select(t)).mappings().all()
            data = {c.name: [_plain(r[c.name]) for r in rows] for c in t.columns}
            schema = pa.schema([(n, ARROW[k]) for n, k in ledger.table_columns(table)])
            con.from_arrow(pa.table(data, schema=schema)).create(view)
    finally:
        ledger.close()
    return con


def measure(root: Path, which: str, *args: str) -> tuple[float, float]:
    """(seconds, MB added) of one computation or query in a fresh process."""
    out = subprocess.run([sys.executable, "-c", MEASURE, str(root), which, *args],
                         capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    took, mb = json.loads(out.stdout.strip().splitlines()[-1])
    return float(took), float(mb)


def same_scrapes(config: Config) -> int:
    """Samples that differ between the folded and the whole-history exporter (after the
    folded one's first computation and a second)."""
    ledger = open_ledger(config.ledger_url, read_only=True)
    try:
        scrapes = []
        for full_every in (86400, None):
            c = BatonCollector(config, ledger, QueueSnapshot(lambda: QUEUE, 30),
                               ledger_wait=86400, full_every=full_every)
            c.compute_ledger()
            registry = CollectorRegistry(auto_describe=False)
            registry.register(c)
            scrapes.append(parse(generate_latest(registry)))
        problems = compare(*scrapes)
    finally:
        ledger.close()
    if problems:
        say(f"  {len(problems)} samples differ, e.g. " + "; ".join(problems[:5]))
    return len(problems)


def run(ctx: Context) -> list[Result]:
    sizes = ctx.pick([1_000, 100_000], [1_000, 100_000, 1_000_000])
    root = ctx.dir("history")
    config = Config(shared_drive=root / "drive", state_dir=root)
    config.drive.evaluation.mkdir(parents=True, exist_ok=True)
    results: list[Result] = []
    have = 0
    ledger = open_ledger(config.ledger_url, init=True)
    try:
        for n in sizes:
            say(f"  filling the ledger to {n:,} job rows")
            fill_range(ledger, have, n)
            have = n
            label = f"{n:,} job rows"
            differ = same_scrapes(config)
            folded = measure(root, "exporter-folded")
            whole = measure(root, "exporter-whole")
            base = "whole history, as before"
            results += [
                Result(BENCH, f"exporter computation, {label}", folded[0], "s", whole[0],
                       base),
                Result(BENCH, f"memory it adds, {label}", folded[1], "MB", whole[1], base),
                Result(BENCH, f"samples that differ, {label}", differ, "samples", 0,
                       "none"),
            ]
            line = (f"  {label}: exporter {folded[0]:.3f}s vs {whole[0]:.3f}s, "
                    f"{folded[1]:.0f} MB vs {whole[1]:.0f} MB, {differ} samples differ")
            for name, query in QUERIES.items():
                ours = measure(root, "sql", query)
                theirs = measure(root, "sql-copy", query)
                base = "every table copied, as before"
                results += [
                    Result(BENCH, f"baton sql first query of {name}, {label}", ours[0], "s",
                           theirs[0], base),
                    Result(BENCH, f"memory it adds ({name}), {label}", ours[1], "MB",
                           theirs[1], base),
                ]
                line += (f"; sql {name} {ours[0]:.3f}s vs {theirs[0]:.3f}s, "
                         f"{ours[1]:.0f} MB vs {theirs[1]:.0f} MB")
            say(line)
    finally:
        ledger.close()
        shutil.rmtree(root, ignore_errors=True)
    return results
