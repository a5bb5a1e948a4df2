"""The campaign control plane (the seed's ``production_overview``): campaigns register
themselves the first time a signal or a job names them, inactive until a curator switches
them on; curators set their display name, priority, notes, expected end and job count.

A type the configuration does not know is recorded in ``unknown_campaign_types`` and
counted, never dropped, and never stops the signal or the submission that carried it."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any

from sqlalchemy import Connection, Row, case, func, insert, select, update

from baton.config import CampaignConfig
from baton.errors import BatonError
from baton.ledger.base import LedgerBase, transaction, utcnow
from baton.ledger.engine import STREAM_ROWS
from baton.ledger.schema import (
    campaigns,
    checkpoints,
    slurm_jobs,
    training_runs,
    unknown_campaign_types,
)

log = logging.getLogger(__name__)
NO_CAMPAIGN = "none"
CHUNK = 5000  # experiments per IN list of a partial computation
EDITABLE = ("display_name", "priority", "notes", "started_at", "expected_end",
            "expected_jobs", "active")


@dataclass
class Progress:
    """Tasks of one (campaign, experiment, stage): a task is one evaluation of one
    checkpoint, or one analysis; its state is that of its latest attempt."""

    expected: int = 0
    states: Counter[str] = field(default_factory=Counter)

    def row(self) -> dict[str, int]:
        s = self.states
        return {"expected": self.expected, "submitted": sum(s.values()),
                "running": s["started"] + s["running"], "finished": s["finished"],
                "failed": s["failed"]}


Entries = dict[tuple[str, str], Progress]  # one experiment's (campaign, stage) -> Progress


@dataclass
class CampaignProgress:
    """The progress table's rows that were kept, and every campaign's totals."""

    tasks: dict[tuple[str, str, str], Progress] = field(default_factory=dict)
    finished: Counter[str] = field(default_factory=Counter)
    implied: Counter[str] = field(default_factory=Counter)  # tasks its experiments imply

    def add(self, experiment: str, entries: Entries, keep: bool) -> None:
        for (camp, stage), p in entries.items():
            self.finished[camp] += p.states["finished"]
            self.implied[camp] += max(p.expected, p.states.total())
            if keep:
                self.tasks[(camp, experiment, stage)] = p


def completion(rows: Sequence[Row[Any]], prog: CampaignProgress
               ) -> dict[tuple[str, str], tuple[int, int]]:
    """(tag, type) -> (finished, expected) for each registered campaign; expected is the
    curator's job count when set, else the tasks its experiments imply."""
    return {(r.tag, r.type): (prog.finished[r.tag], r.expected_jobs
                              if r.expected_jobs is not None else prog.implied[r.tag])
            for r in rows}


