"""Settled history: the rows ``baton db archive`` moves out of the ledger into Parquet.

A Slurm job is settled when it ended (a final state) before the cutoff; its evaluation
and analysis rows (with their results and outputs) and its supervisions go with it,
unless a row that stays refers to it: the set shrinks until no foreign key would dangle.
A status event is settled when it was reported before the cutoff and is not its job's
latest (the status pages and the overdue alert read the latest). A signal is settled
when it was seen before the cutoff and its file is gone from the drive: a signal still on
the drive is the ledger's memory that it was seen (without its row the next full rescan
would accept it again). Facts are once-only guards (a model reported, a join emitted, an
experiment adopted) and stay; so do the training tables (one row per experiment).

The rows leave in one transaction that also records the archive run: a crash before it
leaves every row in the ledger; after it, the record says the Parquet files are whole."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, delete, func, insert, select
from sqlalchemy.exc import IntegrityError

from baton.errors import BatonError
from baton.ledger.base import LedgerBase, transaction, utcnow
from baton.ledger.schema import (
    FINAL_JOB,
    analysis_jobs,
    analysis_outputs,
    evaluation_jobs,
    evaluation_results,
    facts,
    metadata,
    signals,
    slurm_jobs,
    status_events,
    supervisions,
)
from baton.ledger.upkeep import insert_run

# children first: the order rows are deleted in (and the tables an archive may write)
ARCHIVED = ("evaluation_results", "analysis_outputs", "supervisions", "analysis_jobs",
            "evaluation_jobs", "slurm_jobs", "status_events", "signals")
STAGE_DONE = ("completed", "failed")
SUPERVISION_LIVE = ("pending", "running", "open")
CHUNK = 5_000
ARCHIVED_FACT = "history_archived"

Plan = dict[str, list[int]]


class _Moved(Exception):
    """Planned rows were gone by the time of the delete."""


def _plain(value: object) -> object:
    return json.dumps(value) if isinstance(value, dict | list) else value


def _chunks(ids: list[int]) -> Iterator[list[int]]:
    for i in range(0, len(ids), CHUNK):
        yield ids[i:i + CHUNK]


def _ids(conn: Connection, query: Any) -> set[int]:
    return {r[0] for r in conn.execute(query)}


class Settled(LedgerBase):
    def settled(self, cutoff: datetime, signal_gone: Callable[[str], bool]) -> Plan:
        """The ids of every settled row before ``cutoff``, per table (see the module)."""
        with self.read() as conn:
            plan = self._jobs_closure(conn, cutoff)
            latest = select(func.max(status_events.c.id)).group_by(
                status_events.c.project, status_events.c.job).scalar_subquery()
            plan["status_events"] = sorted(_ids(conn, select(status_events.c.id).where(
                status_events.c.reported_at < cutoff, status_events.c.id.not_in(latest))))
            plan["signals"] = sorted(i for i, path in conn.execute(
                select(signals.c.id, signals.c.path).where(signals.c.seen_at < cutoff))
                if signal_gone(path))
        return plan

    def _jobs_closure(self, conn: Connection, cutoff: datetime) -> Plan:
        jobs = {r.id: r.parent_id for r in conn.execute(select(
            slurm_jobs.c.id, slurm_jobs.c.parent_id))}
        done = _ids(conn, select(slurm_jobs.c.id).where(
            FINAL_JOB, func.coalesce(slurm_jobs.c.ended_at, slurm_jobs.c.updated_at) < cutoff))
        evals = conn.execute(select(evaluation_jobs.c.id, evaluation_jobs.c.slurm_job_row,
                                    evaluation_jobs.c.status)).all()
        analyses = conn.execute(select(
            analysis_jobs.c.id, analysis_jobs.c.slurm_job_row, analysis_jobs.c.evaluation_job_id,
            analysis_jobs.c.status)).all()
        sups = conn.execute(select(
            supervisions.c.id, supervisions.c.job_row, supervisions.c.repair_row,
            supervisions.c.execution_status, supervisions.c.dispatch_status)).all()
        s = set(done)
        while True:
            e = {r.id for r in evals if r.slurm_job_row in s and r.status in STAGE_DONE}
            a = {r.id for r in analyses if r.slurm_job_row in s and r.status in STAGE_DONE
                 and (r.evaluation_job_id is None or r.evaluation_job_id in e)}
            e -= {r.evaluation_job_id for r in analyses if r.id not in a}
            v = {r.id for r in sups if r.job_row in s
                 and (r.repair_row is None or r.repair_row in s)
                 and r.execution_status not in SUPERVISION_LIVE
                 and r.dispatch_status not in ("pending", "retrying")}
            kept = {p for j, p in jobs.items() if j not in s}
            kept |= {r.slurm_job_row for r in evals if r.id not in e}
            kept |= {r.slurm_job_row for r in analyses if r.id not in a}
            kept |= {x for r in sups if r.id not in v for x in (r.job_row, r.repair_row)}
            smaller = s - kept
            if smaller == s:
                break
            s = smaller
        results = {i for chunk in _chunks(sorted(e)) for i in _ids(conn, select(
            evaluation_results.c.id).where(evaluation_results.c.evaluation_job_id.in_(chunk)))}
        outputs = {i for chunk in _chunks(sorted(a)) for i in _ids(conn, select(
            analysis_outputs.c.id).where(analysis_outputs.c.analysis_job_id.in_(chunk)))}
        return {"slurm_jobs": sorted(s), "evaluation_jobs": sorted(e),
                "analysis_jobs": sorted(a), "supervisions": sorted(v),
                "evaluation_results": sorted(results), "analysis_outputs": sorted(outputs)}

    def rows_of(self, table: str, ids: list[int]) -> Iterator[dict[str, Any]]:
        """The rows of ``table`` with these ids, in id order (JSON values as text)."""
        t = metadata.tables[table]
        with self.read() as conn:
            for chunk in _chunks(ids):
                for row in conn.execute(select(t).where(t.c.id.in_(chunk)).order_by(t.c.id)
                                        ).mappings():
                    yield {c.name: _plain(row[c.name]) for c in t.columns}

    def delete_settled(self, plan: Plan, started_at: datetime, detail: dict[str, Any]
                       ) -> None:
        """Delete the planned rows and record the archive run, in one transaction; a row
        gone, or referred to by a row written meanwhile, rolls it all back."""
        try:
            self._delete_settled(plan, started_at, detail)
        except (IntegrityError, _Moved) as exc:
            raise BatonError(f"the ledger changed while the archive was written ({exc}): "
                             "nothing was archived; run it again") from None

    @transaction()
    def _delete_settled(self, conn: Connection, plan: Plan, started_at: datetime,
                        detail: dict[str, Any]) -> None:
        experiments = {r[0] for chunk in _chunks(plan.get("evaluation_jobs", []))
                       for r in conn.execute(select(evaluation_jobs.c.experiment_name)
                                             .where(evaluation_jobs.c.id.in_(chunk)))}
        for name in ARCHIVED:
            table: Table = metadata.tables[name]
            ids = plan.get(name, [])
            gone = sum(conn.execute(delete(table).where(table.c.id.in_(chunk))).rowcount
                       for chunk in _chunks(ids))
            if gone != len(ids):
                raise _Moved(f"{name}: {len(ids) - gone} planned row(s) were gone")
        self._remember_evaluated(conn, experiments)
        insert_run(conn, "archive", True, started_at, detail=detail)

    @staticmethod
    def _remember_evaluated(conn: Connection, experiments: Iterable[str]) -> None:
        """An experiment whose evaluations left for the archive was evaluated: the hold on
        experiments the ledger knows no evaluation of must not catch it (see holds.py)."""
        keys = {f"archived:{e}": e for e in experiments}
        have = {r[0] for r in conn.execute(select(facts.c.key).where(
            facts.c.key.in_(sorted(keys))))} if keys else set()
        for key in sorted(set(keys) - have):
            conn.execute(insert(facts).values(key=key, kind=ARCHIVED_FACT,
                                              experiment=keys[key], created_at=utcnow()))
