"""A per-dataset ``metrics_summary`` ({dataset: {metric: value}}) reaches the ledger's
``evaluation_results`` with its dataset, next to the flat {metric: value} form."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from baton.inbox import publish
from baton.layout import DriveLayout
from baton.ledger import open_ledger
from baton.ledger.schema import evaluation_results
from baton.ledger.stages import apply_eval_signal
from baton.ledger.training import apply_training_signal
from baton.signals import EvalComplete, TrainingComplete, read_signal


def test_per_dataset_metrics_are_recorded_by_dataset(ledger_url: str,
                                                     drive: DriveLayout) -> None:
    ledger = open_ledger(ledger_url, init=True)
    ckpt = drive.experiment("exp1").final_dir
    ckpt.mkdir(parents=True)
    (ckpt / "model.safetensors").write_bytes(b"\1" * 16)
    training = read_signal(publish(drive, TrainingComplete(
        timestamp=datetime.now(UTC), experiment="exp1", hostname="gpu01", user="u",
        checkpoint_path=str(ckpt))), drive)
    assert ledger.accept_signal(training, apply_training_signal)
    claim = ledger.claim_submission("evaluation:exp1:0", stage="evaluation", experiment="exp1",
                                    backend="sbatch")
    ledger.mark_submitted(claim.row_id, "77")
    ledger.record_evaluation_task(experiment="exp1", trigger_key=training.idempotency_key,
                                  checkpoint=str(ckpt), slurm_row=claim.row_id, job_id="77")
    done = read_signal(publish(drive, EvalComplete(
        timestamp=datetime.now(UTC), experiment="exp1", job_id="77", status="complete",
        metrics_summary={"loss": 1.5, "squad": {"f1": 0.8, "em": 0.7}})), drive)
    assert ledger.accept_signal(done, apply_eval_signal)
    with ledger.read() as conn:
        rows = conn.execute(select(evaluation_results.c.dataset_name,
                                   evaluation_results.c.metric_name,
                                   evaluation_results.c.metric_value)).all()
    assert sorted(map(tuple, rows), key=str) == sorted(
        [(None, "loss", 1.5), ("squad", "f1", 0.8), ("squad", "em", 0.7)], key=str)
