"""The custom collector: every value is computed when Prometheus scrapes, from the ledger
(a few grouped queries), one cached queue snapshot shared by all scrapes, and the drive.
A part that fails (Slurm, ledger, drive) is reported down and left out; the scrape goes on."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from sqlalchemy import func, select

from baton.config import Config
from baton.exporter.control import campaign_metrics, status_metrics
from baton.exporter.families import (  # the buckets are imported from here (bench)
    LATENCY_BUCKETS,  # noqa: F401
    RATIO_BUCKETS,
    WAIT_BUCKETS,
    histogram,
    per_stage,
    seconds,
)
from baton.exporter.flows import flow_metrics
from baton.exporter.states import (
    DASHBOARD_STATES,
    FAILURE_REASONS,
    dashboard_state,
    failure_reason,
)
from baton.exporter.supervision import supervision_metrics
from baton.ledger import Ledger
from baton.ledger.schema import heartbeats, signals, slurm_jobs, training_runs

log = logging.getLogger(__name__)


class QueueSnapshot:
    """One Slurm queue query per ``ttl`` seconds, however many scrapes come."""

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
                 integrity_every: float = 600) -> None:
        self.config, self.ledger, self.queue = config, ledger, queue
        self.integrity_every = integrity_every
        self._integrity: tuple[float, bool] | None = None
        # Every submit failure this process has seen, as (row, ended_at) -> stage. Retrying
        # a claim turns its SUBMIT_FAILED row back into SUBMITTING (and a new failure gives
        # it a new ended_at), so counting the rows in that state now would make the
        # counter go down; counting the failures ever seen never does.
        self._submit_failures: dict[tuple[int, datetime | None], str] = {}
        self._submit_lock = threading.Lock()

    def describe(self) -> list[Metric]:
        return []  # computed at scrape time; nothing to pre-register

    def collect(self) -> Iterator[Metric]:
        start = time.monotonic()
        up = GaugeMetricFamily("baton_exporter_component_up",
                               "1 if the part of the scrape answered, 0 if it was left out",
                               labels=["component"])
        for component, part in (("ledger", self._ledger), ("slurm", self._queue),
                                ("drive", self._drive)):
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
        with self.ledger.read() as conn:
            jobs = conn.execute(select(
                slurm_jobs.c.id, slurm_jobs.c.stage, slurm_jobs.c.state, slurm_jobs.c.reason,
                slurm_jobs.c.exit_code, slurm_jobs.c.exit_signal, slurm_jobs.c.max_rss_mb,
                slurm_jobs.c.req_mem_mb,
                slurm_jobs.c.submitted_at, slurm_jobs.c.started_at, slurm_jobs.c.ended_at,
                slurm_jobs.c.restarts, slurm_jobs.c.cpu_seconds, slurm_jobs.c.campaign,
                slurm_jobs.c.experiment)).all()
            sigs = conn.execute(select(signals.c.kind, signals.c.status, func.count())
                                .group_by(signals.c.kind, signals.c.status)).all()
            beats = conn.execute(select(heartbeats.c.name, heartbeats.c.beat_at)).all()
            campaign_of = dict(conn.execute(select(training_runs.c.experiment_name,
                                                   training_runs.c.campaign)).all())
            flows = flow_metrics(conn)
            supervised = list(supervision_metrics(conn))
        yield from self._job_metrics(jobs)
        yield self._campaign_metric(jobs, campaign_of)
        fam = CounterMetricFamily("baton_signals", "signals seen, by kind and outcome",
                                  labels=["kind", "status"])
        for kind, status, n in sigs:
            fam.add_metric([kind, status], n)
        yield fam
        fam = GaugeMetricFamily("baton_sensor_heartbeat_timestamp_seconds",
                                "when each sensor last ticked", labels=["sensor"])
        for name, at in beats:
            fam.add_metric([name], at.timestamp())
        yield fam
        yield from flows
        yield from campaign_metrics(self.ledger)
        yield from status_metrics(self.ledger, self.config)
        yield from supervised
        yield self._integrity_metric()

    def _job_metrics(self, jobs: list[Any]) -> Iterator[Metric]:
        by_state: Counter[tuple[str, str]] = Counter()
        finished: Counter[str] = Counter()
        failed: Counter[tuple[str, str]] = Counter()
        restarts: Counter[str] = Counter()
        cpu: defaultdict[str, float] = defaultdict(float)
        waits: defaultdict[str, list[float]] = defaultdict(list)
        runs: defaultdict[str, list[float]] = defaultdict(list)
        ratios: defaultdict[str, list[float]] = defaultdict(list)
        ended: defaultdict[str, list[tuple[datetime, bool]]] = defaultdict(list)
        submit_failures: dict[tuple[int, datetime | None], str] = {}
        for j in jobs:
            shown = dashboard_state(j.state, j.reason)
            by_state[(j.stage, shown)] += 1
            restarts[j.stage] += j.restarts or 0
            cpu[j.stage] += j.cpu_seconds or 0.0
            if (w := seconds(j.submitted_at, j.started_at)) is not None:
                waits[j.stage].append(w)
            if j.ended_at is not None and (r := seconds(j.started_at, j.ended_at)) is not None:
                runs[j.stage].append(r)
            if j.max_rss_mb and j.req_mem_mb:
                ratios[j.stage].append(j.max_rss_mb / j.req_mem_mb)
            if shown == "finished":
                finished[j.stage] += 1
            elif shown == "failed" and j.state == "SUBMIT_FAILED":
                submit_failures[(j.id, j.ended_at)] = j.stage
            elif shown == "failed":
                failed[(j.stage, failure_reason(j.state, j.exit_code, j.exit_signal,
                                                j.max_rss_mb,
                                                j.req_mem_mb))] += 1
            if shown in ("finished", "failed") and j.ended_at is not None:
                ended[j.stage].append((j.ended_at, shown == "finished"))
        for stage, n in self._submit_failures_seen(submit_failures).items():
            failed[(stage, "submit_failed")] += n
        stages = sorted({j.stage for j in jobs} | {"evaluation", "analysis"}
                        | {stage for stage, _ in failed})
        fam = GaugeMetricFamily("baton_jobs", "Slurm jobs by stage and dashboard state",
                                labels=["stage", "state"])
        for stage in stages:
            for state in DASHBOARD_STATES:
                fam.add_metric([stage, state], by_state[(stage, state)])
        yield fam
        yield per_stage("baton_jobs_finished", "jobs that ended COMPLETED", finished, stages)
        fam = CounterMetricFamily("baton_jobs_failed", "jobs that ended without success",
                                  labels=["stage", "reason"])
        for stage in stages:  # every reason from zero, so rates and ratios always exist
            for reason in FAILURE_REASONS:
                fam.add_metric([stage, reason], failed[(stage, reason)])
        yield fam
        yield per_stage("baton_job_restarts", "times Slurm restarted a job", restarts, stages)
        yield per_stage("baton_job_cpu_seconds", "CPU time used by jobs", cpu, stages)
        yield histogram("baton_job_queue_wait_seconds", "submit to start", "stage", waits,
                         WAIT_BUCKETS)
        yield histogram("baton_job_run_seconds", "start to end", "stage", runs, WAIT_BUCKETS)
        yield histogram("baton_job_memory_used_ratio", "MaxRSS over requested memory",
                         "stage", ratios, RATIO_BUCKETS)
        consec = GaugeMetricFamily("baton_stage_consecutive_failures",
                                   "failures since the last success, per stage",
                                   labels=["stage"])
        last_ok = GaugeMetricFamily("baton_stage_last_success_timestamp_seconds",
                                    "when a job of the stage last succeeded", labels=["stage"])
        for stage in stages:
            events = sorted(ended[stage], reverse=True)
            n = 0
            for _, ok in events:
                if ok:
                    break
                n += 1
            consec.add_metric([stage], n)
            oks = [at for at, ok in events if ok]
            if oks:
                last_ok.add_metric([stage], oks[0].timestamp())
        yield consec
        yield last_ok
        now = datetime.now().astimezone()
        waiting = GaugeMetricFamily("baton_oldest_waiting_job_seconds",
                                    "age of the oldest job still pending or held",
                                    labels=["stage"])
        running = GaugeMetricFamily("baton_longest_running_job_seconds",
                                    "run time so far of the longest-running job",
                                    labels=["stage"])
        for stage in stages:
            pend = [now - j.submitted_at for j in jobs if j.stage == stage and j.submitted_at
                    and dashboard_state(j.state, j.reason) in ("pending", "held")]
            run = [now - j.started_at for j in jobs if j.stage == stage and j.started_at
                   and dashboard_state(j.state, j.reason) in ("started", "running")]
            waiting.add_metric([stage], max(pend).total_seconds() if pend else 0)
            running.add_metric([stage], max(run).total_seconds() if run else 0)
        yield waiting
        yield running

    def _submit_failures_seen(self, now: dict[tuple[int, datetime | None], str]
                              ) -> Counter[str]:
        """Submit failures per stage seen by this process (the ones in the ledger now and
        the ones since retried): a union, so concurrent scrapes agree in any order."""
        with self._submit_lock:
            self._submit_failures.update(now)
            return Counter(self._submit_failures.values())

    @staticmethod
    def _campaign_metric(jobs: list[Any], campaign_of: dict[str, str | None]) -> Metric:
        """Jobs per campaign, stage and state (experiments without a campaign: "none")."""
        counts: Counter[tuple[str, str, str]] = Counter()
        for j in jobs:
            camp = j.campaign or campaign_of.get(j.experiment) or "none"
            counts[(camp, j.stage, dashboard_state(j.state, j.reason))] += 1
        fam = GaugeMetricFamily("baton_campaign_jobs", "Slurm jobs by campaign, stage and "
                                "dashboard state", labels=["campaign", "stage", "state"])
        for (camp, stage, state), n in sorted(counts.items()):
            fam.add_metric([camp, stage, state], n)
        return fam

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
        fam = GaugeMetricFamily("baton_queue_jobs", "jobs in the Slurm queue (this user), by "
                                "state", labels=["state"])
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
