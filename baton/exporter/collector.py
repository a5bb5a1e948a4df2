"""The custom collector: every value is computed when Prometheus scrapes, from the ledger
(a few grouped queries), one cached queue snapshot shared by all scrapes, and the drive.
A part that fails (Slurm, ledger, drive) is reported down and left out; the scrape goes on."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from sqlalchemy import func, select

from baton.config import Config
from baton.exporter.control import campaign_metrics, status_metrics
from baton.exporter.states import (
    DASHBOARD_STATES,
    FAILURE_REASONS,
    dashboard_state,
    failure_reason,
)
from baton.exporter.supervision import supervision_metrics
from baton.ledger import Ledger
from baton.ledger.schema import (
    analysis_jobs,
    evaluation_jobs,
    heartbeats,
    signals,
    slurm_jobs,
    training_runs,
)

log = logging.getLogger(__name__)
WAIT_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400,
                172800)
LATENCY_BUCKETS = (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600)
RATIO_BUCKETS = (0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.25, 1.5, 2.0)


class QueueSnapshot:
    """One Slurm queue query per ``ttl`` seconds, however many scrapes come."""

    def __init__(self, fetch: Callable[[], Counter[str]], ttl: float = 30) -> None:
        self.fetch, self.ttl = fetch, ttl
        self.lock = threading.Lock()
        self.at = 0.0
        self.states: Counter[str] | None = None
        self.error: str | None = None
        self.calls = 0

    def get(self) -> tuple[Counter[str] | None, str | None]:
        with self.lock:
            if time.monotonic() - self.at >= self.ttl:
                self.calls += 1
                try:
                    self.states, self.error = self.fetch(), None
                except Exception as exc:  # degrade: say so, keep the scrape
                    self.states, self.error = None, str(exc)
                    log.warning("queue snapshot failed: %s", exc)
                self.at = time.monotonic()
            return self.states, self.error


def _histogram(name: str, doc: str, label: str, values: dict[str, list[float]],
               buckets: tuple[float, ...]) -> HistogramMetricFamily:
    fam = HistogramMetricFamily(name, doc, labels=[label] if label else [])
    for key, vals in sorted(values.items()):
        counts = [sum(1 for v in vals if v <= b) for b in buckets]
        bucket_pairs = [(str(b), c) for b, c in zip(buckets, counts, strict=True)]
        bucket_pairs.append(("+Inf", len(vals)))
        fam.add_metric([key] if label else [], bucket_pairs, sum(vals))
    return fam


def _per_stage(name: str, doc: str, values: Mapping[str, float], stages: list[str]
               ) -> CounterMetricFamily:
    """A counter with one sample per stage, zero where nothing happened yet."""
    fam = CounterMetricFamily(name, doc, labels=["stage"])
    for stage in stages:
        fam.add_metric([stage], values.get(stage, 0))
    return fam


def _seconds(a: datetime | None, b: datetime | None) -> float | None:
    if a is None or b is None:
        return None
    return max(0.0, (b - a).total_seconds())


class BatonCollector:
    def __init__(self, config: Config, ledger: Ledger, queue: QueueSnapshot,
                 integrity_every: float = 600) -> None:
        self.config, self.ledger, self.queue = config, ledger, queue
        self.integrity_every = integrity_every
        self._integrity: tuple[float, bool] | None = None

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
                slurm_jobs.c.stage, slurm_jobs.c.state, slurm_jobs.c.reason,
                slurm_jobs.c.exit_signal, slurm_jobs.c.max_rss_mb, slurm_jobs.c.req_mem_mb,
                slurm_jobs.c.submitted_at, slurm_jobs.c.started_at, slurm_jobs.c.ended_at,
                slurm_jobs.c.restarts, slurm_jobs.c.cpu_seconds, slurm_jobs.c.campaign,
                slurm_jobs.c.experiment)).all()
            sigs = conn.execute(select(signals.c.kind, signals.c.status, func.count())
                                .group_by(signals.c.kind, signals.c.status)).all()
            beats = conn.execute(select(heartbeats.c.name, heartbeats.c.beat_at)).all()
            campaign_of = dict(conn.execute(select(training_runs.c.experiment_name,
                                                   training_runs.c.campaign)).all())
            flows = self._flows(conn)
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
        for j in jobs:
            shown = dashboard_state(j.state, j.reason)
            by_state[(j.stage, shown)] += 1
            restarts[j.stage] += j.restarts or 0
            cpu[j.stage] += j.cpu_seconds or 0.0
            if (w := _seconds(j.submitted_at, j.started_at)) is not None:
                waits[j.stage].append(w)
            if j.ended_at is not None and (r := _seconds(j.started_at, j.ended_at)) is not None:
                runs[j.stage].append(r)
            if j.max_rss_mb and j.req_mem_mb:
                ratios[j.stage].append(j.max_rss_mb / j.req_mem_mb)
            if shown == "finished":
                finished[j.stage] += 1
            elif shown == "failed":
                failed[(j.stage, failure_reason(j.state, j.exit_signal, j.max_rss_mb,
                                                j.req_mem_mb))] += 1
            if shown in ("finished", "failed") and j.ended_at is not None:
                ended[j.stage].append((j.ended_at, shown == "finished"))
        stages = sorted({j.stage for j in jobs} | {"evaluation", "analysis"})
        fam = GaugeMetricFamily("baton_jobs", "Slurm jobs by stage and dashboard state",
                                labels=["stage", "state"])
        for stage in stages:
            for state in DASHBOARD_STATES:
                fam.add_metric([stage, state], by_state[(stage, state)])
        yield fam
        yield _per_stage("baton_jobs_finished", "jobs that ended COMPLETED", finished, stages)
        fam = CounterMetricFamily("baton_jobs_failed", "jobs that ended without success",
                                  labels=["stage", "reason"])
        for stage in stages:  # every reason from zero, so rates and ratios always exist
            for reason in FAILURE_REASONS:
                fam.add_metric([stage, reason], failed[(stage, reason)])
        yield fam
        yield _per_stage("baton_job_restarts", "times Slurm restarted a job", restarts, stages)
        yield _per_stage("baton_job_cpu_seconds", "CPU time used by jobs", cpu, stages)
        yield _histogram("baton_job_queue_wait_seconds", "submit to start", "stage", waits,
                         WAIT_BUCKETS)
        yield _histogram("baton_job_run_seconds", "start to end", "stage", runs, WAIT_BUCKETS)
        yield _histogram("baton_job_memory_used_ratio", "MaxRSS over requested memory",
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

    def _flows(self, conn: Any) -> list[Metric]:
        """Latencies of the pipeline: signal to submission, stage to stage, end to end."""
        trig = conn.execute(select(
            training_runs.c.signal_key, training_runs.c.completed_at,
            signals.c.file_mtime).join(signals, signals.c.idempotency_key ==
                                       training_runs.c.signal_key, isouter=True)).all()
        evals = conn.execute(select(
            evaluation_jobs.c.trigger_key, func.min(evaluation_jobs.c.submitted_at),
            func.max(evaluation_jobs.c.completed_at),
            func.sum(func.coalesce(evaluation_jobs.c.completed_at.is_(None), 0)))
            .group_by(evaluation_jobs.c.trigger_key)).all()
        analyses = conn.execute(select(analysis_jobs.c.trigger_key,
                                       func.max(analysis_jobs.c.completed_at))
                                .where(analysis_jobs.c.status == "completed")
                                .group_by(analysis_jobs.c.trigger_key)).all()
        eval_by = {k: (s, e, open_) for k, s, e, open_ in evals}
        ana_by = dict(analyses)
        detect, t2e, e2a, end = [], [], [], []
        for key, trained, mtime in trig:
            ev = eval_by.get(key)
            if ev is None:
                continue
            submitted, evaluated, still_open = ev
            if mtime is not None and submitted is not None:
                detect.append(max(0.0, submitted.timestamp() - mtime))
            if still_open or evaluated is None:
                continue
            if (d := _seconds(trained, evaluated)) is not None:
                t2e.append(d)
            analysed = ana_by.get(key)
            if analysed is not None:
                e2a.append(_seconds(evaluated, analysed) or 0.0)
                end.append(_seconds(trained, analysed) or 0.0)
        unanswered = [trained for key, trained, _ in trig if trained is not None and (
            key not in eval_by or eval_by[key][2] or eval_by[key][1] is None)]
        oldest = (max(datetime.now().astimezone() - t for t in unanswered).total_seconds()
                  if unanswered else 0)
        return [
            GaugeMetricFamily("baton_oldest_unanswered_training_seconds",
                              "age of the oldest trained model without a completed evaluation",
                              value=oldest),
            _histogram("baton_signal_detection_latency_seconds",
                       "training signal written to evaluation submitted", "",
                       {"": detect}, LATENCY_BUCKETS),
            _histogram("baton_training_to_evaluation_seconds",
                       "training complete to evaluation complete", "", {"": t2e},
                       WAIT_BUCKETS),
            _histogram("baton_evaluation_to_analysis_seconds",
                       "evaluation complete to analysis complete", "", {"": e2a},
                       WAIT_BUCKETS),
            _histogram("baton_end_to_end_seconds", "training complete to analysis complete",
                       "", {"": end}, WAIT_BUCKETS),
        ]

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
