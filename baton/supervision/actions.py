"""The supervisor's effects, one step each as in the seed design: detect jobs that need
supervision, record the decision, format the repair from the stage's template, dispatch it
through the submission path, and follow its execution to the end. Called by the Dagster
``supervisor`` sensor each tick and by ``baton supervise``."""

from __future__ import annotations

import getpass
import logging
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from baton.config import Config, StageConfig
from baton.errors import BatonError, SlurmError
from baton.ledger import Ledger
from baton.ledger import supervisions as sv
from baton.pipeline.submission import submit_jobs
from baton.slurm.backend import SlurmBackend
from baton.slurm.limits import PartitionLimits, partition_for
from baton.slurm.states import is_terminal
from baton.supervision.policy import (
    GROWN,
    MANUAL,
    Decision,
    JobFacts,
    classify,
    decide,
    decide_retry,
)
from baton.units import format_memory, format_time

log = logging.getLogger(__name__)
SUPERVISOR = "supervisor"
# a job that ended this long before the supervisor first saw it is not repaired by itself
# (a ledger from before supervision existed must not resubmit its whole history)
TOO_OLD = timedelta(days=7)
# a repair whose dispatch fails (sbatch or scancel refused, the controller down) is tried
# again on later ticks: this many tries in all, the second DISPATCH_BACKOFF after the
# first, each wait twice the one before (1, 2, 4, 8 minutes); then dispatch_status "failed"
DISPATCH_TRIES = 5
DISPATCH_BACKOFF = timedelta(minutes=1)


@dataclass
class TickReport:
    decided: list[int] = field(default_factory=list)
    dispatched: list[int] = field(default_factory=list)  # resubmissions dispatched now
    failed: list[int] = field(default_factory=list)
    followed: int = 0

    def summary(self) -> str:
        return (f"{len(self.decided)} decided, {len(self.dispatched)} resubmitted, "
                f"{len(self.failed)} dispatch failures, {self.followed} updated")


def tick(config: Config, ledger: Ledger, backend: SlurmBackend,
         now: datetime | None = None) -> TickReport:
    """Detect, decide, dispatch and follow: everything one sensor tick does."""
    now = now or datetime.now(UTC)
    report = TickReport()
    rows, taken = ledger.supervision_candidates()
    for row in rows:
        claimed = _detect(config, ledger, backend, row, taken, now)
        if claimed is not None:
            report.decided.append(claimed)
    for sup in ledger.undispatched_repairs():
        if not due(sup, now):
            continue
        if dispatch(config, ledger, backend, sup, now):
            if sup.action == "resubmit":
                report.dispatched.append(sup.id)
        else:
            report.failed.append(sup.id)
    report.followed = follow(ledger)
    return report


def _detect(config: Config, ledger: Ledger, backend: SlurmBackend, row: Any, taken: set[str],
            now: datetime) -> int | None:
    stage = config.stages.get(row.stage)
    if stage is None:
        return None
    job = JobFacts.from_row(row)
    reason = classify(job, now, stage.supervision, stage.expected_seconds)
    if reason is None or sv.job_key(row.id, reason) in taken:
        return None
    if not stage.supervision.enabled:
        if not is_terminal(row.state):
            return None
        decision = Decision("none", f"supervision of {row.stage} is disabled")
    elif is_terminal(row.state) and row.ended_at and now - row.ended_at > TOO_OLD:
        decision = Decision("none", f"ended {row.ended_at:%Y-%m-%d}, before supervision "
                            "saw it: not repaired automatically (baton supervise retry)")
    else:
        decision = decide(job, reason, stage, stage_partition(config, backend, stage)
                          if reason in GROWN else None)
    sid, created = record(ledger, row, reason, decision, SUPERVISOR)
    if created:
        log.info("supervision %s: %s job %s (%s of %s): %s -> %s", sid, row.stage,
                 row.job_id, reason, row.experiment, decision.note, decision.action,
                 extra={"experiment": row.experiment, "stage": row.stage,
                        "job_id": row.job_id})
    return sid if created else None


def record(ledger: Ledger, row: Any, reason: str, decision: Decision, by: str,
           key: str | None = None) -> tuple[int, bool]:
    """Step 1: the decision about job ``row``, once per key."""
    dispatch_status = "pending" if decision.action in ("resubmit", "cancel") else "not_needed"
    execution = {"resubmit": "pending", "cancel": sv.execution_status(row.state),
                 "alert": sv.execution_status(row.state), "gave_up": "open"
                 }.get(decision.action, "none")
    return ledger.claim_supervision(
        key or sv.job_key(row.id, reason), experiment=row.experiment, stage=row.stage,
        checkpoint=(row.metadata or {}).get("checkpoint"), job_row=row.id, job_id=row.job_id,
        attempt=row.attempt, reason=reason, action=decision.action,
        note=decision.note, requested_by=by, new_mem_mb=decision.mem_mb,
        new_time_s=decision.time_s, dispatch_status=dispatch_status,
        execution_status=execution)


