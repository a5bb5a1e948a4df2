"""What the status pages (``baton web``) read: one page of rows at a time, each query
bounded by its ``limit`` (one more row is read to tell whether a next page exists), so a
page costs the same with a long history as with a short one.

An experiment's state is computed in the database, so that a filter on it pages like any
other: ``waiting`` (the supervisor gave up on one of its jobs, or could not dispatch a
repair: a person must act), ``failed`` (its training failed, an evaluation task's latest
attempt failed, or its latest analysis did), ``complete`` (its latest analysis completed),
else ``running``. Only the stage rows of its latest training signal count (the signal's
key, or a repair's ``{key}#attempt-{n}``); an evaluation task is its checkpoint's latest
row, so a repaired failure no longer counts as one."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Row, and_, case, func, literal, or_, select, union

from baton.ledger.base import LedgerBase
from baton.ledger.schema import (
    OPEN_JOB,
    analysis_jobs,
    analysis_outputs,
    evaluation_jobs,
    signals,
    slurm_jobs,
    status_events,
    supervisions,
    training_runs,
)
from baton.slurm.states import FAILED_STATES

STATES = ("complete", "running", "failed", "waiting")
MAX_PAGE = 500  # rows a page may ask for, whatever its URL says
JOBS_PER_EXPERIMENT = 20  # the newest jobs shown (and linked to their logs) per experiment
TIMELINE_EVENTS = 12  # status reports drawn per job


@dataclass(frozen=True)
class Page:
    """One page of rows; ``more``: a next page exists."""

    rows: Sequence[Row[Any]]
    offset: int
    limit: int
    more: bool


@dataclass
class ExperimentDetail:
    """What a page shows beside an experiment's row: its newest jobs (for their logs), why
    it failed, and its report (the analysis output's id, its path)."""

    jobs: list[Row[Any]] = field(default_factory=list)
    reason: str | None = None
    report: tuple[int, str] | None = None
    analysis_run: str | None = None


def _page(conn: Any, query: Any, offset: int, limit: int) -> Page:
    limit = max(1, min(limit, MAX_PAGE))
    offset = max(0, offset)
    rows = conn.execute(query.offset(offset).limit(limit + 1)).all()
    return Page(rows[:limit], offset, limit, len(rows) > limit)


def _of_signal(trigger: Any, key: Any) -> ColumnElement[bool]:
    """A stage row answering the training signal ``key``: its key, or a repair's
    ``{key}#attempt-{n}`` (a range, so the comparison stays exact and portable)."""
    return or_(trigger == key, and_(trigger >= key + literal("#attempt-"),
                                    trigger < key + literal("#attempt.")))


def _awaits_person() -> ColumnElement[bool]:
    s = supervisions.c
    return or_(and_(s.action == "gave_up", s.execution_status == "open"),
               s.dispatch_status == "failed")


AWAITS_PERSON = _awaits_person()
WAITING = training_runs.c.experiment_name.in_(
    select(supervisions.c.experiment).where(AWAITS_PERSON))


def _maybe(state: str) -> ColumnElement[bool] | None:
    """For ``failed``, rare, the experiments that may be failed: those whose training or
    one of whose stage rows failed, each found through its table's status index (schema
    0012), so their number, not the history's length, bounds the work; the exact state is
    then computed for those only. Complete and running experiments are common: found among
    the first rows of the newest."""
    t = training_runs.c

    def named(table: Any) -> Any:
        return select(t.id).select_from(training_runs.join(
            table, table.c.experiment_name == t.experiment_name)).where(
            table.c.status == "failed")

    if state == "failed":
        return t.id.in_(union(select(t.id).where(t.status == "failed"),
                              named(evaluation_jobs), named(analysis_jobs)))
    return None


def experiment_columns() -> list[Any]:
    """Each experiment's row: its training run, its evaluation tasks (total, completed,
    failed), its latest analysis' status and whether a person must act, and its state."""
    t = training_runs.c
    e, later = evaluation_jobs.alias("e"), evaluation_jobs.alias("later")
    newer = select(later.c.id).where(
        later.c.experiment_name == e.c.experiment_name,
        func.coalesce(later.c.checkpoint_path, "") == func.coalesce(e.c.checkpoint_path, ""),
        _of_signal(later.c.trigger_key, t.signal_key), later.c.id > e.c.id).correlate(
        training_runs).exists()  # the outer query's run, two levels up: said explicitly
    task = and_(e.c.experiment_name == t.experiment_name,
                _of_signal(e.c.trigger_key, t.signal_key), ~newer)

    def tasks(*where: Any) -> Any:
        return select(func.count()).select_from(e).where(task, *where).scalar_subquery()

    a = analysis_jobs.alias("a")
    analysis = (select(a.c.status).where(a.c.experiment_name == t.experiment_name,
                                         _of_signal(a.c.trigger_key, t.signal_key))
                .order_by(a.c.id.desc()).limit(1).scalar_subquery())
    failed_tasks = tasks(e.c.status == "failed")
    state = case((WAITING, "waiting"),
                 (or_(t.status == "failed", failed_tasks > 0, analysis == "failed"), "failed"),
                 (analysis == "completed", "complete"), else_="running")
    return [t.id, t.experiment_name, t.campaign, t.user, t.status, t.completed_at,
            t.mlflow_run_id, t.total_steps, tasks().label("tasks"),
            tasks(e.c.status == "completed").label("tasks_done"),
            failed_tasks.label("tasks_failed"), analysis.label("analysis"),
            state.label("state")]


class WebQueries(LedgerBase):
    def experiments_page(self, *, name: str = "", campaign: str = "", user: str = "",
                         state: str = "", offset: int = 0, limit: int = 50) -> Page:
        """The newest experiments first, those matching every filter given (``name``: a
        part of the name; the others exactly)."""
        t = training_runs.c
        where = []
        if name:
            escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            where.append(t.experiment_name.like(f"%{escaped}%", escape="\\"))
        if campaign:
            where.append(t.campaign == campaign)
        if user:
            where.append(t.user == user)
        inner = select(*experiment_columns()).where(*where)
        with self.read() as conn:
            if state == "waiting":  # the condition is the state: its page's ids first,
                # so the state's columns are computed for that page only, not every match
                offset, limit = max(0, offset), max(1, min(limit, MAX_PAGE))
                ids = conn.execute(select(t.id).where(*where, WAITING).order_by(
                    t.id.desc()).offset(offset).limit(limit + 1)).scalars().all()
                rows = conn.execute(inner.where(t.id.in_(ids[:limit])).order_by(
                    t.id.desc())).all()
                return Page(rows, offset, limit, len(ids) > limit)
            q = inner.order_by(t.id.desc())
            if state:
                maybe = _maybe(state)
                sub = (inner if maybe is None else inner.where(maybe)).subquery()
                q = select(sub).where(sub.c.state == state).order_by(sub.c.id.desc())
            return _page(conn, q, offset, limit)

    def experiment_details(self, names: Sequence[str]) -> dict[str, ExperimentDetail]:
        """For a page's experiments: their newest jobs, the reason of their latest failure
        (the stage row's error, else Slurm's state and exit code, with the supervisor's
        decision) and their latest report."""
        out = {n: ExperimentDetail() for n in names}
        if not names:
            return out
        j = slurm_jobs.c
        ranked = select(slurm_jobs, func.row_number().over(
            partition_by=j.experiment, order_by=j.id.desc()).label("n")).where(
            j.experiment.in_(names)).subquery()
        errors = {}
        with self.read() as conn:
            for row in conn.execute(select(ranked).where(
                    ranked.c.n <= JOBS_PER_EXPERIMENT).order_by(ranked.c.id.desc())):
                out[row.experiment].jobs.append(row)
            for table in (evaluation_jobs, analysis_jobs):
                for exp, error, job_row in conn.execute(select(
                        table.c.experiment_name, table.c.error_message,
                        table.c.slurm_job_row).where(
                        table.c.experiment_name.in_(names), table.c.status == "failed")
                        .order_by(table.c.id)):
                    errors[(exp, job_row)] = error
            rows = [r.id for d in out.values() for r in d.jobs if r.state in FAILED_STATES]
            notes = {r.job_row: r for r in conn.execute(select(
                supervisions.c.job_row, supervisions.c.action, supervisions.c.note).where(
                supervisions.c.job_row.in_(rows)).order_by(supervisions.c.id))} if rows else {}
            for exp, mlflow_run, oid, path in conn.execute(
                    select(analysis_jobs.c.experiment_name, analysis_jobs.c.mlflow_run_id,
                           analysis_outputs.c.id, analysis_outputs.c.output_path)
                    .select_from(analysis_jobs.outerjoin(analysis_outputs, and_(
                        analysis_outputs.c.analysis_job_id == analysis_jobs.c.id,
                        analysis_outputs.c.output_type == "report")))
                    .where(analysis_jobs.c.experiment_name.in_(names))
                    .order_by(analysis_jobs.c.id, analysis_outputs.c.id)):
                detail = out[exp]
                detail.analysis_run = mlflow_run or detail.analysis_run
                if oid is not None:
                    detail.report = (oid, path)
        for exp, detail in out.items():
            detail.reason = _reason(exp, detail.jobs, errors, notes)
        return out

    def queue_page(self, offset: int = 0, limit: int = 100) -> Page:
        """Jobs not in a final state, in submission order (the tracker keeps their state,
        reason and figures: nothing here asks Slurm)."""
        with self.read() as conn:
            return _page(conn, select(slurm_jobs).where(OPEN_JOB).order_by(
                slurm_jobs.c.id), offset, limit)

    def queue_counts(self) -> dict[str, int]:
        """How many jobs are in each state not final. The rows are read through the index
        of open jobs and counted here: a GROUP BY on state would walk the state index,
        every job of the history."""
        counts: dict[str, int] = defaultdict(int)
        with self.read() as conn:
            for state in conn.execute(select(slurm_jobs.c.state).where(OPEN_JOB).order_by(
                    slurm_jobs.c.id)).scalars():
                counts[state] += 1
        return dict(counts)

    def failed_jobs_page(self, offset: int = 0, limit: int = 50) -> Page:
        """Jobs that failed, newest first."""
        with self.read() as conn:
            return _page(conn, select(slurm_jobs).where(slurm_jobs.c.state.in_(
                sorted(FAILED_STATES))).order_by(slurm_jobs.c.id.desc()), offset, limit)

    def failure_notes(self, jobs: Sequence[Row[Any]]
                      ) -> tuple[dict[int, str], dict[int, Row[Any]]]:
        """For a page of jobs: the error each one's stage row recorded (``.eval_failed``,
        a refused submission), and the supervisor's latest decision about each. Read by
        the experiments' index (the stage tables have none on the job's row)."""
        errors: dict[int, str] = {}
        decided: dict[int, Row[Any]] = {}
        if not jobs:
            return errors, decided
        rows, names = [j.id for j in jobs], sorted({j.experiment for j in jobs})
        with self.read() as conn:
            for table in (evaluation_jobs, analysis_jobs):
                for row, error in conn.execute(select(
                        table.c.slurm_job_row, table.c.error_message).where(
                        table.c.experiment_name.in_(names), table.c.slurm_job_row.in_(rows),
                        table.c.error_message.is_not(None))):
                    errors[row] = error
            for sup in conn.execute(select(supervisions).where(
                    supervisions.c.job_row.in_(rows)).order_by(supervisions.c.id)):
                decided[sup.job_row] = sup
        return errors, decided

    def awaiting_people(self, limit: int = 100) -> Sequence[Row[Any]]:
        """Supervisions a person must look at, newest first: give-ups not dismissed, and
        repairs whose dispatch failed."""
        with self.read() as conn:
            return conn.execute(select(supervisions).where(AWAITS_PERSON).order_by(
                supervisions.c.id.desc()).limit(
                min(limit, MAX_PAGE))).all()

    def quarantined_page(self, offset: int = 0, limit: int = 50) -> Page:
        with self.read() as conn:
            return _page(conn, select(signals).where(signals.c.status == "quarantined")
                         .order_by(signals.c.id.desc()), offset, limit)

    def status_page(self, offset: int = 0, limit: int = 100) -> tuple[Page, dict[
            tuple[str, str], list[Row[Any]]]]:
        """Each (project, job)'s latest report, and its last reports (oldest first) for
        its timeline; each read by the (project, job, time) index."""
        ev = status_events.c
        latest = (select(ev.project, ev.job, func.max(ev.reported_at).label("at"))
                  .group_by(ev.project, ev.job).subquery())
        q = (select(status_events).join(latest, and_(
            ev.project == latest.c.project, ev.job == latest.c.job,
            ev.reported_at == latest.c.at)).order_by(ev.project, ev.job, ev.id.desc()))
        history: dict[tuple[str, str], list[Row[Any]]] = {}
        with self.read() as conn:
            page = _page(conn, q, offset, limit)
            rows = []
            for r in page.rows:  # two reports made at the same moment: the later one
                if (r.project, r.job) not in history:
                    rows.append(r)
                    history[(r.project, r.job)] = conn.execute(select(status_events).where(
                        ev.project == r.project, ev.job == r.job).order_by(
                        ev.reported_at.desc(), ev.id.desc()).limit(TIMELINE_EVENTS)
                    ).all()[::-1]
        return Page(rows, page.offset, page.limit, page.more), history

    def campaign_completion(self, tags: Sequence[str]) -> dict[str, tuple[int, int]]:
        """Per campaign tag among ``tags``: (experiments whose latest analysis completed,
        experiments trained)."""
        if not tags:
            return {}
        cols = {c.name: c for c in experiment_columns()}
        t = training_runs.c
        sub = select(t.campaign, cols["state"]).where(t.campaign.in_(list(tags))).subquery()
        with self.read() as conn:
            return {c: (int(done or 0), int(n)) for c, done, n in conn.execute(select(
                sub.c.campaign, func.sum(case((sub.c.state == "complete", 1), else_=0)),
                func.count()).group_by(sub.c.campaign))}

    def job_log_paths(self, job_id: str) -> Row[Any] | None:
        """The newest row of Slurm job ``job_id``: where the ledger says it writes."""
        with self.read() as conn:
            return conn.execute(select(
                slurm_jobs.c.id, slurm_jobs.c.job_id, slurm_jobs.c.experiment, slurm_jobs.c.stage,
                slurm_jobs.c.state, slurm_jobs.c.stdout_path, slurm_jobs.c.stderr_path)
                .where(slurm_jobs.c.job_id == job_id).order_by(slurm_jobs.c.id.desc())
                .limit(1)).first()

    def analysis_files(self, analysis_output: int) -> tuple[str, list[str]] | None:
        """The path of analysis output ``analysis_output`` and those of every output of the
        same analysis (what its report may link to), or None."""
        ao = analysis_outputs.c
        with self.read() as conn:
            row = conn.execute(select(ao.analysis_job_id, ao.output_path).where(
                ao.id == analysis_output)).first()
            if row is None:
                return None
            return row.output_path, list(conn.execute(select(ao.output_path).where(
                ao.analysis_job_id == row.analysis_job_id)).scalars())


def _reason(experiment: str, jobs: Sequence[Row[Any]], errors: dict[tuple[str, int], str],
            notes: dict[int, Row[Any]]) -> str | None:
    """Why the experiment's newest failed job failed, in words."""
    for job in jobs:  # newest first
        if job.state not in FAILED_STATES:
            continue
        words = errors.get((experiment, job.id)) or job.reason or ""
        said = f"{job.stage} job {job.job_id or '-'} {job.state}"
        if job.exit_code not in (None, 0):
            said += f" (exit {job.exit_code})"
        if words:
            said += f": {words}"
        note = notes.get(job.id)
        if note is not None:
            said += f"; supervisor: {note.action}" + (f" ({note.note})" if note.note else "")
        return said
    for (exp, _), error in errors.items():  # a failure recorded without a job
        if exp == experiment and error:
            return error
    return None
