"""Rebuilding a ledger that lost its history, from what the drive and Slurm's accounting
remember (``baton db rebuild``): signals replayed through the appliers the sensors use,
and each job written as its submission wrote it, with what accounting says of it since.
One transaction: a rebuild that fails leaves the ledger as it was."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from baton.errors import BatonError
from baton.ledger.base import LedgerBase, transaction, utcnow
from baton.ledger.schema import (
    analysis_jobs,
    evaluation_jobs,
    signals,
    slurm_jobs,
    training_runs,
)
from baton.ledger.signal_log import insert_accepted
from baton.ledger.stages import APPLIERS, current_trigger
from baton.ledger.training import generation_of
from baton.signals import SignalFile
from baton.slurm.states import JobStatus

# (stage, experiment, checkpoint, trigger) -> the submission key the pipeline gave the task
KeyOf = Callable[[str, str, str, str], str]
# the submission keys of a job's tasks -> the token the pipeline gave the job as comment
TokenOf = Callable[[list[str]], str]


@dataclass(frozen=True)
class KeptJob:
    """One submission as the drive's audit script and accounting remember it: its tasks
    (experiment, checkpoint) and, for each, what Slurm says of it and where its logs went."""

    stage: str
    tasks: tuple[tuple[str, str], ...]
    statuses: tuple[JobStatus, ...]
    token: str
    attempt: int
    script_path: str
    stdout_paths: tuple[str | None, ...]
    stderr_paths: tuple[str | None, ...]
    requested: dict[str, Any] = field(default_factory=dict)  # req_cpus, req_mem_mb, ...

    @property
    def submitted_at(self) -> datetime | None:
        return min((s.submitted_at for s in self.statuses if s.submitted_at), default=None)


@dataclass
class Rebuilt:
    signals: int = 0
    jobs: int = 0
    evaluations: int = 0
    analyses: int = 0
    orphans: list[str] = field(default_factory=list)  # tasks nothing on the drive asked for


class Rebuild(LedgerBase):
    @transaction()
    def rebuild(self, conn: Connection, events: Sequence[SignalFile | KeptJob], key_of: KeyOf,
                token_of: TokenOf, backend: str) -> Rebuilt:
        """Replay ``events`` in their order (the caller sorts them by time) into a ledger
        that holds no job; signals it already recorded (a daemon ran on the empty ledger)
        are applied again where their first application found nothing to answer."""
        held = sum(conn.execute(select(func.count()).select_from(t)).scalar_one()
                   for t in (slurm_jobs, evaluation_jobs, analysis_jobs))
        if held:
            raise BatonError(f"the ledger already holds {held} job or stage row(s): `baton db "
                             "rebuild` fills a ledger that lost its history; stop the daemon, "
                             "and rebuild into a new ledger (`baton db init`)")
        done = Rebuilt()
        known = {r[0] for r in conn.execute(select(signals.c.idempotency_key))}
        for event in events:
            if isinstance(event, SignalFile):
                done.signals += _replay_signal(conn, event, event.idempotency_key in known)
            else:
                _record_job(conn, event, key_of, token_of, backend, done)
        return done


def _replay_signal(conn: Connection, sf: SignalFile, recorded: bool) -> int:
    if recorded and sf.kind == "training_complete":
        return 0  # applied when it was recorded: the training run is as it says
    if not recorded:
        insert_accepted(conn, sf)
    APPLIERS[sf.kind](conn, sf)
    return 1


def _record_job(conn: Connection, job: KeptJob, key_of: KeyOf, token_of: TokenOf,
                backend: str, done: Rebuilt) -> None:
    """Write one job's rows as its submission did, if it is the pipeline's: its tasks'
    submission keys, derived from what the replay holds when it was submitted, must give
    the token the job carried (else it was submitted by hand, or for something the drive
    no longer shows)."""
    first = job.statuses[0].array_job_id or job.statuses[0].job_id
    what = f"{job.stage} job {first} ({job.script_path})"
    runs, triggers = [], []
    for experiment, _ in job.tasks:
        run = conn.execute(select(training_runs.c.id, training_runs.c.campaign,
                                  training_runs.c.signal_key).where(
            training_runs.c.experiment_name == experiment)).first()
        trigger = (run.signal_key if run else None) if job.stage == "evaluation" \
            else current_trigger(conn, experiment)
        if trigger is None:  # nothing on the drive asked for it (before it was submitted)
            asked = "training signal" if job.stage == "evaluation" else "evaluation"
            done.orphans.append(f"{what}: no {asked} of {experiment} before it")
            return
        runs.append(run)
        triggers.append(trigger)
    keys = [key_of(job.stage, e, c, trig)
            for (e, c), trig in zip(job.tasks, triggers, strict=True)]
    if token_of(keys) != job.token:
        done.orphans.append(f"{what}: its comment {job.token} is not the pipeline's for "
                            "these tasks (submitted by hand, or for a training signal the "
                            "drive no longer has)")
        return
    done.jobs += 1
    for index, ((experiment, checkpoint), status, run, trigger, key) in enumerate(zip(
            job.tasks, job.statuses, runs, triggers, keys, strict=True)):
        submitted = status.submitted_at or utcnow()
        meta: dict[str, Any] = {"checkpoint": checkpoint} if checkpoint else {}
        values: dict[str, Any] = dict(
            submission_key=key,
            stage=job.stage, experiment=experiment, campaign=run.campaign if run else None,
            attempt=job.attempt, backend=backend, job_id=status.job_id, state="PENDING",
            submitted_at=submitted, script_path=job.script_path,
            stdout_path=job.stdout_paths[index], stderr_path=job.stderr_paths[index],
            restarts=0, created_at=submitted, updated_at=utcnow(),
            metadata={**meta, "token": job.token, "task_index": index}, **job.requested)
        row_id = conn.execute(insert(slurm_jobs).values(**values)).inserted_primary_key[0]
        row = conn.execute(select(slurm_jobs).where(slurm_jobs.c.id == row_id)).one()
        if changes := status.ledger_values(row):
            conn.execute(update(slurm_jobs).where(slurm_jobs.c.id == row_id).values(**changes))
        stage_values: dict[str, Any] = dict(
            experiment_name=experiment, slurm_job_row=row_id, status="queued",
            slurm_job_id=status.job_id, submitted_at=submitted, trigger_key=trigger,
            generation=generation_of(conn, trigger))
        if status.state == "RUNNING":
            stage_values.update(status="running", started_at=status.started_at)
        if job.stage == "evaluation":
            conn.execute(insert(evaluation_jobs).values(
                training_run_id=run.id if run else None, checkpoint_path=checkpoint,
                **stage_values))
            done.evaluations += 1
        else:
            conn.execute(insert(analysis_jobs).values(**stage_values))
            done.analyses += 1