class Campaigns(LedgerBase):
    """The campaign control plane: registration, curators' fields, progress."""

    def note_campaign(self, tag: str | None, type_: str | None, source: str,
                      cfg: CampaignConfig) -> str:
        """Register ``tag`` (of ``type_``, else its known or the default type) if it is new.

        Returns "registered", "known", "unknown-type" or "none"; never raises, so a ledger
        hiccup here cannot stop a signal or a submission."""
        if not tag:
            return "none"
        try:
            if type_ is None:
                if self._campaign_types(tag):
                    return "known"
                type_ = cfg.default_type
            if type_ not in cfg.types:
                self._record_unknown_type(tag, type_, source)
                log.warning("campaign %s names the unknown type %r (%s); known types: %s. "
                            "Recorded in unknown_campaign_types; the work goes on", tag, type_,
                            source, ", ".join(cfg.types))
                return "unknown-type"
            return "registered" if self._register_campaign(tag, type_, source) else "known"
        except Exception as exc:  # the control plane must never block the pipeline
            log.error("could not register campaign %s (%s): %s", tag, source, exc)
            return "error"

    def _campaign_types(self, tag: str) -> list[str]:
        with self.read() as conn:
            return list(conn.execute(select(campaigns.c.type).where(campaigns.c.tag == tag))
                        .scalars())

    def _register_campaign(self, tag: str, type_: str, source: str) -> bool:
        if not self._insert_campaign(tag, type_, source):
            return False
        log.info("campaign %s (%s) registered, inactive until a curator activates it",
                 tag, type_)
        return True

    @transaction(duplicate=False)
    def _insert_campaign(self, conn: Connection, tag: str, type_: str, source: str) -> bool:
        conn.execute(insert(campaigns).values(
            tag=tag, type=type_, active=False, priority=0, registered_at=utcnow(),
            registered_by=source[:4096]))
        return True

    @transaction()
    def _record_unknown_type(self, conn: Connection, tag: str, type_: str, source: str
                             ) -> None:
        now = utcnow()
        u = unknown_campaign_types
        done = conn.execute(update(u).where(u.c.type == type_, u.c.tag == tag).values(
            occurrences=u.c.occurrences + 1, last_seen=now, source=source[:4096])).rowcount
        if not done:
            conn.execute(insert(u).values(type=type_, tag=tag, occurrences=1, first_seen=now,
                                          last_seen=now, source=source[:4096]))

    def list_campaigns(self, active_only: bool = False) -> Sequence[Row[Any]]:
        """Active campaigns first, in priority order (lower first), then the rest."""
        q = select(campaigns).order_by(campaigns.c.active.desc(), campaigns.c.priority,
                                       campaigns.c.tag, campaigns.c.type)
        if active_only:
            q = q.where(campaigns.c.active.is_(True))
        with self.read() as conn:
            return conn.execute(q).all()

    def unknown_types_seen(self) -> Sequence[Row[Any]]:
        with self.read() as conn:
            return conn.execute(select(unknown_campaign_types).order_by(
                unknown_campaign_types.c.last_seen.desc())).all()

    def update_campaign(self, tag: str, type_: str | None = None, **values: Any
                        ) -> list[Row[Any]]:
        """Set curator fields of ``tag`` (all its types, or ``type_``); returns the rows."""
        unknown = set(values) - set(EDITABLE)
        if unknown:
            raise ValueError(f"not editable: {', '.join(sorted(unknown))}")
        types = self._campaign_types(tag)
        if not types:
            raise BatonError(f"no campaign {tag!r} is registered (campaigns register themselves "
                             "when a signal or a job first names them; see `baton campaign list "
                             "--all`)")
        if type_ is not None and type_ not in types:
            raise BatonError(f"campaign {tag!r} has no type {type_!r}; it has: {', '.join(types)}")
        return self._update_campaign(tag, type_, values)

    @transaction()
    def _update_campaign(self, conn: Connection, tag: str, type_: str | None,
                         values: dict[str, Any]) -> list[Row[Any]]:
        where = [campaigns.c.tag == tag] + ([campaigns.c.type == type_] if type_ else [])
        conn.execute(update(campaigns).where(*where).values(**values))
        return list(conn.execute(select(campaigns).where(*where)).all())

    def campaign_progress(self, shown_state: Any,
                 keep: Callable[[Entries], bool] = lambda _: True) -> CampaignProgress:
        """Every experiment's tasks by (campaign, stage), added to the campaigns' totals; the
        rows of the experiments ``keep`` wants are kept (a large ledger holds a million).
        ``shown_state``: see :meth:`experiment_entries`."""
        out = CampaignProgress()
        for experiment, entries in self.experiment_entries(shown_state):
            out.add(experiment, entries, keep(entries))
        return out

    def experiment_entries(self, shown_state: Any, experiments: Collection[str] | None = None
                           ) -> Iterator[tuple[str, Entries]]:
        """(experiment, its tasks by (campaign, stage)) of every experiment, or of those
        among ``experiments`` (the exporter's running totals redo the experiments whose rows
        changed); an experiment with no job and no training run is not there.

        The database picks each task's latest attempt and counts them; the experiments stream
        in one at a time, so memory follows one experiment, not the history. ``shown_state
        (state, reason)`` maps a Slurm state to the dashboard's states (passed in so that the
        ledger does not depend on the exporter)."""
        if experiments is None:
            yield from self._entries(shown_state, None)
            return
        names = sorted(experiments)
        for i in range(0, len(names), CHUNK):
            yield from self._entries(shown_state, names[i:i + CHUNK])

    def _entries(self, shown_state: Any, names: list[str] | None
                 ) -> Iterator[tuple[str, Entries]]:
        j, t = slurm_jobs.c, training_runs.c
        checkpoint = func.coalesce(j.metadata["checkpoint"].as_string(), "")
        ranked = select(j.stage, j.experiment, j.campaign, j.state, case(
            (func.substr(j.reason, 1, 7) == "JobHeld", "JobHeld"), else_=None).label("held"),
            func.row_number().over(partition_by=[j.stage, j.experiment, checkpoint],
                                   order_by=[j.attempt.desc(), j.id.desc()]).label("n"),
        ).where(j.stage != "script")  # plain scripts belong to no experiment
        idle_where = ~select(j.id).where(j.experiment == t.experiment_name).exists()
        counted = select(checkpoints.c.training_run_id.label("run"), func.count().label("n"))
        if names is not None:
            ranked = ranked.where(j.experiment.in_(names))
            idle_where = idle_where & t.experiment_name.in_(names)
            counted = counted.where(checkpoints.c.training_run_id.in_(
                select(t.id).where(t.experiment_name.in_(names))))
        ranked_q = ranked.subquery()
        ckpts = counted.group_by(checkpoints.c.training_run_id).subquery()
        r = ranked_q.c
        tasks = (select(r.experiment, r.stage, t.id, t.campaign, ckpts.c.n, r.campaign, r.state,
                        r.held, func.count())
                 .select_from(ranked_q.outerjoin(training_runs, t.experiment_name == r.experiment)
                              .outerjoin(ckpts, ckpts.c.run == t.id))
                 .where(r.n == 1)
                 .group_by(r.experiment, r.stage, t.id, t.campaign, ckpts.c.n, r.campaign,
                           r.state, r.held)
                 .order_by(r.experiment))
        idle = (select(t.experiment_name, t.campaign, ckpts.c.n)
                .select_from(training_runs.outerjoin(ckpts, ckpts.c.run == t.id))
                .where(idle_where))
        with self.read() as conn:
            stream = conn.execution_options(yield_per=STREAM_ROWS).execute(tasks)
            for experiment, rows in groupby(stream, key=lambda row: row[0]):
                entries: Entries = defaultdict(Progress)
                for _, stage, run, run_camp, n_ckpts, job_camp, state, held, n in rows:
                    if run is not None:
                        camp = run_camp or NO_CAMPAIGN
                        entries[(camp, "evaluation")].expected = max(1, n_ckpts or 0)
                        entries[(camp, "analysis")].expected = 1
                    else:
                        camp = job_camp or NO_CAMPAIGN
                    entries[(camp, stage)].states[shown_state(state, held)] += n
                yield experiment, dict(entries)
            for experiment, run_camp, n_ckpts in conn.execution_options(
                    yield_per=STREAM_ROWS).execute(idle):  # trained, nothing submitted yet
                camp = run_camp or NO_CAMPAIGN
                yield experiment, {(camp, "evaluation"): Progress(expected=max(1, n_ckpts or 0)),
                                   (camp, "analysis"): Progress(expected=1)}
