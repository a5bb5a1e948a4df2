"""The status pages' slow queries read through the indexes of schema 0012, on SQLite and
PostgreSQL: each statement a page runs is captured as sent and explained by the database
itself (EXPLAIN QUERY PLAN, EXPLAIN), so the test fails if the index is missing or the
query stops using it. PostgreSQL prefers a sequential scan of a small table whatever its
indexes, so its session forbids one where an index can serve (``enable_seqscan``). That
a fresh ledger and a migrated one have the same indexes is the integrity check's part
(tests/ledger/test_ledger.py)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import event

from baton.config import Config
from baton.ledger import Ledger, open_ledger
from tests.web.site import CAMPAIGN, fill


@pytest.fixture
def ledger(config: Config, ledger_url: str) -> Iterator[Ledger]:
    led = open_ledger(ledger_url, init=True)
    fill(config.model_copy(update={"database_url": ledger_url}), led)
    yield led
    led.close()


def _plans(ledger: Ledger, call: Callable[[], Any]) -> list[str]:
    """The plan of every statement ``call`` runs, each as one text."""
    sent: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
                executemany: bool) -> None:
        sent.append((statement, parameters))

    event.listen(ledger.engine, "before_cursor_execute", capture)
    try:
        call()
    finally:
        event.remove(ledger.engine, "before_cursor_execute", capture)
    assert sent, "the call ran no statement"
    sqlite = ledger.engine.dialect.name == "sqlite"
    plans = []
    with ledger.read() as conn:
        if not sqlite:
            conn.exec_driver_sql("SET enable_seqscan = off")
        for statement, parameters in sent:
            explain = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN "
            rows = conn.exec_driver_sql(explain + statement, parameters).all()
            plans.append("\n".join(str(r[-1]) for r in rows))
    return plans


def test_the_failed_filter_finds_failed_rows_by_status(ledger: Ledger) -> None:
    plans = "\n".join(_plans(ledger, lambda: ledger.experiments_page(state="failed")))
    for index in ("ix_training_runs_status", "ix_evaluation_jobs_status",
                  "ix_analysis_jobs_status"):
        assert index in plans, plans
    # and what it finds: the one experiment whose evaluation failed
    assert [r.experiment_name for r in ledger.experiments_page(state="failed").rows] == [
        "lr-0.9-broken"]


def test_a_campaigns_completion_reads_its_experiments_by_campaign(ledger: Ledger) -> None:
    plans = "\n".join(_plans(ledger, lambda: ledger.campaign_completion([CAMPAIGN])))
    assert "ix_training_runs_campaign" in plans, plans
    assert ledger.campaign_completion([CAMPAIGN]) == {CAMPAIGN: (1, 4)}



def _reads_of(table: str, plan: str) -> int:
    """How many times a plan reads ``table`` (a scan or a search of it, or of its index)."""
    return sum(1 for line in plan.splitlines()
               if re.match(rf"(SCAN|SEARCH) {table}\b", line.strip())
               or re.search(rf" on {table}\b", line))


def test_an_evaluation_tasks_newer_row_is_sought_within_its_experiment(ledger: Ledger
                                                                        ) -> None:
    """A task is its checkpoint's latest row: the newer row answering the experiment's
    signal is sought among the experiment's rows, the experiment's own training run
    correlated, not joined to every training run (a scan of the history per repair)."""
    plan = max(_plans(ledger, lambda: ledger.experiments_page()), key=len)  # the page's
    assert _reads_of("training_runs", plan) == 1, plan
