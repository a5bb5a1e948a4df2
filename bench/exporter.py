"""3. Exporter scrape time vs ledger size (10^3, 10^5, 10^6 job rows) against the same
numbers computed with a plain SQL query per metric (bench/plain_queries.py: the database
aggregates, Python formats the lines). The two scrapes are compared sample by sample, both
ways, before anything is timed; the number of samples per scrape is reported beside the
time. The exporter computes the ledger's numbers off the scrape (baton/exporter/
snapshot.py), so two figures: the computation (the work, against the baseline's queries)
and the scrape as Prometheus waits for it (against the baseline's whole scrape)."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from baton.config import Config
from baton.exporter.collector import BatonCollector, QueueSnapshot
from baton.ledger import open_ledger
from bench.common import Result, say, timed
from bench.context import Context
from bench.ledger_fill import fill_range
from bench.plain_queries import Key, PlainQueries

TITLE = "exporter scrape time vs ledger size (collector vs a query per metric)"
BENCH = "3 exporter"
QUEUE = Counter({"PENDING": 5, "RUNNING": 2})
# the exporter's own health (component up, scrape duration): not numbers from the ledger
OWN = "baton_exporter_"
# ages are taken at a different moment by each scrape (up to a minute apart at 10^6 rows)
AGES = ("baton_oldest_waiting_job_seconds", "baton_longest_running_job_seconds",
        "baton_oldest_unanswered_training_seconds", "baton_oldest_unanswered_evaluation_seconds")


def registry_scrape(registry: CollectorRegistry) -> Callable[[], bytes]:
    return lambda: generate_latest(registry)


def parse(body: bytes) -> dict[Key, float]:
    """(sample name, sorted label pairs) -> value, leaving out the exporter's own health."""
    out = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            if not s.name.startswith(OWN):
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _close(name: str, a: float, b: float) -> bool:
    if name in AGES:
        return math.isclose(a, b, abs_tol=300.0)
    if name.startswith("baton_shared_drive_free"):  # others write to the same disk
        return math.isclose(a, b, rel_tol=0.01)
    if name.endswith("_sum") or name.endswith("cpu_seconds_total"):  # summation order
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-9)


def compare(ours: dict[Key, float], plain: dict[Key, float]) -> list[str]:
    """Every sample of each scrape present in the other with the same value (ages to five
    minutes, sums of floats to 1e-9, the rest exactly up to float rounding)."""
    problems = [f"{k}: collector only ({ours[k]})" for k in sorted(ours.keys() - plain.keys())]
    problems += [f"{k}: plain queries only ({plain[k]})"
                 for k in sorted(plain.keys() - ours.keys())]
    problems += [f"{k}: collector {ours[k]} vs plain {plain[k]}"
                 for k in sorted(ours.keys() & plain.keys())
                 if not _close(k[0], ours[k], plain[k])]
    return problems


PEAK = """
import sys
from pathlib import Path
from baton.config import Config
from baton.exporter.collector import BatonCollector, QueueSnapshot
from baton.ledger import open_ledger
from bench.common import peak_growth
from bench.exporter import QUEUE
from bench.plain_queries import PlainQueries
root = Path(sys.argv[1])
ledger = open_ledger(f"sqlite:///{root / 'ledger.db'}")
collector = BatonCollector(Config(shared_drive=root, state_dir=root / "state"), ledger,
                           QueueSnapshot(lambda: QUEUE, 30))
collector._integrity_metric()  # the integrity check is cached: not part of a computation
work = collector.compute_ledger if sys.argv[2] == "baton" else \
    PlainQueries(ledger, collector).samples
print(peak_growth(work, every=0.01)[1])
"""


def compute_memory_mb(root: Path, which: str) -> float:
    """Memory one computation of the ledger's numbers adds to a fresh exporter process
    (peak RSS during it minus RSS before it), in MB."""
    out = subprocess.run([sys.executable, "-c", PEAK, str(root), which], capture_output=True,
                         text=True, check=True, cwd=Path(__file__).resolve().parents[1])
    return float(out.stdout.strip().splitlines()[-1])


def served_scrape(collector: BatonCollector) -> float:
    """Median time Prometheus waits for a scrape once the exporter has computed the ledger
    once: ten scrapes in a row, as they come (a computation due or running, or resting)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    snap = collector.snapshot
    snap.start()  # the first computation, as a running exporter has done
    with snap.cond:
        snap.cond.wait_for(lambda: snap.generation >= 1)
    return timed(registry_scrape(registry), repeat=10, warmup=0)


def run(ctx: Context) -> list[Result]:
    sizes = ctx.pick([1_000, 100_000], [1_000, 100_000, 1_000_000])
    root = ctx.dir("exporter")
    results: list[Result] = []
    have = 0
    db = root / "ledger.db"
    ledger = open_ledger(f"sqlite:///{db}", init=True)
    config = Config(shared_drive=root, state_dir=root / "state")
    base = "query per metric"
    try:
        for n in sizes:
            say(f"  filling the ledger to {n:,} job rows")
            fill_range(ledger, have, n)
            have = n
            # waits for every computation: what it serves is what the ledger says now
            fresh = BatonCollector(config, ledger, QueueSnapshot(lambda: QUEUE, 30),
                                   ledger_wait=86400)
            plain = PlainQueries(ledger, fresh)
            t_first = timed(fresh.compute_ledger, repeat=1, warmup=0)
            registry = CollectorRegistry(auto_describe=False)
            registry.register(fresh)
            ours, theirs = parse(generate_latest(registry)), parse(plain.scrape())
            problems = compare(ours, theirs)
            if problems:
                say(f"  {len(problems)} samples differ, e.g. " + "; ".join(problems[:5]))
            big = n >= 1_000_000  # a computation takes tens of seconds: fewer repetitions
            t_baton = timed(fresh.compute_ledger, repeat=2 if big else 5,
                            warmup=0 if big else 1)
            t_plain = timed(plain.samples, repeat=2 if big else 5, warmup=0 if big else 1)
            t_scrape = served_scrape(BatonCollector(config, ledger,
                                                    QueueSnapshot(lambda: QUEUE, 30)))
            t_plain_scrape = timed(plain.scrape, repeat=2 if big else 5, warmup=0)
            label = f"{n:,} job rows"
            mem_b, mem_p = compute_memory_mb(root, "baton"), compute_memory_mb(root, "plain")
            results += [
                Result(BENCH, f"scrape as Prometheus waits for it, {label}", t_scrape, "s",
                       t_plain_scrape, base),
                Result(BENCH, f"computing the ledger's numbers, {label}", t_baton, "s",
                       t_plain, base),
                Result(BENCH, f"samples per scrape, {label}", len(ours), "samples",
                       len(theirs), base),
                Result(BENCH, f"first computation (+ integrity check), {label}", t_first,
                       "s", t_baton, "ordinary computation"),
                Result(BENCH, f"memory one computation adds, {label}", mem_b, "MB", mem_p,
                       base),
            ]
            families = len({name for name, _ in ours})
            say(f"  {label}: scrape {t_scrape:.3f}s vs {t_plain_scrape:.3f}s; computation "
                f"{t_baton:.3f}s vs plain queries {t_plain:.3f}s; {len(ours)} samples "
                f"({len(theirs)} plain) of {families} sample names; {len(problems)} differ; "
                f"first {t_first:.3f}s; memory {mem_b:.0f} MB vs {mem_p:.0f} MB")
    finally:
        ledger.close()
        shutil.rmtree(root, ignore_errors=True)
    return results
