"""Rebuilding a ledger that lost its history, from what the drive and Slurm's accounting
remember (``baton db rebuild``): signals replayed through the appliers the sensors use,
and each job written as its submission wrote it, with what accounting says of it since.
A retrain overwrites the experiment's training signal on the drive: a job's audit script
names the signal and generation each task answers, so an earlier generation comes back
from its jobs. One transaction: a rebuild that fails leaves the ledger as it was."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, func, insert, select, text, update

from baton.errors import BatonError
from baton.ledger.base import LedgerBase, transaction, utcnow
from baton.ledger.schema import (
    analysis_jobs,
    checkpoints,
    evaluation_jobs,
    signals,
    slurm_jobs,
    supervisions,
    training_generations,
    training_runs,
)
from baton.ledger.signal_log import insert_accepted
from baton.ledger.stages import (
    APPLIERS,
    MISSING_SIGNAL_GRACE_S,
    current_trigger,
    repaired_trigger,
    sync_stage_table,
)
from baton.ledger.supervisions import execution_status, job_key
from baton.ledger.training import generation_of
from baton.signals import SignalFile, TrainingComplete
from baton.slurm.states import JobStatus, is_terminal

# (stage, experiment, checkpoint, trigger) -> the submission key the pipeline gave the task
KeyOf = Callable[[str, str, str, str], str]
# the submission keys of a job's tasks -> the token the pipeline gave the job as comment
TokenOf = Callable[[list[str]], str]


@dataclass(frozen=True)
class Answered:
    """The training signal a task answers, as its audit script names it
    (``# baton-trigger:``): what places the task in its generation once a retrain has
    overwritten that signal on the drive."""

    signal_key: str
    generation: int
    signal_time: datetime | None = None


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
    # per task, in order; empty for a script written before scripts named them
    answered: tuple[Answered, ...] = ()
    repair: Mapping[str, Any] | None = None  # a repair's supervision, as its script names it

    @property
    def submitted_at(self) -> datetime | None:
        return min((s.submitted_at for s in self.statuses if s.submitted_at), default=None)


@dataclass
class Rebuilt:
    signals: int = 0
    jobs: int = 0
    evaluations: int = 0
    analyses: int = 0
    repairs: int = 0  # of the jobs: the supervisor's resubmissions, with their supervision
    orphans: list[str] = field(default_factory=list)  # tasks nothing on the drive asked for


class Rebuild(LedgerBase):
    def generation_signals(self, generations: Mapping[str, int]) -> dict[str, tuple[str, str]]:
        """Each experiment's training signal of its generation in ``generations``: (key,
        ISO time), for its submission's audit script to name (see :class:`Answered`)."""
        if not generations:
            return {}
        with self.read() as conn:
            rows = conn.execute(select(
                training_generations.c.experiment_name, training_generations.c.generation,
                training_generations.c.signal_key, training_generations.c.signal_time).where(
                training_generations.c.experiment_name.in_(list(generations)))).all()
        return {r.experiment_name: (r.signal_key,
                                    r.signal_time.isoformat() if r.signal_time else "")
                for r in rows if generations.get(r.experiment_name) == r.generation}

    @transaction()
    def rebuild(self, conn: Connection, events: Sequence[SignalFile | KeptJob], key_of: KeyOf,
                token_of: TokenOf, backend: str) -> Rebuilt:
        """Replay ``events`` in their order (the caller sorts them by time) into a ledger
        that holds no job; signals it already recorded (a daemon ran on the empty ledger)
        are applied again where their first application found nothing to answer. A
        training signal takes the generation its jobs' scripts name (a retrain's latest
        comes after the earlier generations its jobs give back)."""
        held = sum(conn.execute(select(func.count()).select_from(t)).scalar_one()
                   for t in (slurm_jobs, evaluation_jobs, analysis_jobs))
        if held:
            raise BatonError(f"the ledger already holds {held} job or stage row(s): `baton db "
                             "rebuild` fills a ledger that lost its history; stop the daemon, "
                             "and rebuild into a new ledger (`baton db init`)")
        done = Rebuilt()
        known = {r[0] for r in conn.execute(select(signals.c.idempotency_key))}
        numbered = {a.signal_key: a.generation for e in events if isinstance(e, KeptJob)
                    for a in e.answered}
        campaigns = {e.signal.experiment: e.signal.campaign for e in events
                     if isinstance(e, SignalFile) and isinstance(e.signal, TrainingComplete)}
        for key, generation in numbered.items():  # taken by a daemon on the empty ledger
            _renumber(conn, key, generation)
        for event in events:
            if isinstance(event, SignalFile):
                done.signals += _replay_signal(conn, event, event.idempotency_key in known)
                if event.idempotency_key in numbered:
                    _renumber(conn, event.idempotency_key, numbered[event.idempotency_key])
            elif event.repair:
                _record_repair(conn, event, token_of, backend, done)
            else:
                _record_job(conn, event, key_of, token_of, backend, done, campaigns)
        _settle_earlier_generations(conn)
        for table in (evaluation_jobs, analysis_jobs):  # as the tracker's next tick would
            sync_stage_table(conn, table, utcnow() - timedelta(seconds=MISSING_SIGNAL_GRACE_S))
        if done.repairs and conn.dialect.name == "postgresql":  # ids given: move past them
            conn.execute(text("SELECT setval(pg_get_serial_sequence('supervisions', 'id'), "
                              "(SELECT max(id) FROM supervisions))"))
        return done


