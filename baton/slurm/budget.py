"""The Slurm call budget of the whole installation, and the count of its calls.

Every sbatch, squeue, sacct, scontrol and scancel a baton process on this machine makes
(the daemon's sensors, each Dagster run, the exporter, a command) takes a token from one
bucket (``slurm.calls_burst`` tokens refilled at ``slurm.calls_per_second``) and is counted
by command and process kind. Both live in one small file of the state folder, changed
under an exclusive ``flock`` of a lock file beside it and replaced whole (temp file +
rename), so a reader (the exporter) never waits and never sees half of it.

A file rather than the ledger: pacing needs a lock shared by processes anyway, and one
lock then does both; a Slurm call does not wait on the database, nor fail with it
(``baton db rebuild`` asks Slurm precisely when the ledger is in doubt); and the exporter
keeps its read-only ledger. The state folder is per machine, as baton's processes are.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from baton.errors import SlurmError
from baton.fsio import atomic_write

log = logging.getLogger(__name__)

ProcessKind = Literal["daemon", "run", "exporter", "command"]
CALLS_FILE = "slurm-calls.json"
LONG_WAIT = 10.0  # a wait this long (seconds) is logged ...
LOG_EVERY = 600.0  # ... at most once per this many seconds in a process
_last_logged: dict[str, float] = {}  # what this process last logged, and when (monotonic)


class BudgetSpent(SlurmError):
    """The budget has no token for a call that would rather not happen than wait (a
    sensor's poll: it asks again next tick instead of holding the daemon)."""


def calls_path(state_dir: Path) -> Path:
    return state_dir / CALLS_FILE


def read_calls(state_dir: Path) -> dict[tuple[str, str], int]:
    """The calls counted so far, by (command, process kind); none before the first.
    Raises ValueError when the file is not the budget's."""
    path = calls_path(state_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    return _counts(_parse(text, path))


def _parse(text: str, path: Path) -> dict:
    try:
        state = json.loads(text)
        if not isinstance(state, dict) or not isinstance(state.get("calls"), dict):
            raise ValueError("no calls")
        state["tokens"], state["at"] = float(state["tokens"]), float(state["at"])
        _counts(state)
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise ValueError(f"{path} is not baton's Slurm call count ({exc})") from None
    return state


def _counts(state: dict) -> dict[tuple[str, str], int]:
    return {(command, process): int(n) for process, by_command in state["calls"].items()
            for command, n in by_command.items()}


class CallBudget:
    """The shared token bucket and counter, as one process kind sees it. ``acquire`` is
    called before each Slurm command runs."""

    def __init__(self, state_dir: Path, per_second: float, burst: int,
                 process: ProcessKind, *, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.path = calls_path(state_dir)
        self.lock_path = state_dir / f"{CALLS_FILE}.lock"
        self.per_second, self.burst, self.process = per_second, burst, process
        self.clock, self.sleep = clock, sleep

    def acquire(self, command: str, max_wait: float | None = None) -> float:
        """Count one call of ``command`` and wait until the budget allows it; returns the
        seconds waited. A call that would wait over ``max_wait`` seconds takes no token,
        is not counted and raises BudgetSpent. Never fails otherwise: a state folder that
        cannot be written leaves the call unpaced and uncounted, and says so."""
        try:
            wait = self._reserve(command, max_wait)
        except OSError as exc:
            _log_once("unwritable", logging.WARNING, "Slurm calls are neither paced nor "
                      "counted: %s cannot be written (%s)", self.path, exc.strerror or exc)
            return 0.0
        if wait >= LONG_WAIT:
            _log_once("long wait", logging.WARNING,
                      "%s waits %.0fs: baton's Slurm call budget (slurm.calls_per_second %g, "
                      "burst %d) is spent; baton_slurm_calls_total{process} says who calls "
                      "most (such waits are logged once per %.0fs)", command, wait,
                      self.per_second, self.burst, LOG_EVERY)
        if wait > 0:
            self.sleep(wait)
        return wait

    def _reserve(self, command: str, max_wait: float | None = None) -> float:
        """Take a token now, under the lock, and say how long to wait for it: a bucket that
        goes below zero is a queue, each caller waiting its turn without holding the lock
        (a killed waiter only leaves a token unused). Over ``max_wait``, take nothing."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            now = self.clock()
            state = self._load(now)
            elapsed = max(0.0, now - state["at"])
            tokens = min(float(self.burst), state["tokens"] + elapsed * self.per_second)
            tokens -= 1
            if max_wait is not None and -tokens / self.per_second > max_wait:
                raise BudgetSpent(f"{command} skipped: baton's Slurm call budget has no "
                                  f"token for {-tokens / self.per_second:.0f}s")
            by_command = state["calls"].setdefault(self.process, {})
            by_command[command] = int(by_command.get(command, 0)) + 1
            state.update(tokens=tokens, at=now)
            atomic_write(self.path, json.dumps(state, sort_keys=True).encode())
            return max(0.0, -tokens / self.per_second)
        finally:
            os.close(fd)  # releases the lock

    def _load(self, now: float) -> dict:
        fresh = {"tokens": float(self.burst), "at": now, "calls": {}}
        try:
            return _parse(self.path.read_text(encoding="utf-8"), self.path)
        except FileNotFoundError:
            return fresh
        except (ValueError, UnicodeDecodeError) as exc:
            log.warning("%s; counting Slurm calls afresh", exc)
            return fresh


def _log_once(key: str, level: int, msg: str, *args: object) -> None:
    now = time.monotonic()
    last = _last_logged.get(key)
    if last is None or now - last >= LOG_EVERY:
        _last_logged[key] = now
        log.log(level, msg, *args)
