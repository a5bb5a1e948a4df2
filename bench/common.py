"""What every benchmark shares: a result row with its baseline, timing, progress on
stderr, a counter of filesystem calls, and the machine's description."""

from __future__ import annotations

import builtins
import contextlib
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Result:
    """One figure beside its baseline measured in the same run. ``lower_better`` says
    which way is good, so a figure worse than its baseline can be flagged."""

    bench: str
    figure: str
    value: float
    unit: str
    baseline: float | None
    baseline_name: str
    lower_better: bool = True

    @property
    def ratio(self) -> float | None:
        if self.baseline in (None, 0):
            return None
        return self.value / self.baseline

    @property
    def worse(self) -> bool:
        """Worse than the baseline by more than the 5% two runs of the same code differ."""
        r = self.ratio
        return r is not None and (r > 1.05 if self.lower_better else r < 1 / 1.05)


def say(message: str) -> None:
    """Progress goes to stderr, the table to stdout."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def timed(fn: Callable[[], object], repeat: int = 5, warmup: int = 1) -> float:
    """Median seconds of ``repeat`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def peak_growth(work: Callable[[], object], every: float = 0.005) -> tuple[float, float]:
    """(seconds, MB) of ``work`` in this process: its time, and the memory it adds (peak
    RSS while it runs, sampled every ``every`` seconds, minus RSS before it). For the
    child processes that measure one computation each."""
    import threading

    import psutil

    me = psutil.Process()
    before = peak = me.memory_info().rss
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, me.memory_info().rss)
            time.sleep(every)

    watcher = threading.Thread(target=watch)
    watcher.start()
    start = time.perf_counter()
    try:
        work()
    finally:
        took = time.perf_counter() - start
        done.set()
        watcher.join()
    return took, (max(peak, me.memory_info().rss) - before) / 1e6


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[k]


class FsCalls:
    """Counts the filesystem calls Python makes under ``root`` (the shared drive), by
    kind, plus the directory entries listings returned: on NFS each is a round trip.
    Patches ``os`` and ``open`` while active (pathlib goes through them)."""

    NAMES = ("stat", "lstat", "scandir", "listdir", "open", "unlink", "rename", "replace",
             "mkdir", "rmdir", "fsync")

    def __init__(self, root: Path) -> None:
        self.root = str(root)
        self.calls: Counter[str] = Counter()
        self.entries = 0

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    def _mine(self, path: object) -> bool:
        return isinstance(path, str | os.PathLike) and os.fspath(path).startswith(self.root)

    def _wrap(self, name: str, fn: Callable) -> Callable:
        def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
            if args and self._mine(args[0]):
                self.calls[name] += 1
                if name == "scandir":
                    return self._listing(fn(*args, **kwargs))
            return fn(*args, **kwargs)
        return counted

    def _listing(self, it):  # type: ignore[no-untyped-def]
        counter = self

        class Listing:
            def __enter__(self):  # type: ignore[no-untyped-def]
                return self

            def __exit__(self, *exc):  # type: ignore[no-untyped-def]
                it.close()

            def __iter__(self):  # type: ignore[no-untyped-def]
                for entry in it:
                    counter.entries += 1
                    yield entry

            def close(self) -> None:
                it.close()
        return Listing()

    @contextlib.contextmanager
    def active(self) -> Iterator[FsCalls]:
        saved = {n: getattr(os, n) for n in self.NAMES if n != "open"}
        saved_open, saved_os_open = builtins.open, os.open
        try:
            for n, fn in saved.items():
                setattr(os, n, self._wrap(n, fn))
            builtins.open = self._wrap("open", saved_open)
            os.open = self._wrap("open", saved_os_open)
            yield self
        finally:
            for n, fn in saved.items():
                setattr(os, n, fn)
            builtins.open, os.open = saved_open, saved_os_open


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout
        return out.strip().splitlines()[0] if out.strip() else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"


def machine() -> dict[str, str]:
    import duckdb
    import pyarrow

    mem = next((line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), "0")
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": f"{os.cpu_count()} cores, {cpu}",
        "memory": f"{int(mem) / 1024 / 1024:.1f} GB",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "slurm": _version(["sbatch", "--version"]),
        "duckdb": duckdb.__version__,
        "pyarrow": pyarrow.__version__,
        "dagster": _version([str(Path(sys.executable).parent / "dagster"), "--version"]),
    }
