"""Submitting stage jobs once: claim in the ledger, render, keep for audit, submit,
record. Used by the Dagster ops, the supervisor and ``baton slurm submit``."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

from baton.config import Config
from baton.errors import BatonError, SlurmError
from baton.layout import validate_name
from baton.ledger import Ledger
from baton.slurm.backend import SlurmBackend, Submitted
from baton.slurm.render import keep_for_audit, render_job
from baton.slurm.states import JobStatus
from baton.units import parse_memory_request_mb, parse_time_limit_seconds

log = logging.getLogger(__name__)


def submission_key(stage: str, experiment: str, attempt: int = 1, checkpoint: str = "") -> str:
    base = f"{stage}:{experiment}:attempt-{attempt}"
    return f"{base}:{checkpoint}" if checkpoint else base


def comment_token(keys: list[str]) -> str:
    """A short token stored as the job's comment, to find it again after a lost reply."""
    return "baton-" + hashlib.sha256("\n".join(keys).encode()).hexdigest()[:20]


@dataclass(frozen=True)
class TaskOutcome:
    experiment: str
    checkpoint: str
    row_id: int
    job_id: str | None
    submitted_now: bool


def submit_jobs(config: Config, ledger: Ledger, backend: SlurmBackend, stage: str,
                items: list[tuple[str, str]], *, attempt: int = 1,
                keys: list[str] | None = None,
                campaign: str | Mapping[str, str | None] | None = None,
                mem: str | None = None, time: str | None = None,
                parent_id: int | None = None,
                generations: Mapping[str, int] | None = None,
                on_claim: Callable[[int, str, str], None] | None = None,
                repair: Mapping[str, Any] | None = None) -> list[TaskOutcome]:
    """Submit (experiment, checkpoint) tasks of ``stage``: one job, or one array for many.

    Everything is checked before anything is written (:func:`check_request`): a refused
    submission leaves no claim, no campaign and no script. Each task has a submission key;
    a task whose key the ledger already holds is not submitted again (its existing row is
    returned). ``campaign`` is every task's campaign, or each experiment's (a mapping); each
    campaign named is registered the first time a job names it. ``generations``: each
    experiment's training generation, exported to its tasks (a retrain's evaluation writes
    apart from the earlier one's). A claim whose sbatch never ran is released; a submission
    Slurm refused is recorded as failed. ``on_claim(row_id, experiment, checkpoint)`` runs
    for each task claimed here before sbatch (the caller's stage rows, there before any job
    can signal, even if this process dies right after sbatch). ``repair``: the supervision
    a repair answers, named in its script for ``baton db rebuild``. Raises BatonError.
    """
    keys = keys or [submission_key(stage, e, attempt, c if len(items) > 1 else "")
                    for e, c in items]
    if len(keys) != len(items):
        raise ValueError("one key per task")
    campaign_of = dict(campaign) if isinstance(campaign, Mapping) else \
        {e: campaign for e, _ in items}
    req = check_request(config, stage, items, keys, attempt=attempt, mem=mem, time=time,
                        campaigns=campaign_of)
    first_job_of: dict[str, str] = {}
    for experiment, _ in items:
        if campaign_of.get(experiment):
            first_job_of.setdefault(campaign_of[experiment], experiment)
    for tag, experiment in first_job_of.items():
        ledger.note_campaign(tag, None, f"{stage} job of {experiment}", config.campaigns)
    outcomes: list[TaskOutcome] = []
    mine: list[tuple[int, str, str, str]] = []
    for (experiment, checkpoint), key in zip(items, keys, strict=True):
        claim = ledger.claim_submission(
            key, stage=stage, experiment=experiment, backend=backend.name, attempt=attempt,
            campaign=campaign_of.get(experiment), parent_id=parent_id, **req,
            metadata={"checkpoint": checkpoint} if checkpoint else None)
        if claim.created:
            mine.append((claim.row_id, experiment, checkpoint, key))
        else:
            job_id = claim.job_id or _wait_for_other(ledger, claim.row_id)
            log.info("%s already claimed (row %s, job %s): not submitting again",
                     key, claim.row_id, job_id)
            outcomes.append(TaskOutcome(experiment, checkpoint, claim.row_id, job_id, False))
    if not mine:
        return outcomes
    limit = getattr(backend, "max_array_size", None)  # Slurm's; the local backend has none
    size = limit() if limit is not None else len(mine)
    for start in range(0, len(mine), size):  # one array, or one per MaxArraySize tasks
        try:
            outcomes += _submit_claimed(config, ledger, backend, stage, mine[start:start + size],
                                        attempt=attempt, mem=mem, time=time,
                                        generations=generations, on_claim=on_claim,
                                        repair=repair)
        except BaseException:  # the later parts' claims: their sbatch never ran
            if later := [row_id for row_id, *_ in mine[start + size:]]:
                _release(ledger, later)
            raise
    return outcomes


