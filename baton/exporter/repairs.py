"""Supervision metrics, from the ``supervisions`` table (no job-id labels):
decisions by stage, reason and action; repairs in flight; give-ups nobody has handled (what
BatonSupervisionGaveUp alerts on); repairs whose every dispatch try failed (what
BatonSupervisionDispatchFailed alerts on); late jobs flagged by an ``alert`` policy."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from baton.ledger import Ledger
from baton.ledger.supervisions import LIVE, STAGES
from baton.supervision.policy import END_REASONS, LATE_REASONS, MANUAL

# every (reason, action) a decision can take, from zero: increase() sees the first one
POSSIBLE = ([(r, a) for r in END_REASONS for a in ("resubmit", "gave_up", "none")]
            + [(r, a) for r in LATE_REASONS for a in ("alert", "cancel")]
            + [(MANUAL, "resubmit")])


def supervision_metrics(ledger: Ledger) -> Iterator[Metric]:
    rows = ledger.supervision_counts()
    decided: Counter[tuple[str, str, str]] = Counter()
    in_flight: Counter[str] = Counter()
    gave_up: Counter[str] = Counter()
    late: Counter[str] = Counter()
    undispatched: Counter[str] = Counter()
    for stage, reason, action, execution, dispatch, n in rows:
        decided[(stage, reason, action)] += n
        if dispatch == "failed":
            undispatched[stage] += n
        if action == "resubmit" and (execution in LIVE or dispatch == "pending"):
            in_flight[stage] += n
        elif action == "gave_up" and execution == "open":
            gave_up[stage] += n
        elif action == "alert" and execution in LIVE:
            late[stage] += n
    fam = CounterMetricFamily("baton_supervisions", "supervision decisions, by stage, reason "
                              "and action", labels=["stage", "reason", "action"])
    stages = sorted(set(STAGES) | {stage for stage, *_ in decided})
    keys = {(stage, r, a) for stage in stages for r, a in POSSIBLE} | set(decided)
    for stage, reason, action in sorted(keys):
        fam.add_metric([stage, reason, action], decided[(stage, reason, action)])
    yield fam
    for name, doc, values in (
        ("baton_supervision_repairs_in_flight", "resubmissions not yet ended", in_flight),
        ("baton_supervision_gave_up_open", "jobs that failed every attempt the policy "
         "allows, not yet retried or dismissed", gave_up),
        ("baton_supervision_late_jobs", "jobs flagged late (late_action: alert) and not "
         "ended", late),
        ("baton_supervision_dispatch_failed", "repairs whose every dispatch try failed, "
         "not yet retried or cancelled", undispatched),
    ):
        gauge = GaugeMetricFamily(name, doc, labels=["stage"])
        for stage in stages:
            gauge.add_metric([stage], values[stage])
        yield gauge
