"""Metrics of the control plane: campaigns (which are active, in which order, how far
along), the progress table, unknown campaign types, and the last status report of every
script that reports one."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy import Row

from baton.config import Config
from baton.exporter.dashboard import dashboard_state
from baton.ledger import Ledger
from baton.ledger.campaigns import CampaignProgress, Entries, completion

FINISHED_REPORTS_SECONDS = 7 * 86400  # how long a job's last "completed"/"failed" shows


def active_campaigns(rows: Sequence[Row[Any]]) -> set[str]:
    return {r.tag for r in rows if r.active}


def whole_progress(ledger: Ledger, active: Collection[str]) -> CampaignProgress:
    """The campaign progress from a pass over the whole history (what the exporter's
    running totals, baton/exporter/progress_fold.py, give without one)."""
    return ledger.campaign_progress(dashboard_state, keep=lambda entries: shown(entries, active))


def campaign_metrics(ledger: Ledger, rows: Sequence[Row[Any]], prog: CampaignProgress
                     ) -> Iterator[Metric]:
    """``rows``: the campaigns (:meth:`list_campaigns`); ``prog``: their progress."""
    done = completion(rows, prog)
    labels = ["campaign", "type"]
    is_active = GaugeMetricFamily("baton_campaign_active", "1 if curators show the campaign "
                                  "on the dashboards (baton campaign activate)", labels=labels)
    priority = GaugeMetricFamily("baton_campaign_priority", "display order of the active "
                                 "campaigns, lower first", labels=labels)
    expected = GaugeMetricFamily("baton_campaign_expected_jobs", "jobs the campaign should "
                                 "run: the curator's count, else what its experiments imply",
                                 labels=labels)
    ratio = GaugeMetricFamily("baton_campaign_completion_ratio", "finished over expected "
                              "jobs of the active campaigns, 0..1", labels=labels)
    # display_name only: the curator's free-text notes do not belong in a label (each edit
    # would start a new series); `baton campaign list` shows them
    info = GaugeMetricFamily("baton_campaign_info", "curator's display name of the active "
                             "campaigns", labels=[*labels, "display_name"])
    for r in rows:
        key = [r.tag, r.type]
        finished, want = done[(r.tag, r.type)]
        is_active.add_metric(key, 1 if r.active else 0)
        expected.add_metric(key, want)
        if r.active:
            priority.add_metric(key, r.priority)
            ratio.add_metric(key, finished / want if want else 0)
            info.add_metric([*key, r.display_name or r.tag], 1)
    yield from (is_active, priority, expected, ratio, info)
    table = GaugeMetricFamily("baton_progress_tasks", "the progress table: tasks (one "
                              "evaluation per checkpoint, one analysis) per campaign, "
                              "experiment and stage, by column; experiments of active "
                              "campaigns and experiments with unfinished tasks only",
                              labels=["campaign", "experiment", "stage", "column"])
    for (camp, exp, stage), p in sorted(prog.tasks.items()):
        for column, n in p.row().items():
            table.add_metric([camp, exp, stage, column], n)
    yield table
    unknown = CounterMetricFamily("baton_campaign_unknown_type_signals", "signals and jobs "
                                  "that named a campaign type baton.yaml does not know",
                                  labels=["type"])
    for type_, n in sorted(_sum_by_type(ledger).items()):
        unknown.add_metric([type_], n)
    yield unknown


def shown(entries: Entries, active: Collection[str]) -> bool:
    """Whether the progress table shows an experiment: one of an active campaign, or with
    a task not yet ended (whatever its campaign). Every experiment ever run would make
    millions of series on a large ledger; these are what a curator watches."""
    return any(camp in active or p.states.total() > p.states["finished"] + p.states["failed"]
               for (camp, _), p in entries.items())


def _sum_by_type(ledger: Ledger) -> dict[str, int]:
    totals: dict[str, int] = {}
    for u in ledger.unknown_types_seen():
        totals[u.type] = totals.get(u.type, 0) + u.occurrences
    return totals


def status_metrics(ledger: Ledger, config: Config, now: datetime | None = None
                   ) -> Iterator[Metric]:
    """Each (project, job)'s last report: when, which status, how far; and how long it may
    stay silent (the overdue alert compares the two). Jobs that ended (completed, failed)
    more than ``FINISHED_REPORTS_SECONDS`` ago are left out: job names are identifiers, but
    a script named per run (``fetch-2026-11-21``) would otherwise add series forever.
    A job ``status.intervals`` names (``project/job``) is expected: it always shows, with
    its interval even before its first report (the never-reported alert needs both)."""
    now = now or datetime.now(UTC)
    declared = {tuple(k.split("/", 1)) for k in config.status.intervals if "/" in k}
    rows = [r for r in ledger.last_reports() if r.status not in ("completed", "failed")
            or (now - r.reported_at).total_seconds() <= FINISHED_REPORTS_SECONDS
            or (r.project, r.job) in declared]
    labels = ["project", "job_name"]  # not "job": Prometheus's own target label
    at = GaugeMetricFamily("baton_status_last_report_timestamp_seconds", "when the job last "
                           "reported, labelled with the status it reported",
                           labels=[*labels, "status"])
    prog = GaugeMetricFamily("baton_status_progress_ratio", "the last progress reported, 0..1",
                             labels=labels)
    interval = GaugeMetricFamily("baton_status_expected_interval_seconds", "how long a started "
                                 "or running job may stay silent (baton.yaml status)",
                                 labels=labels)
    for r in rows:
        at.add_metric([r.project, r.job, r.status], r.reported_at.timestamp())
        if r.progress is not None:
            prog.add_metric([r.project, r.job], r.progress / 100)
        interval.add_metric([r.project, r.job], config.status.interval(r.project, r.job))
    for project, job in sorted(declared - {(r.project, r.job) for r in rows}):
        interval.add_metric([project, job], config.status.interval(project, job))
    yield from (at, prog, interval)
