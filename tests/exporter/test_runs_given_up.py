"""A request the sensors gave up on (every one of its runs ended without success, five
times: sensors/once.py) is counted by the exporter, by the kind of run, so that an alert
says a partition will not be asked for again without a person."""

from __future__ import annotations

from baton.config import Config
from baton.ledger import open_ledger
from tests.exporter.test_exporter import sample, scrape


def test_given_up_requests_are_counted_by_kind(config: Config, ledger_url: str) -> None:
    ledger = open_ledger(ledger_url, init=True)
    ledger.record_fact("run:evaluation_job:training_complete:e1:abc", "run_requested")
    text, _ = scrape(config, ledger)
    assert sample(text, "baton_runs_given_up_total", run="evaluation_job") == 0
    for key in ("evaluation_job:training_complete:e2:def", "evaluation_metrics:t#attempt-2",
                "evaluation_job:training_complete:e3:012"):
        ledger.record_fact(f"run:{key}", "run_given_up", detail={"partition": "e"})
    text, _ = scrape(config, ledger)
    assert sample(text, "baton_runs_given_up_total", run="evaluation_job") == 2
    assert sample(text, "baton_runs_given_up_total", run="evaluation_metrics") == 1
    assert sample(text, "baton_runs_given_up_total", run="analysis_report") == 0
    ledger.close()
