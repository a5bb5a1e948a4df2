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
# where a status comes from: accounting (sacct, or the local backend's own records), the
# controller while accounting cannot answer (it may later), or the controller of a cluster
# without accounting (the figures never come)
ACCOUNTING, CONTROLLER, NO_ACCOUNTING = "accounting", "controller", "no_accounting"
# the ``figures`` of a ledger row: final (from accounting of the finished job), or
# unavailable (accounting did not give them in time or is off, or the job never reached Slurm)
FIGURES_FINAL, FIGURES_UNAVAILABLE = "final", "unavailable"
# the figures a status carries, written only when they come from accounting of a finished job
FIGURE_FIELDS = ("cpu_seconds", "max_rss_mb")


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
    source: str = ACCOUNTING

    @property
    def terminal(self) -> bool:
        return is_terminal(self.state)

    @property
    def figures_final(self) -> bool:
        """This status' CPU time and MaxRSS are what the job used, for good."""
        return figures_final(self.state, self.source, self.cpu_seconds, self.max_rss_mb,
                             self.exit_code, self.exit_signal)

    def ledger_values(self, row: Any) -> dict[str, Any]:
        """The columns of a ``slurm_jobs`` row this status changes (known values only).

        CPU time and MaxRSS are taken only from accounting of the finished job (sacct's
        view of a running job says 0 CPU); the row's ``figures`` become final once they are
        complete, so a row whose end came from the controller is asked about again. A
        pending reason goes when the job leaves PENDING."""
        out: dict[str, Any] = {}
        figures = self.terminal and self.source != CONTROLLER
        for f in fields(self):
            if f.name in ("job_id", "raw_job_id", "name", "source"):
                continue
            if f.name in FIGURE_FIELDS and not figures:
                continue
            value = getattr(self, f.name)
            if f.name == "restarts":
                value = max(value, row.restarts or 0)
            if f.name in ("stdout_path", "stderr_path") and getattr(row, f.name):
                continue  # keep the paths baton resolved at submission
            if value is not None and getattr(row, f.name, None) != value:
                out[f.name] = value
        if self.state != "PENDING" and not is_terminal(row.state) and self.reason is None \
                and row.reason is not None:
            out["reason"] = None  # Slurm's word on a pending job, not on this one
        known = {**{k: getattr(row, k, None) for k in
                    ("cpu_seconds", "max_rss_mb", "exit_code", "exit_signal")}, **out}
        if getattr(row, "figures", None) is None and figures_final(
                self.state, self.source, known["cpu_seconds"], known["max_rss_mb"],
                known["exit_code"], known["exit_signal"]):
            out["figures"] = FIGURES_UNAVAILABLE if self.source == NO_ACCOUNTING \
                else FIGURES_FINAL
        return out


def figures_final(state: str, source: str, cpu_seconds: float | None,
                  max_rss_mb: float | None, exit_code: int | None = None,
                  exit_signal: int | None = None) -> bool:
    """A job's CPU time and MaxRSS (what is known of them) are final when accounting
    answered for the finished job: with its CPU time, and with its MaxRSS when it was killed
    by signal 9 (over memory or not: only MaxRSS tells, and the step's arrives a little
    after the job's end). On a cluster without accounting they never come."""
    if not is_terminal(state) or source == CONTROLLER:
        return False
    if source == NO_ACCOUNTING:
        return True
    killed = exit_signal == 9 or exit_code == 137
    return cpu_seconds is not None and (max_rss_mb is not None or not killed)
