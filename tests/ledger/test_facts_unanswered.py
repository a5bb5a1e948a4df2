"""Facts written in bulk (a burst's thousand requests in one commit) and the facts still
waiting for their answer (a tick's submission whose event Dagster has not confirmed), on
SQLite and PostgreSQL; the windowed query agrees with the full one from tick to tick."""

from __future__ import annotations

from baton.ledger import open_ledger
from baton.ledger.window import Window

KIND = "runless_submission"


def test_bulk_facts_keep_what_is_held_and_wait_for_their_answers(ledger_url: str) -> None:
    ledger = open_ledger(ledger_url, init=True)
    ledger.record_fact("runless:r:1", KIND, "e1", detail={"first": True})
    ledger.record_facts(KIND, {f"runless:r:{i}": f"e{i}" for i in range(1, 1201)})
    keys = ledger.fact_keys(KIND)
    assert len(keys) == 1200 and len(set(keys)) == 1200  # the held one once, as it was
    ledger.record_fact("run:r:2", "run_requested")  # answered
    ledger.record_fact("run:other", "run_requested")  # answers nothing of these
    waiting = ledger.facts_unanswered(KIND, "runless:", "run:")
    assert len(waiting) == 1199 and "runless:r:2" not in {r.key for r in waiting}
    assert next(r for r in waiting if r.key == "runless:r:7").experiment == "e7"


def test_the_window_reads_past_its_mark_and_agrees_with_a_full_read(ledger_url: str) -> None:
    ledger = open_ledger(ledger_url, init=True)
    ledger.record_facts(KIND, {f"runless:r:{i}": f"e{i}" for i in range(5)})
    cursor: dict[str, int] = {}

    def tick() -> list[str]:
        window = Window.from_cursor(cursor)
        rows = [r.key for r in ledger.facts_unanswered(KIND, "runless:", "run:", window)]
        cursor.update(window.next)
        assert rows == [r.key for r in ledger.facts_unanswered(KIND, "runless:", "run:")]
        return rows

    assert len(tick()) == 5
    for i in range(5):
        ledger.record_fact(f"run:r:{i}", "run_requested")
    assert tick() == []
    mark = cursor[KIND]
    assert tick() == [] and cursor[KIND] == mark  # idle: the mark stays past them
    ledger.record_facts(KIND, {"runless:r:9": "e9"})
    assert tick() == ["runless:r:9"]
