"""The tracker's bound on waiting for accounting: a finished job whose CPU time and MaxRSS
never came is given up on after the wait, and the tick says so once (the real sensor,
evaluated with Dagster's public API, over the real ledger on SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from dagster import build_sensor_context
from sqlalchemy import update

from baton.config import Config
from baton.ledger import open_ledger
from baton.ledger.schema import slurm_jobs
from baton.slurm.parse import parse_scontrol

DATA = Path(__file__).resolve().parents[1] / "data" / "slurm"


def test_the_tracker_gives_up_on_figures_and_says_so(config: Config, ledger_url: str) -> None:
    import resources
    from sensors.tracker import build_tracker

    ledger = open_ledger(ledger_url, init=True)
    claim = ledger.claim_submission("evaluation:e:attempt-1", stage="evaluation",
                                    experiment="e", backend="local")
    ledger.mark_submitted(claim.row_id, "9")
    # its end came from the controller while slurmdbd was down (captured), days ago
    ledger.apply_statuses(parse_scontrol((DATA / "scontrol_dbd_down_completed.txt").read_text()))
    with ledger.engine.begin() as conn:
        conn.execute(update(slurm_jobs).values(ended_at=datetime.now(UTC) - timedelta(days=3)))
    tracker = build_tracker(config)
    res = {"slurm": resources.SlurmResource(settings=config, backend="local"),
           "ledger": resources.LedgerResource(settings=config, url=ledger_url)}
    ticks = []
    for _ in range(2):
        with build_sensor_context(resources=res) as ctx:
            ticks.append(str(tracker(ctx).skip_message))
    assert "1 without accounting figures" in ticks[0], ticks
    assert "without accounting figures" not in ticks[1], ticks  # said once
    row = ledger.job(claim.row_id)
    assert row.figures == "unavailable" and row.cpu_seconds is None
    ledger.close()
