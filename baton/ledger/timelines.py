"""Each training signal's way through the pipeline, from the stage tables: when it was
written, when its evaluation was first submitted, when that completed, when an analysis of
it completed (what the exporter's latency histograms are made of).

An evaluation answers a training signal (its ``trigger_key``) and is complete when every
task (one per checkpoint) completed, each task counted by its latest attempt: a repair is
recorded under ``{trigger}#attempt-{n}`` (:func:`baton.ledger.stages.repaired_trigger`)
and answers the same signal. A failed task nobody repaired leaves the evaluation
incomplete. The database aggregates the signals without a repair (almost all of them) and
the rows stream through one at a time; the few with a repair are followed attempt by
attempt in Python. The SQL is portable (SQLite and PostgreSQL): no boolean arithmetic."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, case, func, or_, select

from baton.ledger.base import LedgerBase
from baton.ledger.engine import STREAM_ROWS
from baton.ledger.schema import analysis_jobs, evaluation_jobs, signals, training_runs

# trained at, signal file mtime, evaluation first submitted, evaluated at, analysed at
Timeline = tuple[datetime | None, float | None, datetime | None, datetime | None,
                 datetime | None]
ATTEMPT = "#attempt-"
CHUNK = 500  # keys per IN list


def split_trigger(key: str) -> tuple[str, int]:
    """``"k#attempt-3"`` -> ``("k", 3)``; an original submission is attempt 1."""
    base, sep, n = key.partition(ATTEMPT)
    return base, int(n) if sep and n.isdigit() else 1


def eval_tasks() -> Any:
    """Per (trigger key, checkpoint): first submitted, last completed, rows not completed."""
    ej = evaluation_jobs.c
    return (select(ej.trigger_key.label("key"), func.min(ej.submitted_at).label("first"),
                   func.max(ej.completed_at).label("done"),
                   func.sum(case((ej.status == "completed", 0), else_=1)).label("open"))
            .where(ej.trigger_key.is_not(None))
            .group_by(ej.trigger_key, ej.checkpoint_path))


def analyses_done() -> Any:
    """Per trigger key: when an analysis of it last completed."""
    aj = analysis_jobs.c
    return (select(aj.trigger_key.label("key"), func.max(aj.completed_at).label("at"))
            .where(aj.status == "completed", aj.trigger_key.is_not(None),
                   aj.completed_at.is_not(None))
            .group_by(aj.trigger_key))


def evaluations(conn: Any, keys: list[str]
                ) -> tuple[dict[str, datetime], dict[str, datetime]]:
    """Per training signal among ``keys`` (signal keys and their repairs' keys): when its
    evaluation was first submitted, and when it completed (only the complete ones)."""
    tasks = eval_tasks().add_columns(evaluation_jobs.c.checkpoint_path)
    rows = []
    for i in range(0, len(keys), CHUNK):
        rows += conn.execute(tasks.where(
            evaluation_jobs.c.trigger_key.in_(keys[i:i + CHUNK]))).all()
    submitted: dict[str, datetime] = {}
    latest: dict[tuple[str, str | None], tuple[int, datetime | None, bool]] = {}
    for key, first, done_at, not_completed, checkpoint in rows:
        base, attempt = split_trigger(key)
        if first is not None and (base not in submitted or first < submitted[base]):
            submitted[base] = first
        task = latest.get((base, checkpoint))
        if task is None or attempt > task[0]:
            latest[(base, checkpoint)] = (attempt, done_at, not not_completed)
    incomplete = {base for (base, _), (_, done_at, ok) in latest.items()
                  if not ok or done_at is None}
    completed: dict[str, datetime] = {}
    for (base, _), (_, done_at, _) in latest.items():
        if base not in incomplete and done_at is not None:
            completed[base] = max(done_at, completed.get(base, done_at))
    return submitted, completed


def analyses(conn: Any, keys: list[str]) -> dict[str, datetime]:
    """Per training signal among ``keys``: when an analysis of its evaluation (any
    attempt) completed."""
    out: dict[str, datetime] = {}
    for i in range(0, len(keys), CHUNK):
        for key, done_at in conn.execute(analyses_done().where(
                analysis_jobs.c.trigger_key.in_(keys[i:i + CHUNK]))):
            base, _ = split_trigger(key)
            out[base] = max(done_at, out.get(base, done_at))
    return out


def repaired(conn: Any) -> tuple[set[str], list[str]]:
    """The training signals a repair answered (few), and every key their stage rows carry:
    these are followed attempt by attempt; the rest, one attempt each, in the database."""
    attempts = set()
    for table in (evaluation_jobs, analysis_jobs):
        attempts |= set(conn.execute(select(table.c.trigger_key).distinct().where(
            table.c.trigger_key.like(f"%{ATTEMPT}%"))).scalars())
    bases = {split_trigger(k)[0] for k in attempts}
    return bases, sorted(bases | attempts)


def per_signal(runs: ColumnElement[bool] | None = None) -> Any:
    """Per training run (those ``runs`` selects, else every one), in the database: its id,
    its signal's mtime, when its evaluation was first submitted, when it completed (if
    every checkpoint's task completed), when an analysis completed. Right for every signal
    without a repair (keys equal to the signal's)."""
    t = training_runs.c
    task, done = eval_tasks(), analyses_done()
    if runs is not None:  # only the stage rows of the runs read (by the trigger key index)
        keys = select(t.signal_key).where(runs, t.signal_key.is_not(None))
        task = task.where(evaluation_jobs.c.trigger_key.in_(keys))
        done = done.where(analysis_jobs.c.trigger_key.in_(keys))
    task = task.subquery()
    ev = (select(task.c.key, func.min(task.c.first).label("sub"),
                 func.max(task.c.done).label("done"),
                 func.sum(case((or_(task.c.open > 0, task.c.done.is_(None)), 1), else_=0))
                 .label("open"))
          .group_by(task.c.key).subquery())
    an = done.subquery()
    q = (select(t.id, t.signal_key, t.completed_at, signals.c.file_mtime, ev.c.sub,
                case((ev.c.open == 0, ev.c.done), else_=None), an.c.at)
         .select_from(training_runs
                      .outerjoin(signals, signals.c.idempotency_key == t.signal_key)
                      .outerjoin(ev, ev.c.key == t.signal_key)
                      .outerjoin(an, an.c.key == t.signal_key)))
    return q if runs is None else q.where(runs).order_by(t.id)


Repairs = tuple[set[str], dict[str, datetime], dict[str, datetime], dict[str, datetime]]


def repairs(conn: Any) -> Repairs:
    """The training signals a repair answered, and per such signal when its evaluation was
    first submitted, when it completed, when an analysis of it completed."""
    bases, keys = repaired(conn)
    return (bases, *evaluations(conn, keys), analyses(conn, keys))


def timelines(conn: Any, runs: ColumnElement[bool] | None = None,
              fixes: Repairs | None = None) -> Iterator[tuple[int, Timeline]]:
    """(training run id, :data:`Timeline`) of the runs ``runs`` selects (else every one),
    as they stream from the database; ``fixes``: :func:`repairs`, if already read."""
    bases, submitted, evaluated_at, analysed_at = fixes or repairs(conn)
    for run, key, trained, mtime, sub, evaluated, analysed in conn.execution_options(
            yield_per=STREAM_ROWS).execute(per_signal(runs)):
        if key in bases:
            sub, evaluated, analysed = (submitted.get(key), evaluated_at.get(key),
                                        analysed_at.get(key))
        yield run, (trained, mtime, sub, evaluated, analysed)


class Timelines(LedgerBase):
    def signal_timelines(self) -> Iterator[Timeline]:
        """One :data:`Timeline` per training run, as they stream from the database."""
        with self.read() as conn:
            for _, timeline in timelines(conn):
                yield timeline
