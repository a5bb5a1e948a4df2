"""The run's settings and the clean-up every benchmark registers (Slurm jobs to cancel,
processes to stop), so an interrupted run leaves nothing behind."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import say


@dataclass
class Context:
    quick: bool
    workdir: Path
    intervals: list[int] = field(default_factory=lambda: [5])  # benchmark 1's sensors
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    def dir(self, name: str) -> Path:
        """A fresh folder for one benchmark's data, under the workdir."""
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def pick(self, quick: object, full: object):  # type: ignore[no-untyped-def]
        return quick if self.quick else full

    def at_exit(self, fn: Callable[[], None]) -> None:
        self.cleanups.append(fn)

    def close(self) -> None:
        while self.cleanups:
            fn = self.cleanups.pop()
            try:
                fn()
            except Exception as exc:
                say(f"clean-up failed: {exc}")


def scancel(job_ids: list[str]) -> None:
    """Cancel our benchmark jobs, a few hundred ids per call."""
    ids = sorted({j.split("_")[0] for j in job_ids if j})
    for i in range(0, len(ids), 500):
        subprocess.run(["scancel", *ids[i:i + 500]], capture_output=True, timeout=120,
                       check=False)
