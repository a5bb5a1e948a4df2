"""3. Exporter scrape time vs ledger size (10^3, 10^5, 10^6 job rows) against the same
numbers computed with a plain SQL query per metric (the database aggregates, Python
formats a few dozen lines). The two outputs are compared sample by sample first."""

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
from sqlalchemy import text

from baton.config import Config
from baton.exporter.collector import (
    LATENCY_BUCKETS,
    RATIO_BUCKETS,
    WAIT_BUCKETS,
    BatonCollector,
    QueueSnapshot,
)
from baton.exporter.states import _MAP, DASHBOARD_STATES, FAILURE_REASONS
from baton.ledger import Ledger, open_ledger
from bench.common import Result, say, timed
from bench.context import Context
from bench.ledger_fill import fill_range

TITLE = "exporter scrape time vs ledger size (collector vs a query per metric)"
QUEUE = Counter({"PENDING": 5, "RUNNING": 2})

SHOWN = ("CASE WHEN state = 'PENDING' AND reason LIKE 'JobHeld%' THEN 'held' "
         + " ".join(f"WHEN state = '{s}' THEN '{d}'" for s, d in _MAP.items())
         + " ELSE 'failed' END")
REASON = ("CASE WHEN state = 'OUT_OF_MEMORY' OR (state = 'FAILED' AND exit_signal = 9 AND "
          "max_rss_mb <> 0 AND req_mem_mb <> 0 AND max_rss_mb >= req_mem_mb) "
          "THEN 'out_of_memory' WHEN state IN ('TIMEOUT', 'DEADLINE') THEN 'timeout' "
          "WHEN state IN ('NODE_FAIL', 'BOOT_FAIL') THEN 'node_fail' "
          "WHEN state = 'PREEMPTED' THEN 'preempted' WHEN state = 'CANCELLED' THEN 'cancelled' "
          "WHEN state = 'SUBMIT_FAILED' THEN 'submit_failed' WHEN state = 'LOST' THEN 'lost' "
          "ELSE 'error' END")


def _secs(a: str, b: str) -> str:
    return f"MAX(0.0, (julianday({b}) - julianday({a})) * 86400.0)"


def _hist_sql(value: str, where: str, buckets: tuple[float, ...], group: str = "stage",
              source: str = "slurm_jobs") -> str:
    cols = ", ".join(f"SUM(v <= {b})" for b in buckets)
    sel = f"{group} AS g, " if group else "'' AS g, "
    return (f"SELECT g, COUNT(*), SUM(v), {cols} FROM (SELECT {sel}{value} AS v "
            f"FROM {source} WHERE {where}) GROUP BY g")


FLOWS = """
WITH ev AS (SELECT trigger_key, MIN(submitted_at) AS sub, MAX(completed_at) AS done,
                   SUM(completed_at IS NULL) AS open FROM evaluation_jobs GROUP BY trigger_key),
an AS (SELECT trigger_key, MAX(completed_at) AS done FROM analysis_jobs
       WHERE status = 'completed' GROUP BY trigger_key),
t AS (SELECT tr.signal_key AS k, tr.completed_at AS trained, s.file_mtime AS mtime,
             ev.sub, ev.done AS evaluated, ev.open, an.done AS analysed
      FROM training_runs tr LEFT JOIN signals s ON s.idempotency_key = tr.signal_key
      LEFT JOIN ev ON ev.trigger_key = tr.signal_key
      LEFT JOIN an ON an.trigger_key = tr.signal_key)
"""


