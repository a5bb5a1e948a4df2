"""Bounded retries with exponential backoff, for network drives, SQLite and slurmctld."""

from __future__ import annotations

import errno
import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)

# errno values a network filesystem returns while it recovers.
TRANSIENT_ERRNOS = frozenset(
    {errno.EIO, errno.EAGAIN, errno.EINTR, errno.ESTALE, errno.ETIMEDOUT, errno.EBUSY}
)


def is_transient_oserror(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS


def backoff_delays(attempts: int, base: float, cap: float) -> list[float]:
    """Delays between ``attempts`` tries: base, 2*base, 4*base... capped, with 10% jitter."""
    return [min(cap, base * 2**i) * random.uniform(0.9, 1.1) for i in range(attempts - 1)]


def retry(
    fn: Callable[[], T],
    *,
    should_retry: Callable[[BaseException], bool],
    attempts: int = 5,
    base: float = 0.1,
    cap: float = 5.0,
    what: str = "operation",
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fn`` until it succeeds, a non-retryable error occurs, or attempts run out."""
    delays = backoff_delays(attempts, base, cap)
    for i in range(attempts):
        try:
            return fn()
        except Exception as exc:
            if i == attempts - 1 or not should_retry(exc):
                raise
            log.warning("%s failed (%s); retry %d/%d in %.2fs", what, exc, i + 1,
                        attempts - 1, delays[i])
            sleep(delays[i])
    raise AssertionError("unreachable")
