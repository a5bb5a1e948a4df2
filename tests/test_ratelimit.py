"""The sbatch rate limit holds across processes (each Dagster run is one)."""

from __future__ import annotations

import itertools
import multiprocessing
from pathlib import Path

from baton.slurm.ratelimit import RateLimiter


def _acquire(path: str, out: multiprocessing.Queue) -> None:
    limiter = RateLimiter(Path(path), per_minute=300)  # one every 0.2 s
    for _ in range(3):
        out.put(limiter.acquire())


def test_submissions_are_spaced_across_processes(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_acquire, args=(str(tmp_path / "rate"), out)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    stamps = sorted(out.get() for _ in range(9))
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    # a lower bound on spacing is the behaviour; nothing here bounds how fast it runs
    assert min(gaps) >= 0.2 - 1e-6, gaps
