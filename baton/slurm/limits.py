"""The cluster's limits a submission must respect, read once from ``scontrol show config``:
MaxArraySize (an array's highest index is one less), so a batch of evaluations larger than
it becomes several arrays instead of a refused sbatch."""

from __future__ import annotations

import re
import subprocess
from functools import cache

DEFAULT_MAX_ARRAY_SIZE = 1001  # Slurm's default, when scontrol does not say
_LINE = re.compile(r"^MaxArraySize\s*=\s*(\d+)\s*$", re.MULTILINE)


def parse_max_array_size(config_text: str) -> int | None:
    """MaxArraySize from ``scontrol show config``'s output; None when it is not there."""
    found = _LINE.search(config_text)
    return int(found.group(1)) if found else None


@cache
def max_array_size() -> int:
    """This cluster's MaxArraySize, asked once per process (a limit changes with a
    restart of slurmctld, not between two submissions); Slurm's default when scontrol
    cannot answer (the submission then says what Slurm refused)."""
    try:
        proc = subprocess.run(["scontrol", "show", "config"], capture_output=True,
                              text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return DEFAULT_MAX_ARRAY_SIZE
    found = parse_max_array_size(proc.stdout) if proc.returncode == 0 else None
    return found or DEFAULT_MAX_ARRAY_SIZE
