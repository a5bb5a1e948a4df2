"""Latencies of the pipeline, as Prometheus histograms: training signal written to
evaluation submitted, training complete to evaluation complete, evaluation complete to
analysis complete, end to end; and the age of the oldest trained model without a completed
evaluation, and of the oldest evaluated one without a completed analysis (the alerts on a
missing signal). The timeline of each training signal comes from the ledger
(:meth:`baton.ledger.timelines.Timelines.signal_timelines`), streamed one at a time."""

from __future__ import annotations

from datetime import datetime

from prometheus_client.core import GaugeMetricFamily, Metric

from baton.exporter.families import (
    LATENCY_BUCKETS,
    WAIT_BUCKETS,
    Observations,
    histogram,
    seconds,
)
from baton.ledger import Ledger


def flow_metrics(ledger: Ledger, now: datetime | None = None) -> list[Metric]:
    detect, t2e, e2a, end = (Observations(b) for b in (LATENCY_BUCKETS, WAIT_BUCKETS,
                                                       WAIT_BUCKETS, WAIT_BUCKETS))
    unanswered: dict[str, datetime] = {}  # stage awaited -> the oldest that awaits it
    for trained, mtime, sub, evaluated, analysed in ledger.signal_timelines():
        if mtime is not None and sub is not None:
            detect.add(max(0.0, sub.timestamp() - mtime))
        if evaluated is None:
            _keep_oldest(unanswered, "evaluation", trained)
            continue
        if (d := seconds(trained, evaluated)) is not None:
            t2e.add(d)
        if analysed is None:
            _keep_oldest(unanswered, "analysis", evaluated)
            continue
        e2a.add(seconds(evaluated, analysed) or 0.0)
        end.add(seconds(trained, analysed) or 0.0)
    now = now or datetime.now().astimezone()
    age = {stage: max(0.0, (now - at).total_seconds()) for stage, at in unanswered.items()}
    return [
        GaugeMetricFamily("baton_oldest_unanswered_training_seconds",
                          "age of the oldest trained model without a completed evaluation",
                          value=age.get("evaluation", 0.0)),
        GaugeMetricFamily("baton_oldest_unanswered_evaluation_seconds",
                          "age of the oldest completed evaluation without a completed analysis",
                          value=age.get("analysis", 0.0)),
        histogram("baton_signal_detection_latency_seconds",
                  "training signal written to evaluation submitted", "", {"": detect}),
        histogram("baton_training_to_evaluation_seconds",
                  "training complete to evaluation complete", "", {"": t2e}),
        histogram("baton_evaluation_to_analysis_seconds",
                  "evaluation complete to analysis complete", "", {"": e2a}),
        histogram("baton_end_to_end_seconds", "training complete to analysis complete", "",
                  {"": end}),
    ]


def _keep_oldest(oldest: dict[str, datetime], stage: str, at: datetime | None) -> None:
    if at is not None and (stage not in oldest or at < oldest[stage]):
        oldest[stage] = at
