"""The ``slurm_jobs`` table: every submission, claimed once by its key before it reaches
Slurm, and what Slurm said about it since."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, Select, delete, func, insert, select, update

from baton.ledger.base import LedgerBase, transaction, utcnow
from baton.ledger.engine import STREAM_ROWS
from baton.ledger.schema import (
    FIGURES_AWAITED,
    FINAL_JOB,
    OPEN_JOB,
    analysis_jobs,
    evaluation_jobs,
    slurm_jobs,
    training_runs,
)
from baton.slurm.states import FIGURES_UNAVAILABLE, JobStatus

# how long after its end a job's CPU time and MaxRSS are awaited from accounting (slurmdbd
# may be down for hours; slurmctld keeps the records for it meanwhile)
FIGURES_WAIT_SECONDS = 24 * 3600
# the stage of a plain script submitted by hand (``baton slurm submit SCRIPT``): no
# experiment, no stage table, no supervision; followed by the tracker like any job
SCRIPT_STAGE = "script"


@dataclass(frozen=True)
class Claim:
    """The outcome of claiming a submission: the row, and whether this caller owns it."""

    row_id: int
    created: bool
    state: str
    job_id: str | None


class SlurmJobs(LedgerBase):
    def claim_submission(self, key: str, *, stage: str, experiment: str, backend: str,
                         attempt: int = 1, campaign: str | None = None,
                         req_cpus: int | None = None, req_mem_mb: float | None = None,
                         req_time_s: int | None = None, parent_id: int | None = None,
                         metadata: dict[str, Any] | None = None) -> Claim:
        """Claim the right to submit ``key``. Only the caller that gets ``created=True``
        submits; every other caller sees the existing row."""
        now = utcnow()
        row_id = self._insert_claim(dict(
            submission_key=key, stage=stage, experiment=experiment, campaign=campaign,
            attempt=attempt, backend=backend, state="SUBMITTING", req_cpus=req_cpus,
            req_mem_mb=req_mem_mb, req_time_s=req_time_s, parent_id=parent_id, restarts=0,
            created_at=now, updated_at=now, metadata=metadata))
        if row_id is not None:
            return Claim(row_id, True, "SUBMITTING", None)
        with self.read() as conn:
            row = conn.execute(select(slurm_jobs).where(
                slurm_jobs.c.submission_key == key)).one()
        if row.state == "SUBMIT_FAILED" and self._reclaim(row.id):
            return Claim(row.id, True, "SUBMITTING", None)
        return Claim(row.id, False, row.state, row.job_id)

    @transaction(duplicate=None)
    def _insert_claim(self, conn: Connection, values: dict[str, Any]) -> int | None:
        return int(conn.execute(insert(slurm_jobs).values(**values)).inserted_primary_key[0])

    @transaction()
    def _reclaim(self, conn: Connection, row_id: int) -> bool:
        """A submission Slurm never accepted may be tried again; one caller wins."""
        return conn.execute(update(slurm_jobs).where(
            slurm_jobs.c.id == row_id, slurm_jobs.c.state == "SUBMIT_FAILED").values(
            state="SUBMITTING", reason=None, ended_at=None, figures=None, updated_at=utcnow())
        ).rowcount == 1

    @transaction()
    def mark_submitted(self, conn: Connection, row_id: int, job_id: str, *,
                       script_path: str | None = None, stdout_path: str | None = None,
                       stderr_path: str | None = None, array_job_id: str | None = None,
                       array_task_id: int | None = None,
                       submitted_at: datetime | None = None) -> None:
        """Slurm's answer to a claim, recorded by its submitter (which then gives the
        claim's stage tasks their job id itself)."""
        conn.execute(update(slurm_jobs).where(slurm_jobs.c.id == row_id).values(
            job_id=job_id, state="PENDING", submitted_at=submitted_at or utcnow(),
            script_path=script_path, stdout_path=stdout_path, stderr_path=stderr_path,
            array_job_id=array_job_id, array_task_id=array_task_id, updated_at=utcnow()))

    @transaction()
    def adopt_job(self, conn: Connection, row_id: int, job_id: str, *,
                  array_job_id: str | None = None, array_task_id: int | None = None,
                  submitted_at: datetime | None = None) -> None:
        """The job of a claim whose submitter died before recording it, found by its token:
        recorded as the submitter would have, and the stage tasks written with the claim
        learn their job id with it (no retried run may come to fill it in: the request
        the dead run answered has its tasks)."""
        conn.execute(update(slurm_jobs).where(slurm_jobs.c.id == row_id).values(
            job_id=job_id, state="PENDING", submitted_at=submitted_at or utcnow(),
            array_job_id=array_job_id, array_task_id=array_task_id, updated_at=utcnow()))
        for table in (evaluation_jobs, analysis_jobs):
            conn.execute(update(table).where(table.c.slurm_job_row == row_id,
                                             table.c.slurm_job_id.is_(None))
                         .values(slurm_job_id=job_id))

    @transaction()
    def note_token(self, conn: Connection, row_ids: list[int], token: str) -> None:
        """Remember the comment a submission carries, to find it in the queue if the
        submitting process dies before Slurm's answer is recorded."""
        for index, row_id in enumerate(row_ids):
            meta = conn.execute(select(slurm_jobs.c.metadata).where(
                slurm_jobs.c.id == row_id)).scalar_one()
            conn.execute(update(slurm_jobs).where(slurm_jobs.c.id == row_id).values(
                metadata={**(meta or {}), "token": token, "task_index": index},
                updated_at=utcnow()))

    def stale_submissions(self, older_than_s: float) -> Sequence[Row[Any]]:
        """Claims still SUBMITTING long after they were made: their submitter died."""
        cutoff = utcnow() - timedelta(seconds=older_than_s)
        with self.read() as conn:
            return conn.execute(select(slurm_jobs).where(
                slurm_jobs.c.state == "SUBMITTING", slurm_jobs.c.updated_at < cutoff)
                .order_by(slurm_jobs.c.id)).all()

    @transaction()
    def release_claims(self, conn: Connection, row_ids: list[int]) -> None:
        """Give back claims whose sbatch never ran (the script could not be written...):
        nothing reached Slurm, so there is no submission to record, count or repair, and
        the key is free for the corrected retry. The stage tasks written with the claims go
        with them."""
        released = list(conn.execute(select(slurm_jobs.c.id).where(
            slurm_jobs.c.id.in_(row_ids), slurm_jobs.c.state == "SUBMITTING",
            slurm_jobs.c.job_id.is_(None))).scalars())
        if released:
            _drop_awaiting_tasks(conn, released)
            conn.execute(delete(slurm_jobs).where(slurm_jobs.c.id.in_(released)))

    @transaction()
    def mark_submit_failed(self, conn: Connection, row_id: int, reason: str) -> None:
        """A submission that never reached Slurm; the key stays taken (resubmit is a new
        attempt with its own key), and the reason is kept. The stage tasks claimed with it
        go: no job will answer them, and the retry that claims the key again writes them
        again (left queued, Slurm's word would fail them and fire their join)."""
        _drop_awaiting_tasks(conn, [row_id])
        conn.execute(update(slurm_jobs).where(slurm_jobs.c.id == row_id).values(
            state="SUBMIT_FAILED", reason=reason, ended_at=utcnow(),
            figures=FIGURES_UNAVAILABLE, updated_at=utcnow()))

    def job(self, row_id: int) -> Row[Any] | None:
        with self.read() as conn:
            return conn.execute(select(slurm_jobs).where(slurm_jobs.c.id == row_id)).first()

    def jobs_by_job_id(self, job_ids: Sequence[str]) -> dict[str, Row[Any]]:
        """The row of each Slurm job id found (the newest, should two backends have given
        the same id), in the order of ``job_ids``."""
        found: dict[str, Row[Any]] = {}
        wanted = list(dict.fromkeys(job_ids))
        with self.read() as conn:
            for i in range(0, len(wanted), 500):  # SQLite's bound on parameters
                for row in conn.execute(select(slurm_jobs).where(
                        slurm_jobs.c.job_id.in_(wanted[i:i + 500])).order_by(slurm_jobs.c.id)):
                    found[row.job_id] = row
        return {j: found[j] for j in wanted if j in found}

    def jobs(self, *, experiment: str | None = None, stage: str | None = None
             ) -> Sequence[Row[Any]]:
        q = select(slurm_jobs).order_by(slurm_jobs.c.id)
        if experiment is not None:
            q = q.where(slurm_jobs.c.experiment == experiment)
        if stage is not None:
            q = q.where(slurm_jobs.c.stage == stage)
        with self.read() as conn:
            return conn.execute(q).all()

    def unfinished_jobs(self, settle_seconds: float = FIGURES_WAIT_SECONDS
                        ) -> Sequence[Row[Any]]:
        """Jobs Slurm still has to tell us about: submitted and not in a final state, or
        final for less than ``settle_seconds`` without final figures (CPU time, MaxRSS):
        the end came from the controller while slurmdbd was down, or slurmdbd lags (a job
        killed by signal 9 needs its MaxRSS to tell over-memory from a crash). Indexed
        questions, so the cost follows the jobs in flight, not the history."""
        with self.read() as conn:
            open_ = conn.execute(select(slurm_jobs).where(OPEN_JOB)).all()
            lagging = conn.execute(select(slurm_jobs).where(
                FIGURES_AWAITED, FINAL_JOB, self._ended_since(settle_seconds))).all()
        return sorted((r for r in [*open_, *lagging] if r.job_id is not None),
                      key=lambda r: r.id)

    @staticmethod
    def _ended_since(seconds: float) -> Any:
        ended = func.coalesce(slurm_jobs.c.ended_at, slurm_jobs.c.updated_at)
        return ended > utcnow() - timedelta(seconds=seconds)

    @transaction()
    def give_up_figures(self, conn: Connection, settle_seconds: float = FIGURES_WAIT_SECONDS
                        ) -> list[Row[Any]]:
        """Finished jobs whose figures accounting did not give within ``settle_seconds``
        of their end: marked unavailable (never asked about again) and returned once, for
        the caller to say so."""
        c = slurm_jobs.c
        rows = conn.execute(select(slurm_jobs).where(
            FIGURES_AWAITED, FINAL_JOB, ~self._ended_since(settle_seconds)).order_by(c.id)).all()
        if rows:
            conn.execute(update(slurm_jobs).where(c.id.in_([r.id for r in rows])).values(
                figures=FIGURES_UNAVAILABLE, updated_at=utcnow()))
        return [r for r in rows if r.job_id is not None]  # the others never reached Slurm

    @transaction()
    def apply_statuses(self, conn: Connection, statuses: dict[str, JobStatus]) -> int:
        """Write what one batched Slurm poll said about our jobs; returns rows changed."""
        if not statuses:
            return 0
        n = 0
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

    def stream_job_rows(self) -> Iterator[Row[Any]]:
        """Every stage job row (plain scripts are not the pipeline's), with its training
        run's campaign (for jobs that name none), as they stream from the database: a
        reader holds one batch, not the history."""
        with self.read() as conn:
            yield from conn.execution_options(yield_per=STREAM_ROWS).execute(job_rows())


def job_rows(scripts: bool = False) -> Select[Any]:
    """The query of :meth:`SlurmJobs.stream_job_rows` (the exporter's job families), and
    of the plain scripts' rows too with ``scripts``."""
    j = slurm_jobs.c
    q = select(
        j.id, j.stage, j.state, j.reason, j.exit_code, j.exit_signal, j.max_rss_mb,
        j.req_mem_mb, j.submitted_at, j.started_at, j.ended_at, j.restarts,
        j.cpu_seconds, j.figures, func.coalesce(j.campaign, training_runs.c.campaign)
        .label("campaign"),
    ).outerjoin(training_runs, training_runs.c.experiment_name == j.experiment)
    return q if scripts else q.where(j.stage != SCRIPT_STAGE)


def _drop_awaiting_tasks(conn: Connection, row_ids: list[int]) -> None:
    """Remove the unanswered stage tasks (evaluation, analysis) of Slurm job rows that will
    never run a job."""
    for table in (evaluation_jobs, analysis_jobs):
        conn.execute(delete(table).where(table.c.slurm_job_row.in_(row_ids),
                                         table.c.status.not_in(("completed", "failed"))))
