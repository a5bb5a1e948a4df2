"""The families of the ``slurm_jobs`` table, from one pass over its rows as they stream
from the database (``Ledger.stream_job_rows``): a row is counted and dropped, so a scrape
holds counters and bucket counts, not the ledger's history (a lab's ledger holds millions
of job rows). Every count is a sum over rows, in any order, so the exporter's running
totals (:mod:`baton.exporter.folds`) add the settled rows once and keep them."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from baton.exporter.dashboard import (
    DASHBOARD_STATES,
    FAILURE_REASONS,
    dashboard_state,
    failure_reason,
)
from baton.exporter.families import (
    RATIO_BUCKETS,
    WAIT_BUCKETS,
    histogram,
    observations,
    per_stage,
    seconds,
)
from baton.slurm.states import TERMINAL_STATES

SubmitFailure = tuple[int, datetime | None]  # (row, ended_at): one failed submit try


def settled(r: Any) -> bool:
    """Ended for good, with its final figures (CPU time, MaxRSS) or none to come: nothing
    more changes in the row. A claim that never reached Slurm (SUBMIT_FAILED) may be tried
    again, so it never settles."""
    return r.state in TERMINAL_STATES and r.state != "SUBMIT_FAILED" and r.figures is not None


class JobTally:
    """Counts of job rows, added one at a time."""

    def __init__(self) -> None:
        self.by_state: Counter[tuple[str, str]] = Counter()
        self.by_campaign: Counter[tuple[str, str, str]] = Counter()
        self.finished: Counter[str] = Counter()
        self.failed: Counter[tuple[str, str]] = Counter()
        self.restarts: Counter[str] = Counter()
        self.cpu: defaultdict[str, float] = defaultdict(float)
        self.waits = observations(WAIT_BUCKETS)
        self.runs = observations(WAIT_BUCKETS)
        self.ratios = observations(RATIO_BUCKETS)
        self.last_ok: dict[str, datetime] = {}
        self.fails_after_ok: defaultdict[str, list[datetime]] = defaultdict(list)
        self.oldest_waiting: dict[str, datetime] = {}
        self.oldest_running: dict[str, datetime] = {}
        self.submit_failures: dict[SubmitFailure, str] = {}

    def add_all(self, rows: Iterable[Any]) -> JobTally:
        for row in rows:
            self.add(row)
        return self

    def add(self, r: Any) -> None:
        stage = r.stage
        shown = dashboard_state(r.state, r.reason)
        self.by_state[(stage, shown)] += 1
        self.by_campaign[(r.campaign or "none", stage, shown)] += 1
        self.restarts[stage] += r.restarts or 0
        self.cpu[stage] += r.cpu_seconds or 0.0
        if (w := seconds(r.submitted_at, r.started_at)) is not None:
            self.waits[stage].add(w)
        if r.ended_at is not None and (d := seconds(r.started_at, r.ended_at)) is not None:
            self.runs[stage].add(d)
        if r.max_rss_mb and r.req_mem_mb:
            self.ratios[stage].add(r.max_rss_mb / r.req_mem_mb)
        if shown == "finished":
            self.finished[stage] += 1
            if r.ended_at is not None:
                self._succeeded(stage, r.ended_at)
        elif shown == "failed":
            if r.state == "SUBMIT_FAILED":
                self.submit_failures[(r.id, r.ended_at)] = stage
            else:
                self.failed[(stage, failure_reason(r.state, r.exit_code, r.exit_signal,
                                                   r.max_rss_mb, r.req_mem_mb))] += 1
            if r.ended_at is not None and (stage not in self.last_ok
                                           or r.ended_at > self.last_ok[stage]):
                self.fails_after_ok[stage].append(r.ended_at)
        elif shown in ("pending", "held") and r.submitted_at is not None:
            _keep_oldest(self.oldest_waiting, stage, r.submitted_at)
        elif shown in ("started", "running") and r.started_at is not None:
            _keep_oldest(self.oldest_running, stage, r.started_at)

    def add_counters(self, other: JobTally) -> None:
        """Add ``other``'s counters and histograms (rows no longer in the ledger: archived);
        the gauges, which say what the ledger holds now, stay this tally's."""
        for mine, theirs in ((self.finished, other.finished), (self.failed, other.failed),
                             (self.restarts, other.restarts)):
            mine.update(theirs)
        for stage, seconds_ in other.cpu.items():
            self.cpu[stage] += seconds_
        for mine_obs, theirs_obs in ((self.waits, other.waits), (self.runs, other.runs),
                                     (self.ratios, other.ratios)):
            for stage, obs in theirs_obs.items():
                mine_obs[stage].merge(obs)
        self.submit_failures.update(other.submit_failures)

    def _succeeded(self, stage: str, at: datetime) -> None:
        if stage in self.last_ok and at <= self.last_ok[stage]:
            return
        self.last_ok[stage] = at
        self.fails_after_ok[stage] = [t for t in self.fails_after_ok[stage] if t > at]

    def families(self, submit_failures: Counter[str], now: datetime) -> Iterator[Metric]:
        """``submit_failures``: per stage, every failed submit try the exporter has seen
        (a retried claim leaves the ledger's failed state, the counter must not go down)."""
        failed = self.failed.copy()
        for stage, n in submit_failures.items():
            failed[(stage, "submit_failed")] += n
        stages = sorted({s for s, _ in self.by_state} | {"evaluation", "analysis"}
                        | {s for s, _ in failed} | set(self.finished) | set(self.restarts)
                        | set(self.cpu))
        fam = GaugeMetricFamily("baton_jobs", "Slurm jobs by stage and dashboard state",
                                labels=["stage", "state"])
        for stage in stages:
            for state in DASHBOARD_STATES:
                fam.add_metric([stage, state], self.by_state[(stage, state)])
        yield fam
        yield per_stage("baton_jobs_finished", "jobs that ended COMPLETED", self.finished,
                        stages)
        fam = CounterMetricFamily("baton_jobs_failed", "jobs that ended without success",
                                  labels=["stage", "reason"])
        for stage in stages:  # every reason from zero, so rates and ratios always exist
            for reason in FAILURE_REASONS:
                fam.add_metric([stage, reason], failed[(stage, reason)])
        yield fam
        yield per_stage("baton_job_restarts", "times Slurm restarted a job", self.restarts,
                        stages)
        yield per_stage("baton_job_cpu_seconds", "CPU time used by jobs", self.cpu, stages)
        yield histogram("baton_job_queue_wait_seconds", "submit to start", "stage",
                        self.waits)
        yield histogram("baton_job_run_seconds", "start to end", "stage", self.runs)
        yield histogram("baton_job_memory_used_ratio", "MaxRSS over requested memory",
                        "stage", self.ratios)
        consec = GaugeMetricFamily("baton_stage_consecutive_failures",
                                   "failures since the last success, per stage",
                                   labels=["stage"])
        last_ok = GaugeMetricFamily("baton_stage_last_success_timestamp_seconds",
                                    "when a job of the stage last succeeded", labels=["stage"])
        for stage in stages:
            consec.add_metric([stage], len(self.fails_after_ok[stage]))
            if stage in self.last_ok:
                last_ok.add_metric([stage], self.last_ok[stage].timestamp())
        yield consec
        yield last_ok
        for name, doc, oldest in (
                ("baton_oldest_waiting_job_seconds",
                 "age of the oldest job still pending or held", self.oldest_waiting),
                ("baton_longest_running_job_seconds",
                 "run time so far of the longest-running job", self.oldest_running)):
            fam = GaugeMetricFamily(name, doc, labels=["stage"])
            for stage in stages:
                age = (now - oldest[stage]).total_seconds() if stage in oldest else 0
                fam.add_metric([stage], age)
            yield fam
        fam = GaugeMetricFamily("baton_campaign_jobs", "Slurm jobs by campaign, stage and "
                                "dashboard state", labels=["campaign", "stage", "state"])
        for (camp, stage, state), n in sorted(self.by_campaign.items()):
            fam.add_metric([camp, stage, state], n)
        yield fam


def _keep_oldest(oldest: dict[str, datetime], stage: str, at: datetime) -> None:
    if stage not in oldest or at < oldest[stage]:
        oldest[stage] = at
