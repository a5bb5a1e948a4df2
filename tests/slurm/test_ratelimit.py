"""The sbatch rate limit holds across processes (each Dagster run is one)."""

from __future__ import annotations

import itertools
import multiprocessing
import time
from pathlib import Path

from baton.slurm.ratelimit import RateLimiter


def _acquire(path: str, out: multiprocessing.Queue) -> None:
    limiter = RateLimiter(Path(path), per_minute=300)  # one every 0.2 s
    for _ in range(3):
        before = time.time()
        granted = limiter.acquire()
        out.put((before, granted, time.time()))


def test_submissions_are_spaced_across_processes(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_acquire, args=(str(tmp_path / "rate"), out)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    calls = [out.get() for _ in range(9)]
    grants = sorted(granted for _, granted, _ in calls)
    gaps = [b - a for a, b in itertools.pairwise(grants)]
    assert min(gaps) >= 0.2 - 1e-6, gaps
    # and the callers really waited: nine grants at 0.2 s spacing span 1.6 s of wall time
    # from the first call to the last return (a lower bound; nothing bounds how fast)
    span = max(after for _, _, after in calls) - min(before for before, _, _ in calls)
    assert span >= 8 * 0.2 - 0.01, span
