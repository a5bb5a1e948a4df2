"""A retrained experiment's evaluation, submitted by the pipeline and repaired by the
supervisor, evaluates its own generation: both rendered scripts export
``BATON_GENERATION=2`` (a repair exported 1 would write over the first generation's
Parquet of the same checkpoint). Local backend, SQLite ledger."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from baton.config import load_config
from baton.inbox import publish
from baton.ledger import open_ledger
from baton.ledger.training import apply_training_signal
from baton.pipeline.steps import submit_evaluations
from baton.signals import TrainingComplete, read_signal
from baton.slurm.factory import make_backend
from baton.supervision.actions import tick


def test_a_repair_keeps_the_generation(tmp_path: Path) -> None:
    doc = {"shared_drive": str(tmp_path / "drive"), "state_dir": str(tmp_path / "state"),
           "database_url": f"sqlite:///{tmp_path / 'ledger.db'}",
           "slurm": {"backend": "local", "local_max_concurrent": 2},
           "stages": {"evaluation": {"time": "00:10:00", "mem": "100M", "cpus": 1,
                                     "command": 'exit "$((BATON_GENERATION + 1))"',
                                     "supervision": {"resubmit_failed": True}}}}
    (tmp_path / "baton.yaml").write_text(yaml.safe_dump(doc))
    config = load_config(tmp_path / "baton.yaml")
    config.drive.create()
    ledger = open_ledger(config.ledger_url, init=True)
    backend = make_backend(config, "local")
    final = config.drive.experiment("exp1").final_dir
    final.mkdir(parents=True)
    (final / "model.safetensors").write_bytes(b"\1")
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
