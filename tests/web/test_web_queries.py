"""The status pages' queries on SQLite and PostgreSQL: an experiment's state and progress
come from the stage rows of its latest training signal; filters page like the list."""

from __future__ import annotations

from baton.config import Config
from baton.ledger import open_ledger
from tests.web.site import CAMPAIGN, FAILED_REASON, fill


def test_states_progress_and_reasons(config: Config, ledger_url: str) -> None:
    cfg = config.model_copy(update={"database_url": ledger_url})
    ledger = open_ledger(ledger_url, init=True)
    site = fill(cfg, ledger)
    rows = {r.experiment_name: r for r in ledger.experiments_page().rows}
    assert {n: r.state for n, r in rows.items()} == {
        "lr-0.1-done": "complete", "lr-0.9-broken": "failed", "lr-0.3-busy": "running",
        "lr-0.5-oom": "waiting"}
    busy = rows["lr-0.3-busy"]
    assert (busy.tasks, busy.tasks_done, busy.tasks_failed) == (3, 1, 0)
    assert (rows["lr-0.1-done"].tasks_done, rows["lr-0.1-done"].analysis) == (2, "completed")

    failed = ledger.experiments_page(state="failed")
    assert [r.experiment_name for r in failed.rows] == ["lr-0.9-broken"]
    waiting = ledger.experiments_page(state="waiting", user="ada")
    assert [(r.experiment_name, r.state) for r in waiting.rows] == [("lr-0.5-oom", "waiting")]
    assert ledger.experiments_page(state="waiting", user="grace").rows == []
    assert [r.experiment_name for r in ledger.experiments_page(state="complete").rows] == [
        "lr-0.1-done"]
    detail = ledger.experiment_details(["lr-0.9-broken", "lr-0.1-done"])
    assert FAILED_REASON in detail["lr-0.9-broken"].reason
    assert detail["lr-0.1-done"].report is not None and detail["lr-0.1-done"].reason is None

    # a repair of the failed task that completed: the experiment no longer counts as failed
    job = site.repair("lr-0.9-broken", site.broken_row)
    site.evaluated("lr-0.9-broken", 0, job)
    assert ledger.experiments_page(name="0.9").rows[0].state == "running"

    page = ledger.experiments_page(campaign=CAMPAIGN, limit=3)
    assert len(page.rows) == 3 and page.more
    assert len(ledger.experiments_page(campaign=CAMPAIGN, offset=3, limit=3).rows) == 1
    assert ledger.experiments_page(user="grace").rows[0].experiment_name == "lr-0.9-broken"
    assert ledger.experiments_page(name="%").rows == []  # a wildcard is a plain character
    assert ledger.campaign_completion([CAMPAIGN]) == {CAMPAIGN: (1, 4)}
    assert set(ledger.queue_counts()) == {"PENDING", "RUNNING"}
    assert [s.action for s in ledger.awaiting_people()] == ["gave_up"]
    ledger.close()