class PlainQueries:
    """The baseline: every number of the scrape from one aggregate query per metric."""

    def __init__(self, ledger: Ledger, collector: BatonCollector) -> None:
        self.ledger, self.collector = ledger, collector

    def samples(self) -> dict[tuple[str, tuple[str, ...]], float]:
        out: dict[tuple[str, tuple[str, ...]], float] = {}
        with self.ledger.read() as conn:
            def q(sql: str) -> list:
                result = conn.execute(text(sql))
                return result.fetchall() if result.returns_rows else []

            stages = sorted({r[0] for r in q("SELECT DISTINCT stage FROM slurm_jobs")}
                            | {"evaluation", "analysis"})
            counts = {(s, d): n for s, d, n in q(
                f"SELECT stage, {SHOWN}, COUNT(*) FROM slurm_jobs GROUP BY 1, 2")}
            failed = {(s, r): n for s, r, n in q(
                f"SELECT stage, {REASON}, COUNT(*) FROM slurm_jobs WHERE ({SHOWN}) = 'failed' "
                "GROUP BY 1, 2")}
            fin = dict(q("SELECT stage, COUNT(*) FROM slurm_jobs WHERE state = 'COMPLETED' "
                         "GROUP BY stage"))
            restarts = dict(q("SELECT stage, SUM(COALESCE(restarts, 0)) FROM slurm_jobs "
                              "GROUP BY stage"))
            cpu = dict(q("SELECT stage, SUM(COALESCE(cpu_seconds, 0)) FROM slurm_jobs "
                         "GROUP BY stage"))
            for stage in stages:
                for state in DASHBOARD_STATES:
                    out[("baton_jobs", (stage, state))] = counts.get((stage, state), 0)
                for reason in FAILURE_REASONS:
                    out[("baton_jobs_failed_total", (stage, reason))] = \
                        failed.get((stage, reason), 0)
                out[("baton_jobs_finished_total", (stage,))] = fin.get(stage, 0)
                out[("baton_job_restarts_total", (stage,))] = restarts.get(stage, 0)
                out[("baton_job_cpu_seconds_total", (stage,))] = cpu.get(stage, 0.0)
            hists = {
                "baton_job_queue_wait_seconds": (
                    _secs("submitted_at", "started_at"),
                    "submitted_at IS NOT NULL AND started_at IS NOT NULL", WAIT_BUCKETS),
                "baton_job_run_seconds": (
                    _secs("started_at", "ended_at"),
                    "started_at IS NOT NULL AND ended_at IS NOT NULL", WAIT_BUCKETS),
                "baton_job_memory_used_ratio": (
                    "max_rss_mb / req_mem_mb", "max_rss_mb <> 0 AND req_mem_mb <> 0",
                    RATIO_BUCKETS)}
            for name, (value, where, buckets) in hists.items():
                for row in q(_hist_sql(value, where, buckets)):
                    self._hist(out, name, (row[0],), buckets, row)
            for stage, n in q(
                    "WITH ok AS (SELECT stage, MAX(ended_at) AS last FROM slurm_jobs WHERE "
                    "state = 'COMPLETED' GROUP BY stage) SELECT j.stage, COUNT(*) FROM "
                    f"slurm_jobs j LEFT JOIN ok ON ok.stage = j.stage WHERE ({SHOWN}) = "
                    "'failed' AND j.ended_at IS NOT NULL AND j.ended_at > COALESCE(ok.last, '')"
                    " GROUP BY j.stage"):
                out[("baton_stage_consecutive_failures", (stage,))] = n
            for stage, at in q("SELECT stage, MAX(ended_at) FROM slurm_jobs WHERE state = "
                               "'COMPLETED' AND ended_at IS NOT NULL GROUP BY stage"):
                out[("baton_stage_last_success_timestamp_seconds", (stage,))] = \
                    _epoch(conn, at)
            for stage, oldest in q("SELECT stage, MIN(submitted_at) FROM slurm_jobs WHERE "
                                   f"({SHOWN}) IN ('pending', 'held') GROUP BY stage"):
                out[("baton_oldest_waiting_job_seconds", (stage,))] = _age(conn, oldest)
            for stage, oldest in q("SELECT stage, MIN(started_at) FROM slurm_jobs WHERE "
                                   f"({SHOWN}) IN ('started', 'running') GROUP BY stage"):
                out[("baton_longest_running_job_seconds", (stage,))] = _age(conn, oldest)
            for camp, stage, state, n in q(
                    f"SELECT COALESCE(j.campaign, t.campaign, 'none'), j.stage, {SHOWN}, "
                    "COUNT(*) FROM slurm_jobs j LEFT JOIN training_runs t "
                    "ON t.experiment_name = j.experiment GROUP BY 1, 2, 3"):
                out[("baton_campaign_jobs", (camp, stage, state))] = n
            for kind, status, n in q("SELECT kind, status, COUNT(*) FROM signals "
                                     "GROUP BY kind, status"):
                out[("baton_signals_total", (kind, status))] = n
            for name, at in q("SELECT name, beat_at FROM heartbeats"):
                out[("baton_sensor_heartbeat_timestamp_seconds", (name,))] = _epoch(conn, at)
            self._flows(q, out)
        return out

    @staticmethod
    def _hist(out: dict, name: str, labels: tuple[str, ...], buckets: tuple[float, ...],
              row: tuple) -> None:
        n, total, *counts = row[1:]
        for b, c in zip(buckets, counts, strict=True):
            out[(f"{name}_bucket", (*labels, str(b)))] = c or 0
        out[(f"{name}_bucket", (*labels, "+Inf"))] = n
        out[(f"{name}_count", labels)] = n
        out[(f"{name}_sum", labels)] = total or 0.0

    def _flows(self, q, out: dict) -> None:  # type: ignore[no-untyped-def]
        """The flow latencies: the join once into a temporary table, then one histogram
        query per metric."""
        q("DROP TABLE IF EXISTS temp.flows")
        q("CREATE TEMP TABLE flows AS " + FLOWS + "SELECT * FROM t")
        done = "sub IS NOT NULL AND open = 0 AND evaluated IS NOT NULL"
        detect = "MAX(0.0, (julianday(sub) - 2440587.5) * 86400.0 - mtime)"
        for name, value, where, buckets in (
                ("baton_signal_detection_latency_seconds", detect,
                 "mtime IS NOT NULL AND sub IS NOT NULL", LATENCY_BUCKETS),
                ("baton_training_to_evaluation_seconds", _secs("trained", "evaluated"),
                 f"{done} AND trained IS NOT NULL", WAIT_BUCKETS),
                ("baton_evaluation_to_analysis_seconds", _secs("evaluated", "analysed"),
                 f"{done} AND analysed IS NOT NULL", WAIT_BUCKETS),
                ("baton_end_to_end_seconds", _secs("trained", "analysed"),
                 f"{done} AND analysed IS NOT NULL", WAIT_BUCKETS)):
            for row in q(_hist_sql(f"COALESCE({value}, 0.0)", where, buckets, "", "flows")):
                self._hist(out, name, (), buckets, row)
        age = q("SELECT (julianday('now') - julianday(MIN(trained))) * 86400.0 FROM flows "
                "WHERE trained IS NOT NULL AND (sub IS NULL OR open > 0 OR evaluated IS NULL)")
        out[("baton_oldest_unanswered_training_seconds", ())] = age[0][0] or 0

    def scrape(self) -> bytes:
        """The same exposition text: queries, plus the collector's queue, drive and
        (cached) integrity parts, which do not depend on the ledger's size."""
        lines = [f"{name}{_labels(labels)} {value}"
                 for (name, labels), value in self.samples().items()]
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Rest(self.collector))
        return "\n".join(lines).encode() + generate_latest(registry)


