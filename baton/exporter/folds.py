"""Running totals of the ledger's settled history, so that a computation reads only what
changed: at 10^6 job rows the job and flow families cost a few thousand rows read, not a
pass over a million; the campaign progress is folded per experiment on top of them
(:mod:`baton.exporter.progress_fold`).

A job row that has settled (ended, with its final figures or none to come) and a training
signal that has been evaluated and analysed, or was trained over a week ago, never change
again. :class:`Fold` adds such a row to its totals once and remembers the highest row id
it has read; each computation reads the rows above it, the rows below it that had not
settled, and the ids missing below it for ``grace`` seconds (on PostgreSQL a transaction
takes its id when it inserts and may commit after later ids: a late commit is read as soon
as it is visible). The totals plus the rows that have not settled are what a scrape serves:
the numbers of a pass over every row.

:class:`RunningTotals` also rebuilds every fold from scratch every ``full_every`` seconds,
in a thread of its own while computations go on from the old ones (a rebuild at 10^6 rows
takes as long as a pass over the whole history): it catches what no id tells, a settled
row changed by hand (``baton db rebuild``), a late commit slower than ``grace``, rows
archived or deleted. The counters of archived job rows are added back
(:mod:`baton.exporter.archived`): a counter never goes down."""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from functools import partial
from typing import Any, Generic, Protocol, TypeVar

from baton.exporter import flows, job_tally
from baton.exporter.archived import ArchivedJobs
from baton.exporter.control import shown
from baton.exporter.flows import FlowTally
from baton.exporter.job_tally import JobTally
from baton.exporter.progress_fold import ProgressFold
from baton.ledger import Ledger
from baton.ledger.campaigns import CampaignProgress

log = logging.getLogger(__name__)
GRACE_SECONDS = 600.0  # how long an id missing below the mark is looked for again
FULL_EVERY_SECONDS = 3600.0  # default period of the full recomputation


class Tally(Protocol):
    def add(self, row: Any) -> None: ...


T = TypeVar("T", bound=Tally)
Read = Callable[[int, set[int]], Iterable[tuple[int, Any]]]


class Fold(Generic[T]):
    """One tally's settled rows, added once, and which rows to read next."""

    def __init__(self, new: Callable[[], T], read: Read, settled: Callable[[Any], bool],
                 grace: float = GRACE_SECONDS) -> None:
        self.new, self.read, self.settled, self.grace = new, read, settled, grace
        self._reset()

    def _reset(self) -> None:
        self.base = self.new()  # every settled row with an id up to ``high``
        self.high = 0  # the highest row id read
        self.open: set[int] = set()  # ids up to ``high`` read but not settled
        self.gaps: dict[int, float] = {}  # ids missing up to ``high``: when first missed

    def compute(self) -> T:
        """The tally of every row now: the settled ones folded in, plus the rest."""
        try:
            return self._compute(time.monotonic())
        except Exception:
            self._reset()
            raise  # half-added rows: the next computation starts from scratch

    def _compute(self, now: float) -> T:
        again = self.open | self.gaps.keys()
        unsettled: list[Any] = []
        open_ids: set[int] = set()
        gaps: dict[int, float] = {}
        found: set[int] = set()
        high = self.high
        for row_id, row in self.read(self.high, again):
            if row_id > self.high:  # in id order: the ids skipped are missing so far
                gaps.update(dict.fromkeys(range(high + 1, row_id), now))
                high = row_id
            else:
                found.add(row_id)
            if row is None:  # present, but none of this tally's
                continue
            if self.settled(row):
                self.base.add(row)
            else:
                open_ids.add(row_id)
                unsettled.append(row)
        gaps.update({i: at for i, at in self.gaps.items()
                     if i not in found and now - at < self.grace})
        self.high, self.open, self.gaps = high, open_ids, gaps
        out = copy.deepcopy(self.base)
        for row in unsettled:
            out.add(row)
        return out


