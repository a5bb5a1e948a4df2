"""The ``training_runs`` and ``checkpoints`` tables: what each experiment's latest training
signal said."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, insert, select, update

from baton.ledger.base import LedgerBase
from baton.ledger.schema import checkpoints, training_runs
from baton.signals import SignalFile, TrainingComplete


def apply_training_signal(conn: Connection, sf: SignalFile) -> int:
    """Upsert the experiment's training run and its checkpoints from its signal (an
    applier of :meth:`SignalLog.accept_signal`); returns the run's id."""
    sig = sf.signal
    assert isinstance(sig, TrainingComplete)
    values = dict(
        campaign=sig.campaign, status="completed", completed_at=sig.timestamp,
        checkpoint_path=sig.checkpoint_path, config_path=sig.config_path,
        hostname=sig.hostname, user=sig.user, git_commit=sig.git_commit,
        num_epochs=sig.num_epochs, total_steps=sig.total_steps,
        final_loss=sig.final_loss, mlflow_run_id=sig.mlflow_run_id,
        signal_key=sf.idempotency_key,
        metadata=sig.model_dump(mode="json", exclude_none=True))
    run_id = conn.execute(select(training_runs.c.id).where(
        training_runs.c.experiment_name == sig.experiment)).scalar()
    if run_id is None:
        run_id = conn.execute(insert(training_runs).values(
            experiment_name=sig.experiment, **values)).inserted_primary_key[0]
    else:
        conn.execute(update(training_runs).where(training_runs.c.id == run_id)
                     .values(**values))
    for path in sig.checkpoint_paths():
        exists = conn.execute(select(checkpoints.c.id).where(
            checkpoints.c.training_run_id == run_id,
            checkpoints.c.checkpoint_path == path)).first()
        if not exists:
            conn.execute(insert(checkpoints).values(
                training_run_id=run_id, checkpoint_path=path, created_at=sig.timestamp))
    return int(run_id)


class TrainingRuns(LedgerBase):
    def training_run(self, experiment: str) -> Row[Any] | None:
        with self.read() as conn:
            return conn.execute(select(training_runs).where(
                training_runs.c.experiment_name == experiment)).first()
