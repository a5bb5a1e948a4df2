"""The interface both backends implement, and how baton picks one."""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from baton.slurm.spec import JobSpec
from baton.slurm.states import JobStatus


@dataclass(frozen=True)
class Submitted:
    """A job Slurm accepted. ``task_ids`` lists the ids of an array's tasks."""

    job_id: str
    script_path: Path
    task_ids: tuple[str, ...] = ()

    def ids(self) -> list[str]:
        return list(self.task_ids) or [self.job_id]


class SlurmBackend(Protocol):
    name: str

    def submit(self, spec: JobSpec, script_path: Path) -> Submitted:
        """Submit the script at ``script_path`` (the audit copy of ``spec.script``)."""
        ...

    def status(self, job_ids: Iterable[str], known: Mapping[str, str] | None = None
               ) -> dict[str, JobStatus]:
        """The state of many jobs, in as few calls as the backend can; unknown ids are left
        out. ``known``: the state last recorded of each id (a finished job is not looked
        for in the queue)."""
        ...

    def cancel(self, job_ids: Iterable[str]) -> dict[str, str]:
        """Cancel jobs; returns, for each id not cancelled, why (unknown, already ended)."""
        ...

    def queue_states(self) -> Counter[str]:
        """This user's jobs in the queue, by state, in one call."""
        ...


def choose_backend_name(configured: str) -> str:
    """``auto`` means real Slurm where ``sbatch`` is on PATH, the local backend elsewhere."""
    if configured != "auto":
        return configured
    return "sbatch" if shutil.which("sbatch") else "local"


def task_ids(job_id: str, spec: JobSpec) -> tuple[str, ...]:
    return tuple(f"{job_id}_{t}" for t in spec.array_tasks)