def _replay_signal(conn: Connection, sf: SignalFile, recorded: bool) -> int:
    if recorded and sf.kind == "training_complete":
        return 0  # applied when it was recorded: the training run is as it says
    if not recorded:
        insert_accepted(conn, sf)
    APPLIERS[sf.kind](conn, sf)
    return 1


def _renumber(conn: Connection, key: str, generation: int) -> None:
    """Give the training signal ``key`` the generation its jobs' scripts name, when it has
    another and that one is free (numbered in replay order, it would follow only the
    generations whose jobs came back)."""
    row = conn.execute(select(training_generations).where(
        training_generations.c.signal_key == key)).first()
    if row is None or row.generation == generation:
        return
    taken = conn.execute(select(training_generations.c.id).where(
        training_generations.c.experiment_name == row.experiment_name,
        training_generations.c.generation == generation)).first()
    if taken is None:
        conn.execute(update(training_generations).where(
            training_generations.c.id == row.id).values(generation=generation))
        conn.execute(update(training_runs).where(training_runs.c.signal_key == key)
                     .values(generation=generation))


def _conflict(conn: Connection, experiment: str, answered: Answered) -> str | None:
    """Why the ledger cannot take the generation a task answers as its script says; None
    when it can (it holds it already, or its number is free)."""
    own = conn.execute(select(training_generations.c.experiment_name).where(
        training_generations.c.signal_key == answered.signal_key)).scalar()
    if own is not None:
        return None if own == experiment else f"its signal {answered.signal_key} is {own}'s"
    other = conn.execute(select(training_generations.c.signal_key).where(
        training_generations.c.experiment_name == experiment,
        training_generations.c.generation == answered.generation)).scalar()
    return None if other is None else \
        f"generation {answered.generation} of {experiment} is another training signal's ({other})"


def _place(conn: Connection, experiment: str, answered: Answered, checkpoint: str,
           campaign: str | None) -> None:
    """Make sure the ledger knows the generation a task answers (an earlier one, whose
    signal the drive no longer has: numbered, timed and checkpointed as its script says,
    and the experiment's training run if it has none yet). :func:`_conflict` first."""
    if conn.execute(select(training_generations.c.id).where(
            training_generations.c.signal_key == answered.signal_key)).first() is None:
        conn.execute(insert(training_generations).values(
            experiment_name=experiment, generation=answered.generation,
            signal_key=answered.signal_key, signal_time=answered.signal_time,
            checkpoint_path=checkpoint or None))
    if conn.execute(select(training_runs.c.id).where(
            training_runs.c.experiment_name == experiment)).first() is None:
        # its latest signal, later in the replay, brings the rest
        conn.execute(insert(training_runs).values(
            experiment_name=experiment, campaign=campaign, status="completed",
            completed_at=answered.signal_time, checkpoint_path=checkpoint or None,
            signal_key=answered.signal_key, generation=answered.generation))
    if checkpoint:
        _note_checkpoint(conn, experiment, checkpoint, answered.signal_time)


