"""The Slurm version this machine's client commands speak, read once per process: the
cheapest status query depends on it (``squeue --only-job-state`` from 23.11 on)."""

from __future__ import annotations

import re
import subprocess
from functools import cache

ONLY_JOB_STATE = (23, 11)  # squeue --only-job-state: a lighter RPC, job ids and states only
_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


def parse_version(text: str) -> tuple[int, int, int] | None:
    """``slurm-wlm 22.05.8`` or ``slurm 23.11.1`` (``sinfo --version``) -> (22, 5, 8)."""
    m = _VERSION.search(text)
    if m is None:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


@cache
def slurm_version() -> tuple[int, int, int] | None:
    """``sinfo --version``, asked once per process (it reads the local binary, not the
    controller: no Slurm call to count); None when it cannot tell, which means the
    queries every version knows."""
    try:
        proc = subprocess.run(["sinfo", "--version"], capture_output=True, text=True,
                              timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_version(proc.stdout) if proc.returncode == 0 else None


def has_only_job_state(version: tuple[int, int, int] | None) -> bool:
    return version is not None and version[:2] >= ONLY_JOB_STATE