def _submit_claimed(config: Config, ledger: Ledger, backend: SlurmBackend, stage: str,
                    mine: list[tuple[int, str, str, str]], *, attempt: int,
                    mem: str | None, time: str | None,
                    generations: Mapping[str, int] | None,
                    on_claim: Callable[[int, str, str], None] | None,
                    repair: Mapping[str, Any] | None) -> list[TaskOutcome]:
    """One sbatch for tasks claimed here (row id, experiment, checkpoint, key): their stage
    rows, token, script, then Slurm's answer recorded (see :func:`submit_jobs`)."""
    what = f"{stage} for {', '.join(e for _, e, _, _ in mine)}"
    row_ids = [row_id for row_id, *_ in mine]
    try:
        if on_claim is not None:
            for row_id, experiment, checkpoint, _ in mine:
                on_claim(row_id, experiment, checkpoint)
        token = comment_token([k for *_, k in mine])
        ledger.note_token(row_ids, token)
        rendered = render_job(config, stage, [(e, c) for _, e, c, _ in mine],
                              attempt=attempt, mem=mem, time=time, comment=token,
                              generations=generations,  # and their signals, for a rebuild
                              triggers=ledger.generation_signals(generations or {}),
                              repair=repair)
        script_path = keep_for_audit(config.drive, rendered, attempt)
    except BaseException as exc:  # sbatch never ran: nothing to record as a submission
        _release(ledger, row_ids)
        if isinstance(exc, (BatonError, OSError)):
            raise BatonError(f"submitting {what} failed before sbatch ran (nothing was "
                             f"submitted): {exc}") from exc
        raise
    try:
        submitted = backend.submit(rendered.spec, script_path)
    except (BatonError, OSError) as exc:
        for row_id in row_ids:
            ledger.mark_submit_failed(row_id, str(exc))
        raise BatonError(f"submitting {what} failed: {exc}") from exc
    _record(ledger, submitted, mine, rendered.spec.output, rendered.spec.error, script_path)
    return [TaskOutcome(e, c, row_id, job_id, True)
            for (row_id, e, c, _), job_id in zip(mine, submitted.ids(), strict=True)]


def check_request(config: Config, stage: str, items: list[tuple[str, str]], keys: list[str],
                  *, attempt: int, mem: str | None, time: str | None,
                  campaigns: Mapping[str, str | None]) -> dict[str, Any]:
    """:func:`validate_request`, then the stage's log folder made on the drive (Slurm
    cannot start a job whose output it cannot open). Returns the requested resources for
    the ledger; raises BatonError."""
    req = validate_request(config, stage, items, keys, attempt=attempt, mem=mem, time=time,
                           campaigns=campaigns)
    config.drive.ensure(config.drive.logs / stage)
    return req


def validate_request(config: Config, stage: str, items: list[tuple[str, str]],
                     keys: list[str], *, attempt: int, mem: str | None, time: str | None,
                     campaigns: Mapping[str, str | None]) -> dict[str, Any]:
    """Everything a submission needs, checked before anything is claimed or written: the
    attempt, the resources, every name and checkpoint, the campaigns, the stage's template.
    Writes nothing, so ``baton plan`` asks it too. Returns the requested resources for the
    ledger; raises BatonError."""
    if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 1:
        raise BatonError(f"attempt {attempt!r} is not allowed: attempts count from 1")
    if len(set(keys)) != len(keys):
        twice = sorted({k for k in keys if keys.count(k) > 1})
        raise BatonError(f"the same task is given twice: {', '.join(twice)}")
    stage_cfg = config.stage(stage)
    try:
        req = dict(req_cpus=stage_cfg.cpus,
                   req_mem_mb=parse_memory_request_mb(mem or stage_cfg.mem),
                   req_time_s=parse_time_limit_seconds(time or stage_cfg.time))
    except ValueError as exc:
        raise BatonError(str(exc)) from None
    for tag in {t for t in campaigns.values() if t}:
        validate_name(tag, "campaign")
    drive = config.drive
    render_job(config, stage, items, attempt=attempt, mem=mem, time=time)  # names, paths
    for experiment, checkpoint in items:
        if checkpoint and not drive.inside(checkpoint, "checkpoint").exists():
            raise BatonError(f"checkpoint {checkpoint} of {experiment} does not exist: "
                             "nothing to evaluate")
    return req


def _release(ledger: Ledger, row_ids: list[int]) -> None:
    try:
        ledger.release_claims(row_ids)
    except Exception:  # the stale-claim reconciliation settles them later
        log.exception("could not release the claims of ledger rows %s", row_ids)


