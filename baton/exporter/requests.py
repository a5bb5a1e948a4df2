"""The requests the sensors gave up on: every run asked for one ended without success, as
many times as sensors/once.py asks (a ``run_given_up`` fact per request). Nothing asks for
that partition again until a person launches it, so the alert on this counter pages."""

from __future__ import annotations

from collections import Counter

from prometheus_client.core import CounterMetricFamily

from baton.ledger import Ledger

# the runs the sensors ask for, by the first part of their run key: each is exported from 0
RUN_KINDS = ("evaluation_job", "evaluation_metrics", "analysis_report", "campaign_report")


def runs_given_up(ledger: Ledger) -> CounterMetricFamily:
    counts = Counter(key.removeprefix("run:").split(":", 1)[0]
                     for key in ledger.fact_keys("run_given_up"))
    fam = CounterMetricFamily("baton_runs_given_up", "requests the sensors stopped asking "
                              "for: each of their runs ended without success", labels=["run"])
    for kind in sorted(set(RUN_KINDS) | set(counts)):
        fam.add_metric([kind], counts.get(kind, 0))
    return fam
