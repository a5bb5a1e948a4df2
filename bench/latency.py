"""1. Signal detection latency: a ``.training_complete`` written (its mtime) to the
evaluation job accepted by Slurm (the ledger's ``submitted_at``, recorded the moment
sbatch returned its id; Slurm's own SubmitTime has one-second resolution), through a real
dagster-daemon, median and p95 over 50 signals, next to the sensor's interval (the floor).
Also how far apart the training sensor's ticks really are (its heartbeat in the ledger,
sampled every 0.1 s while the signals go through). ``--interval 4,9,14`` runs the whole
benchmark once per ``sensors.interval_seconds`` (default 5)."""

from __future__ import annotations

import itertools
import random
import statistics
import threading
import time
from datetime import datetime

from sqlalchemy import func, select

from baton.ledger.schema import heartbeats, signals
from bench.common import Result, percentile, say
from bench.context import Context
from bench.daemon import start_pipeline
from bench.slurm_held import SKIPPED, slurm_available

TITLE = "signal detection latency through a real dagster-daemon and Slurm"
BENCH = "1 detection"
# the default interval (Context.intervals): Dagster's sensor daemon loops at most every 5 s
# (MIN_INTERVAL_LOOP_TIME in dagster/_daemon/sensor.py), so a shorter interval is not
# honoured and 5 s is the real floor
SENSOR = "training_sensor"


class TickWatch:
    """Every distinct heartbeat of the training sensor, polled from the ledger every 0.1 s
    (each tick writes one), so the gaps between ticks can be measured."""

    def __init__(self, ledger) -> None:  # type: ignore[no-untyped-def]
        self.ledger = ledger
        self.beats: list[datetime] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with self.ledger.read() as conn:
                    at = conn.execute(select(heartbeats.c.beat_at).where(
                        heartbeats.c.name == SENSOR)).scalar()
            except Exception:  # a busy ledger: try again at the next sample
                at = None
            if at is not None and (not self.beats or at != self.beats[-1]):
                self.beats.append(at)
            self._stop.wait(0.1)

    def __enter__(self) -> TickWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def gaps(self) -> list[float]:
        return [(b - a).total_seconds() for a, b in itertools.pairwise(self.beats)]


def run(ctx: Context) -> list[Result]:
    if not slurm_available():
        say(f"  {SKIPPED}")
        return []
    results: list[Result] = []
    for i, interval in enumerate(ctx.intervals):
        if i:
            ctx.close()  # the previous interval's daemon stops and its jobs are cancelled
        results += one_interval(ctx, interval)
    return results


def one_interval(ctx: Context, interval: int) -> list[Result]:
    n = ctx.pick(5, 50)
    say(f"  sensors.interval_seconds: {interval}")
    pipe = start_pipeline(ctx, f"latency-{interval}", interval)
    rnd = random.Random(5)
    latencies: list[float] = []
    noticed: list[float] = []
    with TickWatch(pipe.ledger) as watch:
        for i in range(n):
            time.sleep(rnd.uniform(0, interval))  # land anywhere in the sensor's cycle
            exp = f"lat-{i:03d}"
            path = pipe.train(exp)
            written = path.stat().st_mtime

            def submitted(exp: str = exp) -> bool:
                return any(r.submitted_at for r in pipe.ledger.jobs(experiment=exp))

            pipe.wait_for(f"the evaluation of {exp}", submitted, timeout=300)
            job = next(r for r in pipe.ledger.jobs(experiment=exp) if r.submitted_at)
            seen = _seen_at(pipe, exp)
            latencies.append(job.submitted_at.timestamp() - written)
            noticed.append(seen - written)
            say(f"  {exp}: {latencies[-1]:.2f}s (sensor noticed it after "
                f"{noticed[-1]:.2f}s; job {job.job_id})")
    gaps = watch.gaps()
    say(f"  {len(gaps)} gaps between {SENSOR} ticks: "
        + ", ".join(f"{g:.1f}" for g in gaps[:40]) + (" ..." if len(gaps) > 40 else ""))
    floor = f"sensor interval {interval}s"
    results = [
        Result(BENCH, f"signal to Slurm job, median of {n}", statistics.median(latencies),
               "s", interval, floor),
        Result(BENCH, f"signal to Slurm job, p95 of {n}", percentile(latencies, 95), "s",
               interval, floor),
        Result(BENCH, "of which: signal to recorded by the sensor, median",
               statistics.median(noticed), "s", interval, floor),
        Result(BENCH, "of which: signal to recorded by the sensor, p95",
               percentile(noticed, 95), "s", interval, floor)]
    if gaps:
        results += [
            Result(BENCH, f"time between training sensor ticks, median of {len(gaps)}",
                   statistics.median(gaps), "s", interval, floor),
            Result(BENCH, f"time between training sensor ticks, min of {len(gaps)}",
                   min(gaps), "s", interval, floor),
            Result(BENCH, f"time between training sensor ticks, max of {len(gaps)}",
                   max(gaps), "s", interval, floor)]
    return results


def _seen_at(pipe, exp: str) -> float:  # type: ignore[no-untyped-def]
    """When the sensor recorded the training signal in the ledger."""
    with pipe.ledger.read() as conn:
        at = conn.execute(select(func.min(signals.c.seen_at)).where(
            signals.c.experiment == exp, signals.c.kind == "training_complete")).scalar()
    return at.timestamp()
