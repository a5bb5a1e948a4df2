"""A supervisor killed right after the sbatch of a repair loses nothing: the repair's task
row exists from its claim on, so the repair job's signal answers it. Local backend, SQLite
ledger; the one faked call is the crash."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from baton.inbox import publish
from baton.ledger.stages import apply_eval_signal
from baton.ledger.training import apply_training_signal
from baton.pipeline.steps import submit_evaluations
from baton.signals import EvalComplete, TrainingComplete, read_signal
from baton.supervision.actions import tick
from tests.pipeline.test_crash_after_sbatch import Killed, dies_after_sbatch
from tests.supervision.site import local_site


def test_a_repair_killed_after_sbatch_keeps_its_task(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    config, ledger, backend, final = local_site(tmp_path, "exit 1")
    sf = read_signal(publish(config.drive, TrainingComplete(
        timestamp=datetime.now(UTC), experiment="exp1", hostname="h", user="u",
        checkpoint_path=str(final))), config.drive)
    assert ledger.accept_signal(sf, apply_training_signal)
    [task] = submit_evaluations(config, ledger, backend, ["exp1"])["exp1"].tasks
    deadline = time.monotonic() + 60
    while ledger.job(task.row_id).state != "FAILED":
        assert time.monotonic() < deadline, ledger.job(task.row_id)
        ledger.apply_statuses(backend.status([task.job_id]))
        time.sleep(0.1)
    ledger.sync_stage_rows()

    done = dies_after_sbatch(backend, monkeypatch)
    with pytest.raises(Killed):
        tick(config, ledger, backend, datetime.now(UTC))
    [repair] = done
    tasks = ledger.evaluation_tasks("exp1")
    assert [(t.status, t.trigger_key.endswith("#attempt-2")) for t in tasks] == [
        ("queued", True)]  # the repair's task, there before its job can signal

    sig = EvalComplete(timestamp=datetime.now(UTC), experiment="exp1",
                       job_id=repair.job_id, status="complete", datasets_evaluated=["toy"],
                       checkpoints_evaluated=[str(final)])
    path = publish(config.drive, sig,
                   config.drive.experiment("exp1").eval_task_dir(final) / sig.filename)
    assert ledger.accept_signal(read_signal(path, config.drive), apply_eval_signal)
    assert [t.status for t in ledger.evaluation_tasks("exp1")] == ["completed"]
    ledger.close()
