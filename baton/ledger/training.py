"""The ``training_runs`` and ``checkpoints`` tables: what each experiment's latest training
signal said; and ``training_generations``: every training signal it accepted, numbered.

Retraining an experiment (a new ``.training_complete``) starts a new evaluation
generation: the signals of an experiment are numbered 1, 2, ... in the order they are
applied, and the evaluations and analyses answering one carry its number. Applied in the
order of the signals' timestamps (ties by key), as ``baton db rebuild`` replays them, the
numbers follow from the signals alone."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, func, insert, select, update

from baton.ledger.base import LedgerBase
from baton.ledger.schema import checkpoints, training_generations, training_runs
from baton.signals import SignalFile, TrainingComplete


def apply_training_signal(conn: Connection, sf: SignalFile) -> int:
    """Number the signal as the experiment's next generation, and upsert the experiment's
    training run (its latest generation) and its checkpoints from it (an applier of
    :meth:`SignalLog.accept_signal`, which applies a signal once); returns the run's id."""
    sig = sf.signal
    assert isinstance(sig, TrainingComplete)
    generation = 1 + (conn.execute(select(func.max(training_generations.c.generation)).where(
        training_generations.c.experiment_name == sig.experiment)).scalar() or 0)
    metadata = sig.model_dump(mode="json", exclude_none=True)
    conn.execute(insert(training_generations).values(
        experiment_name=sig.experiment, generation=generation, signal_key=sf.idempotency_key,
        signal_time=sig.timestamp, checkpoint_path=sig.checkpoint_path, metadata=metadata))
    values = dict(
        campaign=sig.campaign, status="completed", completed_at=sig.timestamp,
        checkpoint_path=sig.checkpoint_path, config_path=sig.config_path,
        hostname=sig.hostname, user=sig.user, git_commit=sig.git_commit,
        num_epochs=sig.num_epochs, total_steps=sig.total_steps,
        final_loss=sig.final_loss, mlflow_run_id=sig.mlflow_run_id,
        signal_key=sf.idempotency_key, generation=generation, metadata=metadata)
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


def generation_of(conn: Connection, trigger_key: str | None) -> int | None:
    """The generation a stage's trigger answers (a repair's trigger, ``#attempt-N``, its
    original's); None for a trigger that is no training signal's."""
    if not trigger_key:
        return None
    return conn.execute(select(training_generations.c.generation).where(
        training_generations.c.signal_key == trigger_key.split("#attempt-")[0])).scalar()


class TrainingRuns(LedgerBase):
    def training_run(self, experiment: str) -> Row[Any] | None:
        with self.read() as conn:
            return conn.execute(select(training_runs).where(
                training_runs.c.experiment_name == experiment)).first()

    def generation_for(self, experiment: str, signal_key: str) -> int:
        """The generation of the experiment's training signal ``signal_key``: its own once
        accepted, else the one it would start (``baton plan``)."""
        with self.read() as conn:
            own = generation_of(conn, signal_key)
            if own is not None:
                return own
            return 1 + (conn.execute(select(func.max(training_generations.c.generation))
                                     .where(training_generations.c.experiment_name ==
                                            experiment)).scalar() or 0)

    def training_generations(self, experiment: str) -> Sequence[Row[Any]]:
        """Every generation of the experiment, the first first."""
        with self.read() as conn:
            return conn.execute(select(training_generations).where(
                training_generations.c.experiment_name == experiment).order_by(
                training_generations.c.generation)).all()
