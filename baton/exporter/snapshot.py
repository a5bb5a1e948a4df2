"""The ledger's part of a scrape, computed off the scrape's clock.

A scrape asks for a fresh computation and waits for it up to ``wait`` seconds: on a small
ledger it has it in milliseconds, as if computed inline. On a ledger so large that the
computation outlasts the wait, the scrape is answered from the last result (its age is
exported) while the computation finishes in the background, so Prometheus never times out;
once a computation has taken longer than the wait, scrapes no longer wait at all.
Once a computation takes longer than the wait, the exporter rests at least ``rest_factor``
times as long as the last one took before the next: at any ledger size it uses at most
1 / (1 + rest_factor) of a core, which is what a shared login node can spare (below that,
a computation of at most ``wait`` seconds per scrape interval of 30 s)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class Stale(RuntimeError):
    """No result yet: the first computation is still running, or the last one failed."""


class Snapshot(Generic[T]):
    def __init__(self, compute: Callable[[], T], wait: float = 5.0, rest_factor: float = 2.0
                 ) -> None:
        self.compute, self.wait, self.rest_factor = compute, wait, rest_factor
        self.cond = threading.Condition()
        self.result: T | None = None
        self.done_at: float | None = None  # monotonic time the result was computed
        self.took = 0.0  # seconds the last computation took
        self.error: str | None = None  # of the last computation, if it failed
        self.running = False
        self.generation = 0  # computations finished

    def start(self) -> None:
        """Start a computation if one is due (an exporter starting computes before the
        first scrape comes)."""
        with self.cond:
            self._start_if_due(time.monotonic())

    def get(self) -> tuple[T, float]:
        """The freshest result a scrape can have now, and its age in seconds."""
        with self.cond:
            start = time.monotonic()
            self._start_if_due(start)
            if self.running and self.took <= self.wait:  # else it would not end in time
                want = self.generation + 1
                self.cond.wait_for(lambda: self.generation >= want, timeout=self.wait)
            if self.error is not None or self.result is None:
                raise Stale(self.error or f"the ledger's metrics are still being computed "
                            f"for the first time ({time.monotonic() - start:.0f} s so far)")
            assert self.done_at is not None
            return self.result, max(0.0, time.monotonic() - self.done_at)

    def _start_if_due(self, now: float) -> None:
        if not self.running and self._due(now):
            self.running = True
            threading.Thread(target=self._run, name="baton-ledger-snapshot",
                             daemon=True).start()

    def _due(self, now: float) -> bool:
        if self.done_at is None or self.took <= self.wait:  # a scrape may wait for it
            return True
        return now - self.done_at >= self.rest_factor * self.took

    def _run(self) -> None:
        start = time.monotonic()
        result: T | None = None
        error: str | None = None
        try:
            result = self.compute()
        except Exception as exc:  # reported by the next scrape; the exporter keeps serving
            error = f"{type(exc).__name__}: {exc}"
            log.warning("the ledger's metrics could not be computed: %s", error)
        with self.cond:
            end = time.monotonic()
            self.took, self.done_at, self.error = end - start, end, error
            if error is None:
                self.result = result
            self.running = False
            self.generation += 1
            self.cond.notify_all()
