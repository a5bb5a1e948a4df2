"""The ledger: the one place the orchestrator writes state. Only the orchestrator opens it.

Every write that must happen once (a signal, a submission) goes through a unique key, so
seeing the same thing twice - daemon restart, two sensors, UI plus automation - does one
thing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Row, and_, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from baton.ledger import migrate
from baton.ledger.engine import make_engine, with_retry
from baton.ledger.schema import (
    FINAL_JOB,
    OPEN_JOB,
    checkpoints,
    heartbeats,
    signals,
    slurm_jobs,
    training_runs,
)
from baton.signals import SignalFile, TrainingComplete
from baton.slurm.states import JobStatus

# applies an accepted signal to the pipeline's state inside the accepting transaction
Applier = Callable[[Connection, SignalFile], Any]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Claim:
    """The outcome of claiming a submission: the row, and whether this caller owns it."""

    row_id: int
    created: bool
    state: str
    job_id: str | None


class Ledger:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = make_engine(url)

    # --- lifecycle ---------------------------------------------------------------------
    def init(self) -> tuple[str | None, str]:
        return migrate.upgrade(self.engine)

    def check(self) -> migrate.CheckReport:
        return migrate.check(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction (BEGIN IMMEDIATE on SQLite, so writers queue)."""
        with self.engine.connect().execution_options(sqlite_immediate=True) as conn, \
                conn.begin():
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    # --- signals -----------------------------------------------------------------------
    def record_signal(self, key: str, kind: str, path: str, status: str, *,
                      experiment: str | None = None, reason: str | None = None,
                      sha256: str | None = None, signal_time: datetime | None = None,
                      file_mtime: float | None = None) -> bool:
        """Record a signal once. Returns False when the key was already recorded."""
        if status not in ("accepted", "quarantined"):
            raise ValueError(f"unknown signal status {status!r}")
        row = dict(idempotency_key=key, kind=kind, path=path, status=status,
                   experiment=experiment, reason=reason, sha256=sha256,
                   signal_time=signal_time, file_mtime=file_mtime, seen_at=utcnow())

        def once() -> bool:
            try:
                with self.write() as conn:
                    conn.execute(insert(signals).values(**row))
                return True
            except IntegrityError:
                return False

        return with_retry(once)

    def accept_signal(self, sf: SignalFile, apply: Applier | None = None) -> bool:
        """Record an accepted signal once and, in the same transaction, ``apply`` it to the
        pipeline's state: a crash between the two cannot leave a signal seen but unacted.
        Returns False when the signal was already recorded (and applied)."""
        row = dict(idempotency_key=sf.idempotency_key, kind=sf.kind, path=str(sf.path),
                   status="accepted", experiment=sf.signal.experiment, sha256=sf.sha256,
                   signal_time=sf.signal.timestamp, file_mtime=sf.mtime, seen_at=utcnow())

        def once() -> bool:
            recorded = False
            try:
                with self.write() as conn:
                    conn.execute(insert(signals).values(**row))
                    recorded = True
                    if apply is not None:
                        apply(conn, sf)
                return True
            except IntegrityError:
                if recorded:  # the applier's own constraint, not a duplicate signal
                    raise
                return False

        return with_retry(once)

    def known_signal_files(self, kind: str) -> dict[str, float | None]:
        """Path -> mtime of every signal file of ``kind`` recorded (for the full rescan)."""
        with self.read() as conn:
            return {r.path: r.file_mtime for r in conn.execute(
                select(signals.c.path, signals.c.file_mtime).where(signals.c.kind == kind))}

    def quarantined(self, limit: int = 100) -> Sequence[Row[Any]]:
        with self.read() as conn:
            return conn.execute(select(signals).where(signals.c.status == "quarantined")
                                .order_by(signals.c.id.desc()).limit(limit)).all()

    def signal_seen(self, key: str) -> Row[Any] | None:
        with self.read() as conn:
            return conn.execute(select(signals).where(signals.c.idempotency_key == key)).first()

    # --- training runs -----------------------------------------------------------------
    def record_training_complete(self, sf: SignalFile) -> int:
        """Upsert the experiment's training run from its signal; returns the run id."""
        def once() -> int:
            with self.write() as conn:
                return apply_training_signal(conn, sf)

        return with_retry(once)

    def training_run(self, experiment: str) -> Row[Any] | None:
        with self.read() as conn:
            return conn.execute(select(training_runs).where(
                training_runs.c.experiment_name == experiment)).first()

    # --- Slurm jobs --------------------------------------------------------------------
    def claim_submission(self, key: str, *, stage: str, experiment: str, backend: str,
                         attempt: int = 1, campaign: str | None = None,
                         req_cpus: int | None = None, req_mem_mb: float | None = None,
                         req_time_s: int | None = None, parent_id: int | None = None,
                         metadata: dict[str, Any] | None = None) -> Claim:
        """Claim the right to submit ``key``. Only the caller that gets ``created=True``
        submits; every other caller sees the existing row."""
        now = utcnow()

        def once() -> Claim:
            try:
                with self.write() as conn:
                    row_id = conn.execute(insert(slurm_jobs).values(
                        submission_key=key, stage=stage, experiment=experiment,
                        campaign=campaign, attempt=attempt, backend=backend,
                        state="SUBMITTING", req_cpus=req_cpus, req_mem_mb=req_mem_mb,
                        req_time_s=req_time_s, parent_id=parent_id, restarts=0,
                        created_at=now, updated_at=now, metadata=metadata,
                    )).inserted_primary_key[0]
                return Claim(int(row_id), True, "SUBMITTING", None)
            except IntegrityError:
                row = self.job_by_key(key)
                assert row is not None
                if row.state == "SUBMIT_FAILED" and self._reclaim(row.id):
                    return Claim(row.id, True, "SUBMITTING", None)
                return Claim(row.id, False, row.state, row.job_id)

        return with_retry(once)

    def _reclaim(self, row_id: int) -> bool:
        """A submission Slurm never accepted may be tried again; one caller wins."""
        with self.write() as conn:
            return conn.execute(update(slurm_jobs).where(
                slurm_jobs.c.id == row_id, slurm_jobs.c.state == "SUBMIT_FAILED").values(
                state="SUBMITTING", reason=None, ended_at=None, updated_at=utcnow())
            ).rowcount == 1

    def mark_submitted(self, row_id: int, job_id: str, *, script_path: str | None = None,
                       stdout_path: str | None = None, stderr_path: str | None = None,
                       array_job_id: str | None = None, array_task_id: int | None = None,
                       submitted_at: datetime | None = None) -> None:
        self._update_job(row_id, job_id=job_id, state="PENDING",
                         submitted_at=submitted_at or utcnow(), script_path=script_path,
                         stdout_path=stdout_path, stderr_path=stderr_path,
                         array_job_id=array_job_id, array_task_id=array_task_id)

    def note_token(self, row_ids: list[int], token: str) -> None:
        """Remember the comment a submission carries, to find it in the queue if the
        submitting process dies before Slurm's answer is recorded."""
        for index, row_id in enumerate(row_ids):
            row = self.job(row_id)
            meta = {**(row.metadata or {}), "token": token, "task_index": index}
            self._update_job(row_id, metadata=meta)

    def stale_submissions(self, older_than_s: float) -> Sequence[Row[Any]]:
        """Claims still SUBMITTING long after they were made: their submitter died."""
        cutoff = utcnow() - timedelta(seconds=older_than_s)
        with self.read() as conn:
            return conn.execute(select(slurm_jobs).where(
                slurm_jobs.c.state == "SUBMITTING", slurm_jobs.c.updated_at < cutoff)
                .order_by(slurm_jobs.c.id)).all()

    def mark_submit_failed(self, row_id: int, reason: str) -> None:
        """A submission that never reached Slurm; the key stays taken (resubmit is a new
        attempt with its own key), and the reason is kept."""
        self._update_job(row_id, state="SUBMIT_FAILED", reason=reason, ended_at=utcnow())

    def _update_job(self, row_id: int, **values: Any) -> None:
        values["updated_at"] = utcnow()

        def once() -> None:
            with self.write() as conn:
                conn.execute(update(slurm_jobs).where(slurm_jobs.c.id == row_id)
                             .values(**values))

        with_retry(once)

    def job(self, row_id: int) -> Row[Any] | None:
        with self.read() as conn:
            return conn.execute(select(slurm_jobs).where(slurm_jobs.c.id == row_id)).first()

    def job_by_key(self, key: str) -> Row[Any] | None:
        with self.read() as conn:
            return conn.execute(select(slurm_jobs).where(
                slurm_jobs.c.submission_key == key)).first()

    def jobs(self, *, experiment: str | None = None, stage: str | None = None
             ) -> Sequence[Row[Any]]:
        q = select(slurm_jobs).order_by(slurm_jobs.c.id)
        if experiment is not None:
            q = q.where(slurm_jobs.c.experiment == experiment)
        if stage is not None:
            q = q.where(slurm_jobs.c.stage == stage)
        with self.read() as conn:
            return conn.execute(q).all()

    def unfinished_jobs(self, settle_seconds: float = 300) -> Sequence[Row[Any]]:
        """Jobs Slurm still has to tell us about: submitted and not in a final state, or
        final for less than ``settle_seconds`` without accounting data yet (slurmdbd
        lags the controller; MaxRSS and CPU time arrive a little later; a job killed by
        signal 9 needs its MaxRSS to tell over-memory from a crash). Two indexed
        questions, so the cost follows the jobs in flight, not the history."""
        settled_before = utcnow() - timedelta(seconds=settle_seconds)
        c = slurm_jobs.c
        killed = or_(c.exit_signal == 9, c.exit_code == 137)
        with self.read() as conn:
            open_ = conn.execute(select(slurm_jobs).where(OPEN_JOB)).all()
            lagging = conn.execute(select(slurm_jobs).where(
                c.ended_at > settled_before, FINAL_JOB,
                or_(c.cpu_seconds.is_(None), and_(c.max_rss_mb.is_(None), killed)))).all()
        return sorted((r for r in [*open_, *lagging] if r.job_id is not None),
                      key=lambda r: r.id)

    def apply_statuses(self, statuses: dict[str, JobStatus]) -> int:
        """Write what one batched Slurm poll said about our jobs; returns rows changed."""
        if not statuses:
            return 0

        def once() -> int:
            n = 0
            with self.write() as conn:
                rows = conn.execute(select(slurm_jobs).where(
                    slurm_jobs.c.job_id.in_(list(statuses)))).all()
                for row in rows:
                    values = statuses[row.job_id].ledger_values(row)
                    if values:
                        values["updated_at"] = utcnow()
                        conn.execute(update(slurm_jobs).where(slurm_jobs.c.id == row.id)
                                     .values(**values))
                        n += 1
            return n

        return with_retry(once)

    def count_jobs(self) -> int:
        with self.read() as conn:
            return int(conn.execute(select(func.count()).select_from(slurm_jobs)).scalar_one())

    # --- heartbeats --------------------------------------------------------------------
    def heartbeat(self, name: str, detail: str | None = None) -> None:
        now = utcnow()

        def once() -> None:
            with self.write() as conn:
                done = conn.execute(update(heartbeats).where(heartbeats.c.name == name)
                                    .values(beat_at=now, detail=detail)).rowcount
                if not done:
                    conn.execute(insert(heartbeats).values(name=name, beat_at=now,
                                                           detail=detail))

        try:
            with_retry(once)
        except IntegrityError:  # another process inserted the first beat meanwhile
            with_retry(once)

    def heartbeats(self) -> dict[str, datetime]:
        with self.read() as conn:
            return {r.name: r.beat_at for r in conn.execute(select(heartbeats))}