def stage_partition(config: Config, backend: SlurmBackend, stage: StageConfig
                    ) -> PartitionLimits | None:
    """The limits of the partition the stage's jobs run in (the default one when none is
    named), a retry's ceiling; None where the backend has no partitions or Slurm did not
    answer (then the policy's caps alone hold)."""
    read = getattr(backend, "partitions", None)
    if read is None:
        return None
    try:
        limits = read()
    except SlurmError as exc:
        log.warning("the partitions' limits are unknown for now (%s): a retry is capped by "
                    "supervision's caps only", exc)
        return None
    return partition_for(limits, stage.partition or config.slurm.partition)


def repair_key(sid: int) -> str:
    """The submission key of supervision ``sid``'s resubmission."""
    return f"supervise:{sid}"


def due(sup: Any, now: datetime) -> bool:
    """Whether the next dispatch try of ``sup`` may happen at ``now`` (its backoff)."""
    tries, last = sv.failed_tries(sup.dispatch_error)
    if sup.dispatch_status != "retrying" or last is None:
        return True
    return now >= last + DISPATCH_BACKOFF * 2 ** (tries - 1)


def dispatch(config: Config, ledger: Ledger, backend: SlurmBackend, sup: Any,
             now: datetime | None = None) -> bool:
    """Steps 2-3: format the repair and dispatch it. A resubmission goes through the
    submission path under the key ``supervise:{id}``, so a dispatcher that dies midway
    and a second one racing it submit once. Returns False when the dispatch failed; it is
    then tried again on a later tick (``retrying``), up to DISPATCH_TRIES in all."""
    original = ledger.job(sup.job_row)
    assert original is not None
    try:
        if sup.action == "cancel":
            backend.cancel([original.job_id])
            ledger.update_supervision(sup.id, script=f"scancel {original.job_id}",
                                      dispatch_status="dispatched", dispatch_error=None,
                                      dispatched_at=datetime.now(UTC))
            return True
        generation = ledger.stage_generation(sup.stage, original.id)  # a retrain's, kept

        def task(row_id: int, *_: str, job_id: str | None = None) -> None:
            """The repair's stage task, written with its claim (before sbatch: its job's
            signal finds it even if this process dies before Slurm's answer is recorded)."""
            ledger.record_repair_task(stage=sup.stage, original_row=original.id,
                                      slurm_row=row_id, job_id=job_id,
                                      attempt=sup.attempt + 1)

        outcome = submit_jobs(
            config, ledger, backend, sup.stage, [(sup.experiment, sup.checkpoint or "")],
            attempt=sup.attempt + 1, keys=[repair_key(sup.id)],
            campaign=original.campaign, mem=format_memory(sup.new_mem_mb),
            time=format_time(sup.new_time_s), parent_id=original.id,
            generations={sup.experiment: generation} if generation else None,
            on_claim=task, repair=_named(sup, original))[0]
    except (BatonError, OSError) as exc:
        _failed(ledger, sup, exc, now or datetime.now(UTC))
        return False
    if outcome.job_id is None:  # a racing dispatcher held the claim, and its try failed
        return False
    repair = ledger.job(outcome.row_id)
    task(outcome.row_id, job_id=outcome.job_id)
    script = Path(repair.script_path).read_text() if repair and repair.script_path else None
    ledger.update_supervision(sup.id, script=script, dispatch_status="dispatched",
                              dispatch_error=None, repair_row=outcome.row_id,
                              repair_job_id=outcome.job_id, dispatched_at=datetime.now(UTC))
    if sup.reason == MANUAL:  # only now is the give-up it answers handled
        for give_up in ledger.open_give_ups(sup.job_row):
            ledger.update_supervision(give_up.id, only_if={"execution_status": "open"},
                                      execution_status="retried")
    return True


def _named(sup: Any, original: Any) -> dict[str, Any]:
    """What a repair's script says of the supervision it answers (``# baton-repair:``),
    so that ``baton db rebuild`` brings both back: the job it repairs by Slurm id, and its
    own submission key (which gives the token the job carries)."""
    return {"supervision": sup.id, "key": sup.key, "submission_key": repair_key(sup.id),
            "repairs": original.job_id, "reason": sup.reason, "action": sup.action,
            "note": sup.note, "requested_by": sup.requested_by,
            "new_mem_mb": sup.new_mem_mb, "new_time_s": sup.new_time_s,
            "created_at": sup.created_at.isoformat() if sup.created_at else None}


def _failed(ledger: Ledger, sup: Any, exc: Exception, now: datetime) -> None:
    """Record a failed dispatch try: ``retrying`` while tries are left, else ``failed``.
    Compared and set on the values read, so that racing dispatchers count a try once (and
    a racing scancel that did the job keeps its word)."""
    tries = sv.failed_tries(sup.dispatch_error)[0] + 1
    final = tries >= DISPATCH_TRIES
    values: dict[str, Any] = dict(
        dispatch_status="failed" if final else "retrying",
        dispatch_error=sv.failed_try_text(tries, DISPATCH_TRIES, now, exc))
    if final:
        values["execution_status"] = "none"
    if ledger.update_supervision(sup.id, only_if={"dispatch_status": sup.dispatch_status,
                                                  "dispatch_error": sup.dispatch_error},
                                 **values):
        log.error("supervision %s: dispatching the %s failed (try %s of %s%s): %s", sup.id,
                  sup.action, tries, DISPATCH_TRIES,
                  ", giving up" if final else ", tried again later", exc)


