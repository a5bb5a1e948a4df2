"""The custom collector: the ledger's numbers (the jobs and the signals' timelines from
running totals of their settled history, baton/exporter/folds.py, and a few grouped
queries, computed off the scrape's clock: baton/exporter/snapshot.py), one cached
queue snapshot shared by all scrapes, and the drive. A part that fails (Slurm, ledger,
drive) is reported down and left out; the scrape goes on."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)

from baton.config import Config
from baton.exporter.archived import ArchivedJobs
from baton.exporter.control import (
    active_campaigns,
    campaign_metrics,
    status_metrics,
    whole_progress,
)
from baton.exporter.flows import FlowTally
from baton.exporter.folds import FULL_EVERY_SECONDS, RunningTotals
from baton.exporter.job_tally import JobTally, SubmitFailure
from baton.exporter.lifetime import lifetime_metrics
from baton.exporter.repairs import supervision_metrics
from baton.exporter.requests import runs_given_up
from baton.exporter.schedule import schedule_metrics
from baton.exporter.slurm_calls import slurm_call_metrics
from baton.exporter.snapshot import Snapshot
from baton.jobstatus.ingest import set_aside_files
from baton.ledger import Ledger
from baton.maintenance.archive import archive_dir
from baton.slurm.states import ACTIVE_STATES

log = logging.getLogger(__name__)


def tracked_queue(ledger: Ledger) -> Counter[str]:
    """baton's jobs in the Slurm queue by state, as the tracker last saw them (the
    ledger): the exporter asks Slurm nothing, however often it is scraped."""
    return Counter(r.state for r in ledger.unfinished_jobs() if r.state in ACTIVE_STATES)


class QueueSnapshot:
    """One queue reading per ``ttl`` seconds, however many scrapes come."""

    def __init__(self, fetch: Callable[[], Counter[str]], ttl: float = 30) -> None:
        self.fetch, self.ttl = fetch, ttl
        self.lock = threading.Lock()
        self.at: float | None = None  # when the last fetch ended
        self.states: Counter[str] | None = None
        self.error: str | None = None
        self.calls = 0

    def get(self) -> tuple[Counter[str] | None, str | None]:
        with self.lock:
            if self.at is None or time.monotonic() - self.at >= self.ttl:
                self.calls += 1
                try:
                    self.states, self.error = self.fetch(), None
                except Exception as exc:  # degrade: say so, keep the scrape
                    self.states, self.error = None, str(exc)
                    log.warning("queue snapshot failed: %s", exc)
                self.at = time.monotonic()
            return self.states, self.error


class BatonCollector:
    def __init__(self, config: Config, ledger: Ledger, queue: QueueSnapshot,
                 integrity_every: float = 600, ledger_wait: float = 5.0,
                 full_every: float | None = FULL_EVERY_SECONDS) -> None:
        """``full_every``: seconds between two full recomputations of the running totals;
        None: no running totals, every computation reads the whole history."""
        self.config, self.ledger, self.queue = config, ledger, queue
        self.archived = ArchivedJobs(ledger, archive_dir(config))
        self.totals = (None if full_every is None
                       else RunningTotals(ledger, full_every, archived=self.archived))
        self.integrity_every = integrity_every
        self._integrity: tuple[float, bool] | None = None
        # Every submit failure this process has seen, as (row, ended_at) -> stage. Retrying
        # a claim turns its SUBMIT_FAILED row back into SUBMITTING (and a new failure gives
        # it a new ended_at), so counting the rows in that state now would make the
        # counter go down; counting the failures ever seen never does.
        self._submit_failures: dict[SubmitFailure, str] = {}
        self._submit_lock = threading.Lock()
        self.snapshot = Snapshot(self.compute_ledger, wait=ledger_wait)

    def describe(self) -> list[Metric]:
        return []  # computed at scrape time; nothing to pre-register

    def collect(self) -> Iterator[Metric]:
        start = time.monotonic()
        up = GaugeMetricFamily("baton_exporter_component_up",
                               "1 if the part of the scrape answered, 0 if it was left out",
                               labels=["component"])
        for component, part in (("ledger", self._ledger), ("slurm", self._queue),
                                ("drive", self._drive),
                                ("slurm_calls", lambda: slurm_call_metrics(self.config))):
            try:
                yield from part()
                up.add_metric([component], 1)
            except Exception as exc:
                log.warning("%s metrics left out of this scrape: %s", component, exc)
                up.add_metric([component], 0)
        yield up
        yield GaugeMetricFamily("baton_exporter_scrape_duration_seconds",
                                "time this exporter took to compute the scrape",
                                value=time.monotonic() - start)

    # --- the ledger ----------------------------------------------------------------------
    def _ledger(self) -> Iterator[Metric]:
        families, age = self.snapshot.get()
        yield from families
        yield GaugeMetricFamily("baton_exporter_ledger_age_seconds",
                                "age of the ledger's numbers in this scrape (they are "
                                "computed off the scrape; see baton/exporter/snapshot.py)",
                                value=age)

    def compute_ledger(self) -> list[Metric]:
        """Every family computed from the ledger, now."""
        campaigns = self.ledger.list_campaigns()
        active = active_campaigns(campaigns)
        if self.totals is not None:
            tally, timelines, progress = self.totals.compute(active)
        else:
            stamps = self.archived.stamps()  # before the pass, which lacks their rows
            tally = self.archived.add_to(JobTally().add_all(self.ledger.stream_job_rows()),
                                         stamps)
            timelines = FlowTally().add_all(self.ledger.signal_timelines())
            progress = whole_progress(self.ledger, active)
        sigs = self.ledger.signal_counts()
        beats = self.ledger.heartbeats()
        out = timelines.families()
        out += supervision_metrics(self.ledger)
        out += tally.families(self._submit_failures_seen(tally.submit_failures),
                              datetime.now().astimezone())
        fam = CounterMetricFamily("baton_signals", "signals seen, by kind and outcome",
                                  labels=["kind", "status"])
        for kind, status, n in sigs:
            fam.add_metric([kind, status], n)
        out.append(fam)
        fam = GaugeMetricFamily("baton_sensor_heartbeat_timestamp_seconds",
                                "when each sensor last ticked", labels=["sensor"])
        for name, at in beats.items():
            fam.add_metric([name], at.timestamp())
        out.append(fam)
        held = self.ledger.held_experiments()
        out.append(GaugeMetricFamily(
            "baton_experiments_held", "experiments the training sensor holds (submits "
            "nothing for) because the drive has results the ledger does not know: run "
            "`baton db rebuild`, or `baton db adopt`", value=len(held)))
        out.append(runs_given_up(self.ledger))
        out += campaign_metrics(self.ledger, campaigns, progress)
        out += schedule_metrics(self.ledger)
        out += status_metrics(self.ledger, self.config)
        out.append(self._integrity_metric())
        out += lifetime_metrics(self.ledger)
        return out

    def _submit_failures_seen(self, now: dict[SubmitFailure, str]) -> Counter[str]:
        """Submit failures per stage seen by this process (the ones in the ledger now and
        the ones since retried): a union, so concurrent scrapes agree in any order."""
        with self._submit_lock:
            self._submit_failures.update(now)
            return Counter(self._submit_failures.values())

    def _integrity_metric(self) -> Metric:
        now = time.monotonic()
        if self._integrity is None or now - self._integrity[0] > self.integrity_every:
            self._integrity = (now, self.ledger.check().ok)
        return GaugeMetricFamily("baton_ledger_integrity_ok",
                                 "1 if the last ledger integrity check passed",
                                 value=1 if self._integrity[1] else 0)

    # --- Slurm and the drive -------------------------------------------------------------
    def _queue(self) -> Iterator[Metric]:
        states, error = self.queue.get()
        if states is None:
            raise RuntimeError(error or "no queue snapshot")
        fam = GaugeMetricFamily("baton_queue_jobs", "baton's jobs in the Slurm queue, by "
                                "state, as the tracker last saw them", labels=["state"])
        for state, n in sorted(states.items()):
            fam.add_metric([state.lower()], n)
        yield fam
        yield GaugeMetricFamily("baton_queue_depth", "jobs waiting in the Slurm queue",
                                value=states.get("PENDING", 0))

    def _drive(self) -> Iterator[Metric]:
        usage = shutil.disk_usage(self.config.shared_drive)
        yield GaugeMetricFamily("baton_shared_drive_free_ratio",
                                "free space on the shared drive, 0..1",
                                value=usage.free / usage.total)
        yield GaugeMetricFamily("baton_shared_drive_free_bytes", "free bytes on the drive",
                                value=usage.free)
        yield GaugeMetricFamily("baton_status_rejected_files", "status spool files ingestion "
                                "set aside in status/rejected/ (each with its .reason), "
                                "waiting for an operator",
                                value=set_aside_files(self.config.shared_drive))