class _Rest:
    def __init__(self, collector: BatonCollector) -> None:
        self.c = collector

    def collect(self):  # type: ignore[no-untyped-def]
        yield from self.c._queue()
        yield from self.c._drive()
        yield self.c._integrity_metric()


def _labels(values: tuple[str, ...]) -> str:
    return "{" + ",".join(f'l{i}="{v}"' for i, v in enumerate(values)) + "}" if values else ""


def _epoch(conn, at: str | None) -> float:  # type: ignore[no-untyped-def]
    if at is None:
        return 0.0
    return conn.execute(text("SELECT (julianday(:a) - 2440587.5) * 86400.0"), {"a": at}
                        ).scalar()


def _age(conn, at: str | None) -> float:  # type: ignore[no-untyped-def]
    if at is None:
        return 0.0
    return conn.execute(text("SELECT (julianday('now') - julianday(:a)) * 86400.0"),
                        {"a": at}).scalar()


def registry_scrape(registry: CollectorRegistry) -> Callable[[], bytes]:
    return lambda: generate_latest(registry)


def baton_samples(body: bytes) -> dict[tuple[str, tuple[str, ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.values())))] = s.value
    return out


def compare(ours: dict, plain: dict) -> list[str]:
    """Samples that differ (ages and timestamps to a second, the rest to 1e-6)."""
    problems = []
    for (name, labels), value in plain.items():
        key = (name, tuple(sorted(labels)))
        mine = ours.get(key)
        # ages are taken at a different moment (60 s); julianday rounds each duration to
        # ~1 ms, so a count at a bucket's edge may be off by one
        tol = 60.0 if "seconds" in name and not name.endswith(("_bucket", "_count")) \
            else max(1.0, 1e-4 * abs(value))
        if (mine is None or not math.isclose(mine, value, abs_tol=tol)) and \
                not key[0].endswith("_sum"):
            problems.append(f"{key}: collector {mine} vs plain {value}")
    return problems


