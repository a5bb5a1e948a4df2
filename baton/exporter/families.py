"""Small builders of metric families shared by the exporter's parts."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

WAIT_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400,
                172800)
LATENCY_BUCKETS = (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600)
RATIO_BUCKETS = (0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.25, 1.5, 2.0)


def histogram(name: str, doc: str, label: str, values: Mapping[str, list[float]],
              buckets: tuple[float, ...]) -> HistogramMetricFamily:
    fam = HistogramMetricFamily(name, doc, labels=[label] if label else [])
    for key, vals in sorted(values.items()):
        counts = [sum(1 for v in vals if v <= b) for b in buckets]
        bucket_pairs = [(str(b), c) for b, c in zip(buckets, counts, strict=True)]
        bucket_pairs.append(("+Inf", len(vals)))
        fam.add_metric([key] if label else [], bucket_pairs, sum(vals))
    return fam


def per_stage(name: str, doc: str, values: Mapping[str, float], stages: list[str]
              ) -> CounterMetricFamily:
    """A counter with one sample per stage, zero where nothing happened yet."""
    fam = CounterMetricFamily(name, doc, labels=["stage"])
    for stage in stages:
        fam.add_metric([stage], values.get(stage, 0))
    return fam


def seconds(a: datetime | None, b: datetime | None) -> float | None:
    if a is None or b is None:
        return None
    return max(0.0, (b - a).total_seconds())