def _note_checkpoint(conn: Connection, experiment: str, checkpoint: str,
                     when: datetime | None) -> None:
    """An earlier generation's checkpoint, as its training signal listed it."""
    run_id = conn.execute(select(training_runs.c.id).where(
        training_runs.c.experiment_name == experiment)).scalar()
    if run_id is None or not checkpoint or conn.execute(select(checkpoints.c.id).where(
            checkpoints.c.training_run_id == run_id,
            checkpoints.c.checkpoint_path == checkpoint)).first():
        return
    conn.execute(insert(checkpoints).values(training_run_id=run_id, checkpoint_path=checkpoint,
                                            created_at=when))


def _settle_earlier_generations(conn: Connection) -> None:
    """An earlier generation's task whose signal a retrain overwrote is left open by the
    replay: its state and end come from accounting (COMPLETED: completed)."""
    latest = dict(conn.execute(select(training_generations.c.experiment_name,
                                      func.max(training_generations.c.generation)).group_by(
        training_generations.c.experiment_name)).all())
    for table in (evaluation_jobs, analysis_jobs):
        rows = conn.execute(select(table.c.id, table.c.experiment_name, table.c.generation,
                                   slurm_jobs.c.job_id, slurm_jobs.c.state,
                                   slurm_jobs.c.ended_at, slurm_jobs.c.exit_code).join(
            slurm_jobs, slurm_jobs.c.id == table.c.slurm_job_row).where(
            table.c.status.not_in(("completed", "failed")))).all()
        for r in rows:
            if r.generation is None or r.generation >= latest.get(r.experiment_name, 0) \
                    or not is_terminal(r.state):
                continue
            ok = r.state == "COMPLETED"
            code = "" if r.exit_code is None else f" (exit {r.exit_code})"
            conn.execute(update(table).where(table.c.id == r.id).values(
                status="completed" if ok else "failed", completed_at=r.ended_at,
                error_message=None if ok else f"Slurm job {r.job_id} ended {r.state}{code}"))


def _record_job(conn: Connection, job: KeptJob, key_of: KeyOf, token_of: TokenOf,
                backend: str, done: Rebuilt, campaigns: Mapping[str, str | None]) -> None:
    """Write one job's rows as its submission did, if it is the pipeline's: its tasks'
    submission keys, derived from the training signals its script names (or, for a
    script written before scripts named them, from what the replay holds when it was
    submitted), must give the token the job carried (else it was submitted by hand, or
    for something the drive no longer shows)."""
    first = job.statuses[0].array_job_id or job.statuses[0].job_id
    what = f"{job.stage} job {first} ({job.script_path})"
    triggers: list[str] = []
    for index, (experiment, _) in enumerate(job.tasks):
        if job.answered:
            triggers.append(job.answered[index].signal_key)
            continue
        run = conn.execute(select(training_runs.c.signal_key).where(
            training_runs.c.experiment_name == experiment)).first()
        trigger = (run.signal_key if run else None) if job.stage == "evaluation" \
            else current_trigger(conn, experiment)
        if trigger is None:  # nothing on the drive asked for it (before it was submitted)
            asked = "training signal" if job.stage == "evaluation" else "evaluation"
            done.orphans.append(f"{what}: no {asked} of {experiment} before it")
            return
        triggers.append(trigger)
    keys = [key_of(job.stage, e, c, trig)
            for (e, c), trig in zip(job.tasks, triggers, strict=True)]
    if token_of(keys) != job.token:
        done.orphans.append(f"{what}: its comment {job.token} is not the pipeline's for "
                            "these tasks (submitted by hand, or for a training signal the "
                            "drive no longer has)")
        return
    placed = list(zip(job.tasks, job.answered, strict=False))
    for (experiment, _), answered in placed:  # all checked before any is written
        if problem := _conflict(conn, experiment, answered):
            done.orphans.append(f"{what}: {problem}")
            return
    for (experiment, checkpoint), answered in placed:
        _place(conn, experiment, answered, checkpoint, campaigns.get(experiment))
    runs = [conn.execute(select(training_runs.c.id, training_runs.c.campaign).where(
        training_runs.c.experiment_name == e)).first() for e, _ in job.tasks]
    done.jobs += 1
    for index, (run, trigger, key) in enumerate(zip(runs, triggers, keys, strict=True)):
        _insert_task(conn, job, index, key, trigger, backend, done, run=run,
                     generation=generation_of(conn, trigger))