PEAK = """
import sys, threading, time
from pathlib import Path
import psutil
from prometheus_client import CollectorRegistry, generate_latest
from baton.config import Config
from baton.exporter.collector import BatonCollector, QueueSnapshot
from baton.ledger import open_ledger
from bench.exporter import QUEUE, PlainQueries
root = Path(sys.argv[1])
ledger = open_ledger(f"sqlite:///{root / 'ledger.db'}")
collector = BatonCollector(Config(shared_drive=root, state_dir=root / "state"), ledger,
                           QueueSnapshot(lambda: QUEUE, 30))
collector._integrity_metric()  # the integrity check is cached: not part of a scrape
me = psutil.Process()
before = peak = me.memory_info().rss
done = False
def watch():
    global peak
    while not done:
        peak = max(peak, me.memory_info().rss)
        time.sleep(0.01)
t = threading.Thread(target=watch)
t.start()
if sys.argv[2] == "baton":
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    generate_latest(registry)
else:
    PlainQueries(ledger, collector).scrape()
done = True
t.join()
print((max(peak, me.memory_info().rss) - before) / 1e6)
"""


def scrape_memory_mb(root: Path, which: str) -> float:
    """Memory one scrape adds to a fresh exporter process (peak RSS during the scrape
    minus RSS before it), in MB."""
    out = subprocess.run([sys.executable, "-c", PEAK, str(root), which], capture_output=True,
                         text=True, check=True, cwd=Path(__file__).resolve().parents[1])
    return float(out.stdout.strip().splitlines()[-1])


def run(ctx: Context) -> list[Result]:
    sizes = ctx.pick([1_000, 100_000], [1_000, 100_000, 1_000_000])
    root = ctx.dir("exporter")
    results: list[Result] = []
    have = 0
    db = root / "ledger.db"
    ledger = open_ledger(f"sqlite:///{db}")
    config = Config(shared_drive=root, state_dir=root / "state")
    try:
        for n in sizes:
            say(f"  filling the ledger to {n:,} job rows")

            fill_range(ledger, have, n)
            have = n
            collector = BatonCollector(config, ledger, QueueSnapshot(lambda: QUEUE, 30))
            registry = CollectorRegistry(auto_describe=False)
            registry.register(collector)
            plain = PlainQueries(ledger, collector)
            scrape = registry_scrape(registry)
            t_cold = timed(scrape, repeat=1, warmup=0)
            problems = compare(baton_samples(scrape()), plain.samples())
            if problems:
                say(f"  {len(problems)} samples differ, e.g. {problems[:3]}")
            big = n >= 1_000_000  # a scrape takes tens of seconds: fewer repetitions
            t_baton = timed(scrape, repeat=2 if big else 5, warmup=0 if big else 1)
            t_plain = timed(plain.scrape, repeat=2 if big else 5, warmup=1)
            label = f"{n:,} job rows"
            mem_b, mem_p = scrape_memory_mb(root, "baton"), scrape_memory_mb(root, "plain")
            results += [
                Result("3 exporter", f"scrape, {label}", t_baton, "s", t_plain,
                       "query per metric"),
                Result("3 exporter", f"first scrape (+ integrity check), {label}", t_cold,
                       "s", t_baton, "ordinary scrape"),
                Result("3 exporter", f"memory one scrape adds, {label}", mem_b, "MB", mem_p,
                       "query per metric"),
            ]
            say(f"  {label}: scrape {t_baton:.3f}s vs plain queries {t_plain:.3f}s; first "
                f"{t_cold:.3f}s; {len(problems)} samples differ; memory {mem_b:.0f} MB vs "
                f"{mem_p:.0f} MB")
    finally:
        ledger.close()
        shutil.rmtree(root, ignore_errors=True)
    return results