def apply_training_signal(conn: Connection, sf: SignalFile) -> int:
    """Upsert the experiment's training run and its checkpoints from its signal."""
    sig = sf.signal
    assert isinstance(sig, TrainingComplete)
    values = dict(
        campaign=sig.campaign, status="completed", completed_at=sig.timestamp,
        checkpoint_path=sig.checkpoint_path, config_path=sig.config_path,
        hostname=sig.hostname, user=sig.user, git_commit=sig.git_commit,
        num_epochs=sig.num_epochs, total_steps=sig.total_steps,
        final_loss=sig.final_loss, mlflow_run_id=sig.mlflow_run_id,
        signal_key=sf.idempotency_key,
        metadata=sig.model_dump(mode="json", exclude_none=True))
    run_id = conn.execute(select(training_runs.c.id).where(
        training_runs.c.experiment_name == sig.experiment)).scalar()
    if run_id is None:
        run_id = conn.execute(insert(training_runs).values(
            experiment_name=sig.experiment, **values)).inserted_primary_key[0]
    else:
        conn.execute(update(training_runs).where(training_runs.c.id == run_id)
                     .values(**values))
    for path in sig.checkpoint_paths():
        exists = conn.execute(select(checkpoints.c.id).where(
            checkpoints.c.training_run_id == run_id,
            checkpoints.c.checkpoint_path == path)).first()
        if not exists:
            conn.execute(insert(checkpoints).values(
                training_run_id=run_id, checkpoint_path=path, created_at=sig.timestamp))
    return int(run_id)


def open_ledger(url: str, *, init: bool = True) -> Ledger:
    """Open (and by default create or upgrade) the ledger at ``url``."""
    ledger = Ledger(url)
    if init:
        ledger.init()
    return ledger
