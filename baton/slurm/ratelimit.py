"""A submission rate limit shared by every process on this machine (each Dagster run
is its own process, so an in-memory limiter would limit nothing)."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path


class RateLimiter:
    """At most ``per_minute`` acquisitions per minute across processes sharing ``path``.

    The lock is held while waiting, so callers queue in order instead of racing."""

    def __init__(self, path: Path, per_minute: float) -> None:
        self.path = path
        self.interval = 60.0 / per_minute

    def acquire(self) -> float:
        """Block until a submission may go; returns the time (epoch) it was granted."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = os.pread(fd, 64, 0).decode().strip()
            last = float(raw) if raw else 0.0
            wait = last + self.interval - time.time()
            if wait > 0:
                time.sleep(wait)
            granted = max(time.time(), last + self.interval)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{granted:.6f}".encode(), 0)
            return granted
        finally:
            os.close(fd)  # releases the lock
