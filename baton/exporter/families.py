"""Small builders of metric families shared by the exporter's parts."""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

WAIT_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400,
                172800)
LATENCY_BUCKETS = (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600)
RATIO_BUCKETS = (0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.25, 1.5, 2.0)


class Observations:
    """Bucket counts, sum and count of observed values: what a histogram sample needs, in
    memory that does not grow with the values (a scrape may observe millions)."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # per bucket, not cumulative; last: +Inf
        self.total = 0.0
        self.n = 0

    def add(self, value: float) -> None:
        self.counts[bisect_left(self.buckets, value)] += 1  # value <= bucket
        self.total += value
        self.n += 1

    def merge(self, other: Observations) -> None:
        """Add ``other``'s observations (the same buckets)."""
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.total += other.total
        self.n += other.n

    def pairs(self) -> list[tuple[str, float]]:
        out, running = [], 0
        for b, c in zip(self.buckets, self.counts, strict=False):
            running += c
            out.append((str(b), running))
        out.append(("+Inf", self.n))
        return out


def observations(buckets: tuple[float, ...]) -> defaultdict[str, Observations]:
    """Observations per label value, created on first use."""
    return defaultdict(lambda: Observations(buckets))


def histogram(name: str, doc: str, label: str, values: Mapping[str, Observations]
              ) -> HistogramMetricFamily:
    fam = HistogramMetricFamily(name, doc, labels=[label] if label else [])
    for key, obs in sorted(values.items()):
        fam.add_metric([key] if label else [], obs.pairs(), obs.total)
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
