"""The ledger's history read a part at a time, for the exporter's running totals
(:mod:`baton.exporter.folds`, :mod:`baton.exporter.progress_fold`): the rows above the
highest one already read, in id order, and a few rows below it by id (those not yet
settled, and ids missing so far: a transaction that took an id may commit it later). Both
from one read transaction."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any

from sqlalchemy import ColumnElement, Row, select

from baton.ledger.base import LedgerBase
from baton.ledger.engine import STREAM_ROWS
from baton.ledger.schema import (
    checkpoints,
    maintenance_runs,
    slurm_jobs,
    training_generations,
    training_runs,
)
from baton.ledger.slurm_jobs import SCRIPT_STAGE, job_rows
from baton.ledger.timelines import Timeline, repairs, timelines

# ids per IN list: each list is one more scan of the stage tables (analysis_jobs has no
# index on its trigger key); three lists of it fit SQLite's 32,766 parameters
CHUNK = 5000


def _parts(id_column: Any, after: int, ids: Collection[int]) -> Iterator[ColumnElement[bool]]:
    yield id_column > after
    wanted = sorted(ids)
    for i in range(0, len(wanted), CHUNK):
        yield id_column.in_(wanted[i:i + CHUNK])


class History(LedgerBase):
    def job_rows_from(self, after: int, ids: Collection[int]
                      ) -> Iterator[tuple[int, Row[Any] | None]]:
        """(row id, row of :meth:`stream_job_rows` and its experiment) of the job rows
        above ``after`` (in id order), then of those among ``ids``; None for a plain
        script's row (not the pipeline's, but an id that is not missing)."""
        with self.read() as conn:
            for where in _parts(slurm_jobs.c.id, after, ids):
                for row in conn.execution_options(yield_per=STREAM_ROWS).execute(
                        job_rows(scripts=True).add_columns(slurm_jobs.c.experiment)
                        .where(where).order_by(slurm_jobs.c.id)):
                    yield row.id, None if row.stage == SCRIPT_STAGE else row

    def timelines_from(self, after: int, ids: Collection[int]
                       ) -> Iterator[tuple[int, Timeline]]:
        """(training run id, timeline) of the runs above ``after`` (in id order), then of
        those among ``ids``."""
        with self.read() as conn:
            fixes = repairs(conn)
            for where in _parts(training_runs.c.id, after, ids):
                yield from timelines(conn, where, fixes)

    def experiments_from(self, table: str, after: int, ids: Collection[int]
                         ) -> Iterator[tuple[int, str]]:
        """(row id, experiment) of the rows of ``table`` (training_runs,
        training_generations or checkpoints) above ``after`` (in id order), then of those
        among ``ids``: the experiments a new run, retrain or checkpoint changed."""
        if table == "checkpoints":
            c = checkpoints.c
            query = select(c.id, training_runs.c.experiment_name).join(
                training_runs, training_runs.c.id == c.training_run_id)
            id_column = c.id
        else:
            t = {"training_runs": training_runs,
                 "training_generations": training_generations}[table]
            query, id_column = select(t.c.id, t.c.experiment_name), t.c.id
        with self.read() as conn:
            for where in _parts(id_column, after, ids):
                for row in conn.execution_options(yield_per=STREAM_ROWS).execute(
                        query.where(where).order_by(id_column)):
                    yield row[0], row[1]

    def archive_stamps(self, table: str) -> list[str]:
        """The stamps of the archive runs that moved rows of ``table`` out, oldest first
        (each recorded in the transaction that deleted its rows)."""
        m = maintenance_runs.c
        with self.read() as conn:
            details = conn.execute(select(m.detail).where(
                m.kind == "archive", m.ok.is_(True)).order_by(m.id)).scalars().all()
        return [d["stamp"] for d in details if d and (d.get("rows") or {}).get(table)]
