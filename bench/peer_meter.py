"""What the side-by-side benchmark (bench/peer.py) measures of an orchestrator, the same way
for baton and for Snakemake: its Slurm calls, counted by wrapper scripts placed first on
PATH; the CPU seconds and peak resident memory of its process tree; and the CPU its jobs
used by Slurm's own accounting (sacct TotalCPU)."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import threading
from collections import Counter
from pathlib import Path

# the five the issue counts; srun, sinfo and the accounting tools are counted too
# (Snakemake's job step calls srun inside its jobs, its executor sacctmgr and sinfo)
COUNTED = ("sbatch", "squeue", "sacct", "scontrol", "scancel")
WRAPPED = (*COUNTED, "srun", "sinfo", "sacctmgr", "sshare")

# one line per call, ``<epoch seconds> <command> <host|job>``; sbatch also logs what it
# printed (the job id) on a line of its own, ``<epoch> id <stdout>``
_WRAPPER = """#!/bin/bash
printf '%s {name} %s\\n' "$EPOCHREALTIME" "${{SLURM_JOB_ID:+job}}" >> {log}
exec {real} "$@"
"""
_SBATCH = """#!/bin/bash
printf '%s sbatch %s\\n' "$EPOCHREALTIME" "${{SLURM_JOB_ID:+job}}" >> {log}
out=$({real} "$@")
rc=$?
printf '%s\\n' "$out"
printf '%s id %s\\n' "$EPOCHREALTIME" "$(printf '%s' "$out" | tr '\\n' ' ')" >> {log}
exit $rc
"""


class SlurmCalls:
    """Wrapper scripts in ``folder`` for every Slurm command found on PATH; put
    :attr:`folder` first on the orchestrator's PATH (its children and, through sbatch's
    exported environment, its jobs inherit it) and read the counts from :meth:`counts`."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.log = folder / "calls.log"
        self.log.touch()
        for name in WRAPPED:
            real = shutil.which(name)
            if real is None:
                continue
            text = _SBATCH if name == "sbatch" else _WRAPPER
            script = folder / name
            script.write_text(text.format(name=name, log=self.log, real=real))
            script.chmod(0o755)

    def path(self, path: str) -> str:
        return f"{self.folder}:{path}"

    def _lines(self, start: float, end: float) -> list[list[str]]:
        out = []
        for line in self.log.read_text().splitlines():
            parts = line.split(" ", 2)
            with contextlib.suppress(ValueError, IndexError):
                if start <= float(parts[0]) <= end:
                    out.append(parts)
        return out

    def counts(self, start: float = 0, end: float = float("inf")) -> tuple[Counter, Counter]:
        """(calls from the submitting machine, calls from inside jobs) by command, made
        between ``start`` and ``end`` (epoch seconds)."""
        host: Counter[str] = Counter()
        jobs: Counter[str] = Counter()
        for parts in self._lines(start, end):
            if parts[1] == "id":
                continue
            (jobs if len(parts) > 2 and parts[2].strip() == "job" else host)[parts[1]] += 1
        return host, jobs

    def job_ids(self) -> list[str]:
        """Every job id sbatch printed (``--parsable``: ``id[;cluster]``, otherwise
        ``Submitted batch job id``)."""
        ids = []
        for parts in self._lines(0, float("inf")):
            if parts[1] == "id" and len(parts) > 2:
                found = re.search(r"\d+", parts[2])
                if found:
                    ids.append(found.group())
        return ids


def _seconds(text: str) -> float:
    """sacct's ``[DD-][HH:]MM:SS[.mmm]`` in seconds."""
    days, _, rest = text.rpartition("-")
    parts = [float(p) for p in rest.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0.0)
    return int(days or 0) * 86400 + parts[0] * 3600 + parts[1] * 60 + parts[2]


def jobs_cpu_seconds(job_ids: list[str]) -> float:
    """The CPU the jobs used by Slurm's accounting: the sum of TotalCPU over their
    allocations (an array's tasks each count), read once they have ended. The allocation's
    line carries the sum over its steps only without ``--allocations`` (with it, zero)."""
    total = 0.0
    ids = sorted(set(job_ids))
    for i in range(0, len(ids), 200):
        out = subprocess.run(
            ["sacct", "--noheader", "--parsable2", "--format=JobID,TotalCPU",
             "-j", ",".join(ids[i:i + 200])],
            capture_output=True, text=True, timeout=120, check=True).stdout
        for line in out.splitlines():
            job, _, cpu = line.partition("|")
            if job and cpu and "." not in job:
                total += _seconds(cpu)
    return total


class TreeMeter:
    """The CPU seconds and peak resident memory of a process and all its descendants,
    sampled every ``every`` seconds between :meth:`start` and :meth:`stop` (short-lived
    children, Dagster runs or sbatch calls, are caught while they live). CPU is what every
    process used inside the window: a process that exits between two samples loses at
    most its last ``every`` seconds, so the figure is a slight lower bound, the same for
    both orchestrators. Memory is the largest sum of the tree's RSS at one sample."""

    def __init__(self, pid: int, every: float = 0.2) -> None:
        self.pid = pid
        self.every = every
        self.cpu: dict[tuple[int, float], float] = {}
        self.base: dict[tuple[int, float], float] = {}
        self.peak_rss = 0.0
        self.processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        rss = 0
        for p in procs:
            with contextlib.suppress(psutil.Error), p.oneshot():
                t = p.cpu_times()
                key = (p.pid, p.create_time())
                self.cpu[key] = t.user + t.system
                rss += p.memory_info().rss
        self.peak_rss = max(self.peak_rss, rss / 1e6)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.every)

    def start(self, from_zero: bool = False) -> TreeMeter:
        """Start sampling; the CPU used before now is left out unless ``from_zero`` (a
        process started just now: all its CPU counts)."""
        self._sample()
        self.base = {} if from_zero else dict(self.cpu)
        self.peak_rss = 0.0
        self._thread.start()
        return self

    def stop(self) -> None:
        self._sample()
        self._stop.set()
        self._thread.join()
        self.processes = len(self.cpu)

    @property
    def cpu_seconds(self) -> float:
        return sum(v - self.base.get(k, 0.0) for k, v in self.cpu.items())


def rss_mb(pid: int) -> float:
    """The resident memory of a process tree now (for the idle figure before a burst)."""
    meter = TreeMeter(pid)
    meter._sample()
    return meter.peak_rss