def follow(ledger: Ledger) -> int:
    """Step 4: carry the state of each followed job into its supervision; returns how
    many changed."""
    changed = 0
    for r in ledger.live_supervisions():
        status = sv.execution_status(r.state)
        if status != r.execution_status:
            done = (r.ended_at or datetime.now(UTC)) if is_terminal(r.state) else None
            changed += ledger.update_supervision(
                r.id, only_if={"execution_status": r.execution_status},
                execution_status=status, finished_at=done)
    return changed


# --- what people do: ``baton supervise retry | cancel`` ---------------------------------
def whoami() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


def retry(config: Config, ledger: Ledger, backend: SlurmBackend, sid: int, *,
          mem_mb: float | None = None, time_s: int | None = None) -> int:
    """Resubmit now, as a new attempt, whatever the policy said; returns the new
    supervision's id. The job retried is the latest of the chain: the repair if there is
    one, else the supervised job."""
    for what, value in (("memory", mem_mb), ("time limit", time_s)):
        if value is not None and value <= 0:  # Slurm reads 0 as a whole node, or no limit
            raise BatonError(f"{what} {value!r} of a retry must be positive")
    sup = _get(ledger, sid)
    row = ledger.job(sup.repair_row or sup.job_row)
    assert row is not None
    if not is_terminal(row.state):
        raise BatonError(f"job {row.job_id} of supervision {sid} is still {row.state}: "
                         f"nothing to retry yet (cancel it first: baton supervise cancel {sid})")
    if row.state == "COMPLETED":
        raise BatonError(f"job {row.job_id} of supervision {sid} completed: nothing to retry")
    stage = config.stage(row.stage)
    job = JobFacts.from_row(row)
    reason = classify(job, datetime.now(UTC), stage.supervision)
    decision = decide_retry(job, stage, reason, mem_mb, time_s,
                            stage_partition(config, backend, stage))
    new, created = record(ledger, row, MANUAL, decision, whoami(),
                          key=f"job-{row.id}:{MANUAL}")
    if not created:
        earlier = _get(ledger, new)
        if earlier.dispatch_status not in ("retrying", "failed"):
            raise BatonError(f"job {row.job_id} was already retried as supervision {new}")
        if earlier.dispatch_status == "failed":  # a person asks again: tries start over
            ledger.update_supervision(new, only_if={"dispatch_status": "failed"},
                                      dispatch_status="pending", dispatch_error=None,
                                      execution_status="pending")
    # dispatched now, whatever the backoff; the give-up is marked retried only once the
    # resubmission is dispatched (a failed dispatch leaves it open, and its alert firing)
    dispatch(config, ledger, backend, _get(ledger, new))
    return new


def cancel(ledger: Ledger, backend: SlurmBackend, sid: int) -> str:
    """Stop supervision ``sid``: dismiss a give-up, stop an undispatched repair, or scancel
    the job it follows. Returns what was done, in words."""
    sup = _get(ledger, sid)
    if sup.action == "gave_up" and sup.execution_status == "open":
        ledger.update_supervision(sid, execution_status="dismissed",
                                  finished_at=datetime.now(UTC))
        return f"supervision {sid} dismissed: job {sup.job_id} stays as it ended"
    if sup.dispatch_status in (*sv.UNDISPATCHED, "failed") and ledger.update_supervision(
            sid, only_if={"dispatch_status": sup.dispatch_status},
            dispatch_status="cancelled", execution_status="cancelled",
            finished_at=datetime.now(UTC)):
        return f"supervision {sid} cancelled before it was dispatched"
    target = ledger.job(sup.repair_row) if sup.repair_row else ledger.job(sup.job_row)
    if sup.action in ("resubmit", "cancel", "alert") and target is not None \
            and target.job_id and not is_terminal(target.state):
        refused = backend.cancel([target.job_id])
        if refused:  # it ended before the tracker saw it: the tracker will record how
            raise BatonError(f"job {target.job_id} of supervision {sid} was not cancelled: "
                             f"{refused[target.job_id]}")
        ledger.update_supervision(sid, execution_status="cancelled",
                                  finished_at=datetime.now(UTC))
        return f"job {target.job_id} cancelled (supervision {sid})"
    state = target.state if target is not None else "unknown"
    raise BatonError(f"supervision {sid} ({sup.action}) has nothing to cancel: its job "
                     f"{target.job_id if target else '?'} is {state}")


def _get(ledger: Ledger, sid: int) -> Any:
    sup = ledger.supervision(sid)
    if sup is None:
        raise BatonError(f"no supervision {sid} (baton supervise list shows them)")
    return sup
