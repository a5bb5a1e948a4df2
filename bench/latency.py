"""1. Signal detection latency: a ``.training_complete`` written (its mtime) to the
evaluation job accepted by Slurm (the ledger's ``submitted_at``, recorded the moment
sbatch returned its id; Slurm's own SubmitTime has one-second resolution), through a real
dagster-daemon, median and p95 over 50 signals, next to the sensor's interval (the floor).
"""

from __future__ import annotations

import random
import statistics
import time

from sqlalchemy import func, select

from baton.ledger.schema import signals
from bench.common import Result, percentile, say
from bench.context import Context
from bench.daemon import start_pipeline
from bench.slurm_held import slurm_available

TITLE = "signal detection latency through a real dagster-daemon and Slurm"
# Dagster's sensor daemon loops at most every 5 s (MIN_INTERVAL_LOOP_TIME in
# dagster/_daemon/sensor.py): a shorter interval is not honoured, so 5 s is the real floor
INTERVAL = 5


def run(ctx: Context) -> list[Result]:
    if not slurm_available():
        say("  no sbatch on PATH: skipped")
        return []
    n = ctx.pick(5, 50)
    pipe = start_pipeline(ctx, "latency", INTERVAL)
    rnd = random.Random(5)
    latencies: list[float] = []
    noticed: list[float] = []
    for i in range(n):
        time.sleep(rnd.uniform(0, INTERVAL))  # land anywhere in the sensor's cycle
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
        say(f"  {exp}: {latencies[-1]:.2f}s (sensor noticed it after {noticed[-1]:.2f}s; "
            f"job {job.job_id})")
    floor = f"sensor interval {INTERVAL}s"
    return [Result("1 detection", f"signal to Slurm job, median of {n}",
                   statistics.median(latencies), "s", INTERVAL, floor),
            Result("1 detection", f"signal to Slurm job, p95 of {n}",
                   percentile(latencies, 95), "s", INTERVAL, floor),
            Result("1 detection", "of which: signal to recorded by the sensor, median",
                   statistics.median(noticed), "s", INTERVAL, floor),
            Result("1 detection", "of which: signal to recorded by the sensor, p95",
                   percentile(noticed, 95), "s", INTERVAL, floor)]


def _seen_at(pipe, exp: str) -> float:  # type: ignore[no-untyped-def]
    """When the sensor recorded the training signal in the ledger."""
    with pipe.ledger.read() as conn:
        at = conn.execute(select(func.min(signals.c.seen_at)).where(
            signals.c.experiment == exp, signals.c.kind == "training_complete")).scalar()
    return at.timestamp()
