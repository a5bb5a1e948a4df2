"""Supervision decisions: why a job needs a repair, and what the stage's policy does about
it. Pure functions over a job's ledger facts, so every rule is tested without Slurm; the
effects (recording, dispatching, following) live in :mod:`baton.supervision.actions`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from baton.config import StageConfig, SupervisionPolicy
from baton.slurm.limits import PartitionLimits
from baton.slurm.states import TERMINAL_STATES, over_memory
from baton.units import format_memory, format_time, parse_memory_mb, parse_time_seconds

# reasons a job ended that the policy can repair, and the reasons a live job is late
END_REASONS = ("oom", "timeout", "node_fail", "preempted", "failed")
LATE_REASONS = ("late_pending", "late_running")
MANUAL = "manual"
# states baton never supervises: success, a person's (or the supervisor's) cancel, and a
# submission Slurm never accepted (the submission path reports and retries those)
NOT_SUPERVISED = frozenset({"COMPLETED", "CANCELLED", "SUBMITTING", "SUBMIT_FAILED"})
PENDING_STATES = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
                            "RESV_DEL_HOLD"})
# sacct's MaxRSS and CPU time of a finished job lag its state by a few seconds
SETTLE_SECONDS = 300
# a running job is late, at the latest, once it has used this share of its time limit
LIMIT_SHARE = 0.9
# an out-of-memory retry asks at least this much over the MaxRSS measured
RSS_MARGIN = 1.25
# the reasons a retry grows a resource for (and so needs the partition's limits)
GROWN = ("oom", "timeout")


@dataclass(frozen=True)
class JobFacts:
    """What the ledger knows about one Slurm job (a ``slurm_jobs`` row)."""

    state: str
    attempt: int = 1
    exit_code: int | None = None
    exit_signal: int | None = None
    max_rss_mb: float | None = None
    req_mem_mb: float | None = None
    req_time_s: int | None = None
    cpu_seconds: float | None = None
    submitted_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None

    @classmethod
    def from_row(cls, row: Any) -> JobFacts:
        return cls(**{name: getattr(row, name) for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Decision:
    """What to do: the action, the resources of a resubmission, and why in words."""

    action: str
    note: str
    mem_mb: float | None = None
    time_s: int | None = None


def classify(job: JobFacts, now: datetime, policy: SupervisionPolicy,
             expected_seconds: float | None = None) -> str | None:
    """The reason ``job`` needs supervision now, or None. A FAILED job waits until its
    accounting data (MaxRSS) has arrived, so that over-memory is not taken for a bug."""
    if job.state in NOT_SUPERVISED:
        return None
    if job.state in TERMINAL_STATES:
        return _end_reason(job, now)
    if job.state in PENDING_STATES:
        limit = policy.late_pending_seconds
        waited = _age(job.submitted_at, now)
        return "late_pending" if limit and waited is not None and waited > limit else None
    ran = _age(job.started_at, now)
    after = late_running_after(job, policy, expected_seconds)
    return "late_running" if ran is not None and after and ran > after[0] else None


def late_running_after(job: JobFacts, policy: SupervisionPolicy,
                       expected_seconds: float | None) -> tuple[float, str] | None:
    """How long ``job`` may run before it is late, and that rule in words: the policy's
    factor x the stage's expected_seconds, but never later than LIMIT_SHARE of its time
    limit (Slurm ends it at the limit, so a later mark would never be reached); without
    expected_seconds, LIMIT_SHARE of its time limit. None: no limit, never late."""
    rules = []
    if expected_seconds:
        rules.append((policy.late_running_factor * expected_seconds,
                      f"{policy.late_running_factor:g} x expected_seconds "
                      f"{expected_seconds:g}s (supervision.late_running_factor)"))
    if job.req_time_s:
        rules.append((LIMIT_SHARE * job.req_time_s,
                      f"{LIMIT_SHARE:.0%} of its time limit {format_time(job.req_time_s)}"))
    return min(rules) if rules else None


def _end_reason(job: JobFacts, now: datetime) -> str | None:
    if over_memory(job.state, job.exit_code, job.exit_signal, job.max_rss_mb, job.req_mem_mb):
        return "oom"
    if job.state == "FAILED" and job.max_rss_mb is None and (
            job.cpu_seconds is None or killed(job)):
        # accounting not in yet (no CPU time), or killed by SIGKILL with no MaxRSS: it may
        # still turn out over memory, and the decision is permanent, so wait for the step's
        # MaxRSS until the settle time has passed (sacct's allocation line never has one)
        ended = _age(job.ended_at, now)
        if ended is None or ended < SETTLE_SECONDS:
            return None
    return {"TIMEOUT": "timeout", "DEADLINE": "timeout", "NODE_FAIL": "node_fail",
            "BOOT_FAIL": "node_fail", "LOST": "node_fail",
            "PREEMPTED": "preempted"}.get(job.state, "failed")


def killed(job: JobFacts) -> bool:
    """Ended by signal 9 (exit 137 where the signal is folded into the code), as an
    over-memory kill without cgroups is."""
    return job.exit_signal == 9 or job.exit_code == 137


def _age(since: datetime | None, now: datetime) -> float | None:
    return None if since is None else (now - since).total_seconds()


def decide(job: JobFacts, reason: str, stage: StageConfig,
           partition: PartitionLimits | None = None) -> Decision:
    """The stage policy's answer to ``reason``. Never beyond ``max_attempts``; a
    resubmission that would pass a cap (the policy's, or ``partition``'s limit) gets the
    cap, one already at the cap gives up."""
    policy = stage.supervision
    if reason in LATE_REASONS:
        return Decision(policy.late_action, _late_note(job, reason, stage))
    what = _describe(job, reason)
    if reason == "failed" and not policy.resubmit_failed:
        return Decision("none", f"{what}: likely a bug, not resubmitted "
                        "(supervision.resubmit_failed is false)")
    if job.attempt >= policy.max_attempts:
        return Decision("gave_up", f"{what} on attempt {job.attempt} of "
                        f"{policy.max_attempts}: giving up (supervision.max_attempts)")
    return grow(job, reason, stage, what, partition)


def grow(job: JobFacts, reason: str, stage: StageConfig, what: str,
         partition: PartitionLimits | None = None) -> Decision:
    """Resubmit with the resource that ran out grown by what was measured: memory to
    max(request x mem_factor, MaxRSS x RSS_MARGIN), time to max(limit x time_factor,
    elapsed x time_factor); each up to the lower of the policy's cap and the partition's
    limit."""
    policy = stage.supervision
    mem = job.req_mem_mb or parse_memory_mb(stage.mem)
    time = job.req_time_s or parse_time_seconds(stage.time)
    if reason == "oom":
        cap, cap_word = parse_memory_mb(policy.mem_cap), f"{policy.mem_cap} (supervision.mem_cap)"
        if partition is not None and partition.max_mem_mb and partition.max_mem_mb < cap:
            cap, cap_word = partition.max_mem_mb, \
                f"{format_memory(partition.max_mem_mb)} (a node of partition {partition.name})"
        if mem >= cap:
            return Decision("gave_up", f"{what}: memory already at the cap {cap_word}: "
                            "giving up")
        measured = (job.max_rss_mb or 0) * RSS_MARGIN
        mem = min(max(mem * policy.mem_factor, measured), cap)
        return Decision("resubmit", f"{what}: resubmitting with {format_memory(mem)}",
                        mem, time)
    if reason == "timeout":
        cap_s, cap_word = parse_time_seconds(policy.time_cap), \
            f"{policy.time_cap} (supervision.time_cap)"
        if partition is not None and partition.max_time_s and partition.max_time_s < cap_s:
            cap_s, cap_word = partition.max_time_s, \
                f"{format_time(partition.max_time_s)} (MaxTime of partition {partition.name})"
        if time >= cap_s:
            return Decision("gave_up", f"{what}: time already at the cap {cap_word}: "
                            "giving up")
        ran = _age(job.started_at, job.ended_at) if job.ended_at else None
        time = int(min(max(time, ran or 0) * policy.time_factor, cap_s))
        return Decision("resubmit", f"{what}: resubmitting with {format_time(time)}",
                        mem, time)
    return Decision("resubmit", f"{what}: resubmitting unchanged", mem, time)


def decide_retry(job: JobFacts, stage: StageConfig, reason: str | None,
                 mem_mb: float | None = None, time_s: int | None = None,
                 partition: PartitionLimits | None = None) -> Decision:
    """A person's retry: resubmit now whatever the policy said; the resource that ran out
    still grows (up to its cap), and explicit ``mem``/``time`` win."""
    what = f"retried by hand after attempt {job.attempt} ({reason or job.state.lower()})"
    decision = grow(job, reason or "failed", stage, what, partition)
    if decision.action != "resubmit":  # at the cap: same resources again
        decision = Decision("resubmit", f"{what}: resubmitting at the cap",
                            job.req_mem_mb or parse_memory_mb(stage.mem),
                            job.req_time_s or parse_time_seconds(stage.time))
    if mem_mb is None and time_s is None:
        return decision
    return Decision("resubmit", f"{what}: resubmitting with the given resources",
                    mem_mb or decision.mem_mb, time_s or decision.time_s)


def _describe(job: JobFacts, reason: str) -> str:
    if reason == "oom":
        rss = f", MaxRSS {format_memory(job.max_rss_mb)}" if job.max_rss_mb else ""
        mem = format_memory(job.req_mem_mb) if job.req_mem_mb else "its request"
        return f"out of memory at {mem}{rss}"
    if reason == "timeout":
        limit = format_time(job.req_time_s) if job.req_time_s else "its limit"
        return f"timed out at {limit}"
    code = "" if job.exit_code is None else f" (exit {job.exit_code}:{job.exit_signal or 0})"
    return {"node_fail": f"node failure ({job.state})", "preempted": "preempted"}.get(
        reason, f"failed{code}")


def _late_note(job: JobFacts, reason: str, stage: StageConfig) -> str:
    if reason == "late_pending":
        return f"pending since {job.submitted_at:%Y-%m-%d %H:%M:%S}Z: later than the policy " \
               "allows (supervision.late_pending_seconds)"
    after = late_running_after(job, stage.supervision, stage.expected_seconds)
    rule = f"{after[1]}, {format_time(int(after[0]))}" if after else "its limit"
    return f"running since {job.started_at:%Y-%m-%d %H:%M:%S}Z: longer than {rule}"