def _wait_for_other(ledger: Ledger, row_id: int, timeout: float = 120) -> str | None:
    """Another process holds the claim and is submitting right now: wait for its job id."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = ledger.job(row_id)
        if row is None or row.job_id or row.state != "SUBMITTING":
            return row.job_id if row else None
        time.sleep(0.2)
    log.warning("ledger row %s is still being submitted by another process after %.0fs",
                row_id, timeout)
    return None


def _record(ledger: Ledger, submitted: Submitted, mine: list[tuple[int, str, str, str]],
            output: str | None, error: str | None, script_path: Path) -> None:
    is_array = bool(submitted.task_ids)
    for i, ((row_id, *_), job_id) in enumerate(zip(mine, submitted.ids(), strict=True)):
        ledger.mark_submitted(
            row_id, job_id, script_path=str(script_path),
            stdout_path=_expand(output, submitted.job_id, i, is_array),
            stderr_path=_expand(error, submitted.job_id, i, is_array),
            array_job_id=submitted.job_id if is_array else None,
            array_task_id=i if is_array else None)


def _expand(pattern: str | None, job_id: str, task: int, is_array: bool) -> str | None:
    if pattern is None:
        return None
    out = pattern.replace("%A", job_id).replace("%a", str(task))
    return out if is_array else out.replace("%j", job_id)


def reconcile_stale(ledger: Ledger, backend: SlurmBackend, older_than_s: float = 600) -> int:
    """Settle claims whose submitter died between claiming and recording Slurm's answer:
    adopt the job if the queue holds one with the submission's token, else if accounting
    knows one (it already ran and left the queue: adopted with its final state), else mark
    the claim failed (a retry may then claim it again). Returns how many rows were settled;
    when accounting cannot answer for now, the claims not found in the queue wait for a
    later call (failing them could submit a job that ran a second time); on a cluster that
    keeps no accounting the queue is all there is, and they are marked failed."""
    rows = ledger.stale_submissions(older_than_s)
    find = getattr(backend, "find_by_comment", None)
    siblings: dict[str, int] = {}
    for row in rows:
        token = (row.metadata or {}).get("token")
        if token:
            siblings[token] = siblings.get(token, 0) + 1
    unfound = []
    for row in rows:
        meta = row.metadata or {}
        found = find(meta["token"]) if find and meta.get("token") else None
        if found:
            job_id = f"{found}_{meta.get('task_index', 0)}" \
                if siblings[meta["token"]] > 1 else found
            log.warning("adopting job %s for %s: its submitter died before recording it",
                        job_id, row.submission_key)
            ledger.adopt_job(row.id, job_id)
        else:
            unfound.append(row)
    try:
        ran = _ran(backend, unfound)
    except SlurmError as exc:
        if getattr(backend, "accounting", True):
            log.warning("Slurm's accounting did not answer (%s): %d claim(s) of dead "
                        "submitters are settled later", exc, len(unfound))
            return len(rows) - len(unfound)
        ran = {}  # the cluster keeps no accounting: the queue was all there is to ask
    for row in unfound:
        meta = row.metadata or {}
        status = _task_status(ran.get(meta.get("token") or "", {}),
                              meta.get("task_index", 0), siblings.get(meta.get("token"), 1))
        if status is not None:
            log.warning("adopting job %s (%s) for %s from accounting: its submitter died "
                        "before recording it", status.job_id, status.state,
                        row.submission_key)
            ledger.adopt_job(row.id, status.job_id, submitted_at=status.submitted_at,
                             array_job_id=status.array_job_id,
                             array_task_id=status.array_task_id)
            ledger.apply_statuses({status.job_id: status})
        else:
            ledger.mark_submit_failed(row.id, "the submitting process ended before Slurm's "
                                      "answer was recorded, and no job in the queue or in "
                                      "accounting carries its token; retry to submit it")
    return len(rows)


def _ran(backend: SlurmBackend, rows: list[Any]) -> dict[str, dict[str, JobStatus]]:
    """The jobs accounting knows by token, since the first of ``rows`` was claimed; empty
    when no row carries a token or the backend keeps no accounting."""
    read = getattr(backend, "jobs_by_comment", None)
    claimed = [r.created_at for r in rows if (r.metadata or {}).get("token")]
    if read is None or not claimed or not getattr(backend, "accounting", True):
        return {}
    since = min(claimed)
    since = since if since.tzinfo else since.replace(tzinfo=UTC)
    result: dict[str, dict[str, JobStatus]] = read(since - timedelta(minutes=1))
    return result


def _task_status(found: dict[str, JobStatus], index: int, tasks: int) -> JobStatus | None:
    """Accounting's status of task ``index`` of a submission of ``tasks`` tasks."""
    if tasks > 1:
        return next((s for s in found.values() if s.array_task_id == index), None)
    singles = [s for s in found.values() if s.array_task_id is None]
    return singles[-1] if singles else None