class Names:
    """A tally of experiment names: the experiments whose rows a fold of ids read."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def add(self, name: str) -> None:
        self.names.add(name)


TRAINING_TABLES = ("training_runs", "training_generations", "checkpoints")


class Folds:
    """The folds of one build: jobs, timelines, and the campaign progress, which redoes
    the experiments whose rows the others (and the training tables') read."""

    def __init__(self, ledger: Ledger, grace: float, archived: ArchivedJobs | None = None
                 ) -> None:
        self.ledger, self.archived = ledger, archived
        self.stamps: tuple[str, ...] = ()  # the archive runs whose rows the job fold lacks
        self.touched: set[str] = set()
        # what the campaign progress reads of each job row not settled, as last read
        self.shown: dict[int, tuple[Any, ...]] = {}
        self.jobs = Fold(JobTally, self._job_rows, job_tally.settled, grace)
        self.timelines = Fold(FlowTally, ledger.timelines_from, flows.settled, grace)
        self.training = [Fold(Names, partial(ledger.experiments_from, table),
                              lambda _: True, grace) for table in TRAINING_TABLES]
        self.progress = ProgressFold(ledger, shown)
        self.whole = True  # the next progress computation starts from scratch

    def _jobs(self) -> JobTally:
        """The job tally, with the counters of the rows archived before the fold read the
        history: a fold built from scratch notes the archive runs the ledger records before
        and after its read (its rows are from one read: a run in between, read again)."""
        if self.archived is None:
            return self.jobs.compute()
        for _ in range(3):
            if self.jobs.high:  # built: archived since, its rows are in the fold
                break
            before = self.archived.stamps()
            tally = self.jobs.compute()
            if self.archived.stamps() == before:
                self.stamps = before
                return self.archived.add_to(tally, before)
            self.jobs = Fold(JobTally, self._job_rows, job_tally.settled, self.jobs.grace)
        return self.archived.add_to(self.jobs.compute(), self.stamps)

    def _job_rows(self, after: int, ids: set[int]) -> Iterator[tuple[int, Any]]:
        """The job fold's reads; an experiment is touched by a job row new to it or one
        whose state, hold or campaign changed (a row still running is read at every
        computation: its experiment is not redone for that)."""
        for row_id, row in self.ledger.job_rows_from(after, ids):
            if row is not None:
                shown = (row.state, (row.reason or "").startswith("JobHeld"), row.campaign)
                if self.shown.get(row_id) != shown:
                    self.touched.add(row.experiment)
                self.shown[row_id] = shown
            yield row_id, row

    def compute(self, active: Collection[str]
                ) -> tuple[JobTally, FlowTally, CampaignProgress]:
        self.touched = set()
        try:
            jobs = self._jobs()
            self.shown = {i: self.shown[i] for i in self.jobs.open if i in self.shown}
            timelines = self.timelines.compute()
            for fold in self.training:  # every row settles at once: taken, then let go
                self.touched |= fold.compute().names
                fold.base = Names()
            progress = self.progress.compute(None if self.whole else self.touched, active)
        except Exception:
            self.whole = True  # a fold started again: changes may have been missed
            raise
        self.whole = False
        return jobs, timelines, progress


class RunningTotals:
    """The job tally, the flow tally and the campaign progress of the ledger now, from
    folds rebuilt every ``full_every`` seconds."""

    def __init__(self, ledger: Ledger, full_every: float = FULL_EVERY_SECONDS,
                 grace: float = GRACE_SECONDS, archived: ArchivedJobs | None = None) -> None:
        """``archived``: the counters of archived job rows, added to the job tally."""
        self.ledger, self.full_every, self.grace = ledger, full_every, grace
        self.archived = archived
        self.lock = threading.Lock()
        self.folds = Folds(ledger, grace, archived)
        self.built_at: float | None = None  # monotonic time the folds were first computed
        self.rebuilding: threading.Thread | None = None

    def compute(self, active: Collection[str] = ()
                ) -> tuple[JobTally, FlowTally, CampaignProgress]:
        """The tallies now (one computation at a time: the exporter's snapshot thread);
        ``active``: the active campaigns (the progress table shows their experiments)."""
        with self.lock:
            folds = self.folds
            first = self.built_at is None
        out = folds.compute(active)
        with self.lock:
            now = time.monotonic()
            if first:
                self.built_at = now
            elif (now - (self.built_at or now) >= self.full_every
                  and self.rebuilding is None):
                self.rebuilding = threading.Thread(target=self._rebuild, args=(active,),
                                                   daemon=True, name="baton-exporter-rebuild")
                self.rebuilding.start()
        return out

    def _rebuild(self, active: Collection[str]) -> None:
        try:
            folds = Folds(self.ledger, self.grace, self.archived)
            folds.compute(active)
            with self.lock:
                self.folds, self.built_at = folds, time.monotonic()
        except Exception as exc:  # the old folds go on; tried again a period later
            log.warning("the exporter's full recomputation failed: %s", exc)
            with self.lock:
                self.built_at = time.monotonic()
        finally:
            with self.lock:
                self.rebuilding = None
