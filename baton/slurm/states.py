"""Job states as Slurm names them, and what one poll tells the ledger about a job."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

# Slurm's base states (``sacct``/``squeue`` print these, sometimes with " by UID").
ACTIVE_STATES = frozenset({
    "PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "SUSPENDED",
    "COMPLETING", "CONFIGURING", "RESIZING", "STOPPED", "SIGNALING", "STAGE_OUT",
    "RESV_DEL_HOLD",
})
FAILED_STATES = frozenset({
    "FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL",
    "DEADLINE", "REVOKED", "SPECIAL_EXIT",
    # baton's own: never reached Slurm / vanished from Slurm and the local runner
    "SUBMIT_FAILED", "LOST",
})
TERMINAL_STATES = frozenset({"COMPLETED", "CANCELLED"} | FAILED_STATES)
# baton's own state before Slurm has answered
SUBMITTING = "SUBMITTING"


def normalize_state(raw: str) -> str:
    """``CANCELLED by 0`` -> ``CANCELLED``; ``COMPLETED+`` -> ``COMPLETED``."""
    word = raw.strip().split(" ")[0].rstrip("+").upper()
    return word or "UNKNOWN"


def is_terminal(state: str) -> bool:
    return state in TERMINAL_STATES


def over_memory(state: str, exit_code: int | None, exit_signal: int | None,
                max_rss_mb: float | None, req_mem_mb: float | None) -> bool:
    """Over its memory, with or without cgroups: OUT_OF_MEMORY, or (no cgroups,
    OverMemoryKill) FAILED killed by signal 9 with MaxRSS at or above the request."""
    if state == "OUT_OF_MEMORY":
        return True
    killed = exit_signal == 9 or exit_code == 137
    return bool(state == "FAILED" and killed and max_rss_mb and req_mem_mb
                and max_rss_mb >= req_mem_mb)


@dataclass(frozen=True)
class JobStatus:
    """What Slurm (or the local backend) says about one job or array task."""

    job_id: str  # "123", or "123_4" for an array task
    state: str
    raw_job_id: str | None = None
    array_job_id: str | None = None
    array_task_id: int | None = None
    name: str | None = None
    reason: str | None = None
    exit_code: int | None = None
    exit_signal: int | None = None
    submitted_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    req_cpus: int | None = None
    req_mem_mb: float | None = None
    req_time_s: int | None = None
    max_rss_mb: float | None = None
    cpu_seconds: float | None = None
    restarts: int = 0
    node: str | None = None
    stdout_path: str | None = None
    stderr_path: str | None = None

    @property
    def terminal(self) -> bool:
        return is_terminal(self.state)

    def ledger_values(self, row: Any) -> dict[str, Any]:
        """The columns of a ``slurm_jobs`` row this status changes (known values only)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name in ("job_id", "raw_job_id", "name"):
                continue
            value = getattr(self, f.name)
            if f.name == "restarts":
                value = max(value, row.restarts or 0)
            if f.name in ("stdout_path", "stderr_path") and getattr(row, f.name):
                continue  # keep the paths baton resolved at submission
            if value is not None and getattr(row, f.name, None) != value:
                out[f.name] = value
        return out