def _record_repair(conn: Connection, job: KeptJob, token_of: TokenOf, backend: str,
                   done: Rebuilt) -> None:
    """Write a repair as the supervisor's dispatch did: its job (the child of the job it
    repairs), its task (the repaired task's trigger, ``#attempt-N``) and the supervision
    that made it, as the repair's script names them; the job it repairs must be rebuilt
    already and the named key must give the token the repair carried."""
    named = job.repair or {}
    what = f"{job.stage} repair {job.statuses[0].job_id} ({job.script_path})"
    table = evaluation_jobs if job.stage == "evaluation" else analysis_jobs
    original = conn.execute(select(slurm_jobs).where(
        slurm_jobs.c.job_id == str(named["repairs"])).order_by(slurm_jobs.c.id.desc())).first()
    task = None if original is None else conn.execute(select(table).where(
        table.c.slurm_job_row == original.id)).first()
    if original is None or task is None or task.trigger_key is None:
        done.orphans.append(f"{what}: the job it repairs ({named['repairs']}) is not rebuilt")
        return
    if token_of([named["submission_key"]]) != job.token:
        done.orphans.append(f"{what}: its comment {job.token} is not the one its script's "
                            f"{named['submission_key']} gives")
        return
    done.jobs += 1
    done.repairs += 1
    run = conn.execute(select(training_runs.c.id, training_runs.c.campaign).where(
        training_runs.c.experiment_name == original.experiment)).first()
    row_id = _insert_task(conn, job, 0, named["submission_key"],
                          repaired_trigger(task.trigger_key, job.attempt), backend, done, run=run,
                          generation=task.generation, parent_id=original.id)
    status = job.statuses[0]
    conn.execute(insert(supervisions).values(
        id=named["supervision"], key=named.get("key") or job_key(original.id, named["reason"]),
        experiment=original.experiment, stage=job.stage,
        checkpoint=(original.metadata or {}).get("checkpoint"), job_row=original.id,
        job_id=original.job_id, attempt=original.attempt, reason=named["reason"],
        action=named.get("action", "resubmit"), note=named.get("note"),
        requested_by=named.get("requested_by") or "supervisor",
        script=Path(job.script_path).read_text(errors="replace"),
        new_mem_mb=named.get("new_mem_mb"), new_time_s=named.get("new_time_s"),
        dispatch_status="dispatched", repair_row=row_id, repair_job_id=status.job_id,
        execution_status=execution_status(status.state),
        created_at=_when(named.get("created_at")) or status.submitted_at or utcnow(),
        dispatched_at=status.submitted_at,
        finished_at=status.ended_at if is_terminal(status.state) else None))


def _when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _insert_task(conn: Connection, job: KeptJob, index: int, key: str, trigger: str,
                 backend: str, done: Rebuilt, *, run: Any, generation: int | None,
                 parent_id: int | None = None) -> int:
    """One task's job row, with what accounting says of it, and its stage row; returns
    the job row's id."""
    experiment, checkpoint = job.tasks[index]
    status = job.statuses[index]
    submitted = status.submitted_at or utcnow()
    meta: dict[str, Any] = {"checkpoint": checkpoint} if checkpoint else {}
    values: dict[str, Any] = dict(
        submission_key=key,
        stage=job.stage, experiment=experiment, campaign=run.campaign if run else None,
        attempt=job.attempt, backend=backend, job_id=status.job_id, state="PENDING",
        submitted_at=submitted, script_path=job.script_path,
        stdout_path=job.stdout_paths[index], stderr_path=job.stderr_paths[index],
        restarts=0, created_at=submitted, updated_at=utcnow(), parent_id=parent_id,
        metadata={**meta, "token": job.token, "task_index": index}, **job.requested)
    row_id = conn.execute(insert(slurm_jobs).values(**values)).inserted_primary_key[0]
    row = conn.execute(select(slurm_jobs).where(slurm_jobs.c.id == row_id)).one()
    if changes := status.ledger_values(row):
        conn.execute(update(slurm_jobs).where(slurm_jobs.c.id == row_id).values(**changes))
    stage_values: dict[str, Any] = dict(
        experiment_name=experiment, slurm_job_row=row_id, status="queued",
        slurm_job_id=status.job_id, submitted_at=submitted, trigger_key=trigger,
        generation=generation)
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
    return row_id
