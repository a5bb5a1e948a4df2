"""Latencies of the pipeline, as Prometheus histograms: training signal written to
evaluation submitted, training complete to evaluation complete, evaluation complete to
analysis complete, end to end; and the age of the oldest trained model without a completed
evaluation, and of the oldest evaluated one without a completed analysis (the alerts on a
missing signal). The timeline of each training signal comes from the ledger
(:meth:`baton.ledger.timelines.Timelines.signal_timelines`), streamed one at a time and
added to a :class:`FlowTally` (which the exporter's running totals fold,
:mod:`baton.exporter.folds`)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from prometheus_client.core import GaugeMetricFamily, Metric

from baton.exporter.families import (
    LATENCY_BUCKETS,
    WAIT_BUCKETS,
    Observations,
    histogram,
    seconds,
)
from baton.ledger.timelines import Timeline

SETTLED_SECONDS = 7 * 86400  # a week after training, a timeline is history


def settled(timeline: Timeline, now: datetime | None = None) -> bool:
    """Evaluated and analysed, or trained more than a week ago (an evaluation that failed
    and was never repaired stays unanswered for good): nothing more happens to it, unless
    a finished or failed stage is run again by hand, which the exporter's periodic full
    recomputation catches."""
    trained, _, sub, evaluated, analysed = timeline
    if sub is not None and evaluated is not None and analysed is not None:
        return True
    now = now or datetime.now().astimezone()
    return trained is not None and (now - trained).total_seconds() > SETTLED_SECONDS


class FlowTally:
    """The latency histograms, timelines added one at a time."""

    def __init__(self) -> None:
        self.detect, self.t2e, self.e2a, self.end = (
            Observations(b) for b in (LATENCY_BUCKETS, WAIT_BUCKETS, WAIT_BUCKETS,
                                      WAIT_BUCKETS))
        self.unanswered: dict[str, datetime] = {}  # stage awaited -> the oldest awaiting

    def add_all(self, timelines: Iterable[Timeline]) -> FlowTally:
        for timeline in timelines:
            self.add(timeline)
        return self

    def add(self, timeline: Timeline) -> None:
        trained, mtime, sub, evaluated, analysed = timeline
        if mtime is not None and sub is not None:
            self.detect.add(max(0.0, sub.timestamp() - mtime))
        if evaluated is None:
            self._keep_oldest("evaluation", trained)
            return
        if (d := seconds(trained, evaluated)) is not None:
            self.t2e.add(d)
        if analysed is None:
            self._keep_oldest("analysis", evaluated)
            return
        self.e2a.add(seconds(evaluated, analysed) or 0.0)
        self.end.add(seconds(trained, analysed) or 0.0)

    def _keep_oldest(self, stage: str, at: datetime | None) -> None:
        if at is not None and (stage not in self.unanswered or at < self.unanswered[stage]):
            self.unanswered[stage] = at

    def families(self, now: datetime | None = None) -> list[Metric]:
        now = now or datetime.now().astimezone()
        age = {stage: max(0.0, (now - at).total_seconds())
               for stage, at in self.unanswered.items()}
        return [
            GaugeMetricFamily("baton_oldest_unanswered_training_seconds",
                              "age of the oldest trained model without a completed "
                              "evaluation", value=age.get("evaluation", 0.0)),
            GaugeMetricFamily("baton_oldest_unanswered_evaluation_seconds",
                              "age of the oldest completed evaluation without a completed "
                              "analysis", value=age.get("analysis", 0.0)),
            histogram("baton_signal_detection_latency_seconds",
                      "training signal written to evaluation submitted", "",
                      {"": self.detect}),
            histogram("baton_training_to_evaluation_seconds",
                      "training complete to evaluation complete", "", {"": self.t2e}),
            histogram("baton_evaluation_to_analysis_seconds",
                      "evaluation complete to analysis complete", "", {"": self.e2a}),
            histogram("baton_end_to_end_seconds", "training complete to analysis complete",
                      "", {"": self.end}),
        ]

