"""A retrained experiment's evaluation, submitted by the pipeline and repaired by the
supervisor, evaluates its own generation: both rendered scripts export
``BATON_GENERATION=2`` (a repair exported 1 would write over the first generation's
Parquet of the same checkpoint). Local backend, SQLite ledger."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from baton.inbox import publish
from baton.ledger.training import apply_training_signal
from baton.pipeline.steps import submit_evaluations
from baton.signals import TrainingComplete, read_signal
from baton.supervision.actions import tick
from tests.supervision.site import local_site


def test_a_repair_keeps_the_generation(tmp_path: Path) -> None:
    config, ledger, backend, final = local_site(tmp_path, 'exit "$((BATON_GENERATION + 1))"')
    start = datetime.now(UTC)
    for n in range(2):  # trained, then retrained
        sf = read_signal(publish(config.drive, TrainingComplete(
            timestamp=start + timedelta(seconds=n), experiment="exp1", hostname="h",
            user="u", checkpoint_path=str(final))), config.drive)
        assert ledger.accept_signal(sf, apply_training_signal)
    [task] = submit_evaluations(config, ledger, backend, ["exp1"])["exp1"].tasks
    first = ledger.job(task.row_id)
    assert "export BATON_GENERATION=2\n" in Path(first.script_path).read_text()
    deadline = time.monotonic() + 60
    while ledger.job(task.row_id).state != "FAILED":  # exit 3: generation 2 ran
        assert time.monotonic() < deadline, ledger.job(task.row_id)
        ledger.apply_statuses(backend.status([first.job_id]))
        time.sleep(0.1)
    tick(config, ledger, backend, datetime.now(UTC))
    [sup] = ledger.list_supervisions()
    assert sup.action == "resubmit" and sup.repair_row, sup
    repair = ledger.job(sup.repair_row)
    assert "export BATON_GENERATION=2\n" in Path(repair.script_path).read_text()
    assert ledger.stage_generation("evaluation", sup.repair_row) == 2
    ledger.close()
