"""Slurm's states in the words of the production dashboard."""

from __future__ import annotations

from baton.slurm.states import over_memory

DASHBOARD_STATES = ("submitting", "pending", "started", "running", "held", "preempted",
                    "failed", "finished")

_MAP = {
    "SUBMITTING": "submitting",
    "PENDING": "pending",
    "CONFIGURING": "started",
    "RUNNING": "running",
    "COMPLETING": "running",
    "STAGE_OUT": "running",
    "SIGNALING": "running",
    "REQUEUE_HOLD": "held",
    "RESV_DEL_HOLD": "held",
    "PREEMPTED": "preempted",
    "REQUEUED": "preempted",
    "REQUEUE_FED": "preempted",
    "SUSPENDED": "preempted",
    "STOPPED": "preempted",
    "COMPLETED": "finished",
}


def dashboard_state(state: str, reason: str | None = None) -> str:
    """``PENDING`` held by a user or admin is ``held``; every final non-success is
    ``failed``."""
    if state == "PENDING" and reason and reason.startswith("JobHeld"):
        return "held"
    return _MAP.get(state, "failed")


FAILURE_REASONS = ("out_of_memory", "timeout", "node_fail", "preempted", "cancelled",
                   "submit_failed", "lost", "error")


def failure_reason(state: str, exit_code: int | None, exit_signal: int | None,
                   max_rss_mb: float | None, req_mem_mb: float | None) -> str:
    """Why a job failed, for the ``reason`` label: over memory is recognised with or
    without cgroups (killed by signal 9, or exit code 137, with MaxRSS at its request), as
    the supervisor recognises it."""
    if over_memory(state, exit_code, exit_signal, max_rss_mb, req_mem_mb):
        return "out_of_memory"
    return {"TIMEOUT": "timeout", "NODE_FAIL": "node_fail", "PREEMPTED": "preempted",
            "CANCELLED": "cancelled", "SUBMIT_FAILED": "submit_failed", "LOST": "lost",
            "BOOT_FAIL": "node_fail", "DEADLINE": "timeout"}.get(state, "error")
