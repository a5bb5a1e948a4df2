"""training_generations: every accepted training signal of an experiment, numbered 1, 2, ...
(a retrain is a new evaluation generation, and the earlier one's row stays); the
generation on training_runs (its latest), evaluation_jobs and analysis_jobs (their
trigger's). The history is numbered from the accepted training signals the ledger kept,
in the order of their timestamps (ties by key); the rows of earlier generations know no
checkpoint, since training_runs kept only the latest.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 22:40:00
"""

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# frozen here: the tables as this revision reads and writes them
signals = sa.table("signals", sa.column("idempotency_key", sa.String),
                   sa.column("kind", sa.String), sa.column("experiment", sa.String),
                   sa.column("status", sa.String), sa.column("signal_time", sa.DateTime))
training_runs = sa.table("training_runs", sa.column("id", sa.Integer),
                         sa.column("experiment_name", sa.String),
                         sa.column("signal_key", sa.String),
                         sa.column("checkpoint_path", sa.String),
                         sa.column("metadata", sa.JSON), sa.column("generation", sa.Integer))
stage_tables = [sa.table(name, sa.column("id", sa.Integer), sa.column("trigger_key", sa.String),
                         sa.column("generation", sa.Integer))
                for name in ("evaluation_jobs", "analysis_jobs")]


def upgrade() -> None:
    generations = op.create_table(
        "training_generations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("experiment_name", sa.String(length=128), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("signal_key", sa.String(length=300), nullable=False),
        sa.Column("signal_time", sa.DateTime(), nullable=True),
        sa.Column("checkpoint_path", sa.String(length=4096), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_training_generations"),
        sa.UniqueConstraint("experiment_name", "generation",
                            name="uq_training_generations_experiment_name"),
        sa.UniqueConstraint("signal_key", name="uq_training_generations_signal_key"),
    )
    for name in ("training_runs", "evaluation_jobs", "analysis_jobs"):
        with op.batch_alter_table(name) as batch:
            batch.add_column(sa.Column("generation", sa.Integer(), nullable=True))
    _number_the_history(op.get_bind(), generations)


def _number_the_history(conn: sa.Connection, generations: sa.Table) -> None:
    history: dict[str, list[tuple[datetime | None, str]]] = {}
    for key, experiment, when in conn.execute(sa.select(
            signals.c.idempotency_key, signals.c.experiment, signals.c.signal_time).where(
            signals.c.kind == "training_complete", signals.c.status == "accepted",
            signals.c.experiment.is_not(None))):
        history.setdefault(experiment, []).append((when, key))
    runs = {r.experiment_name: r for r in conn.execute(sa.select(training_runs))}
    number: dict[str, int] = {}
    for experiment in sorted(set(history) | set(runs)):
        seen = history.get(experiment, [])
        seen.sort(key=lambda s: (s[0] or datetime.min, s[1]))
        run = runs.get(experiment)
        if run is not None and run.signal_key and run.signal_key not in {k for _, k in seen}:
            seen.append((None, run.signal_key))  # its signal's row is gone: the latest
        for n, (when, key) in enumerate(seen, start=1):
            latest = run is not None and run.signal_key == key
            conn.execute(sa.insert(generations).values(
                experiment_name=experiment, generation=n, signal_key=key, signal_time=when,
                checkpoint_path=run.checkpoint_path if latest else None,
                metadata=run.metadata if latest else None))
            number[key] = n
    for run in runs.values():
        if run.signal_key in number:
            conn.execute(sa.update(training_runs).where(training_runs.c.id == run.id)
                         .values(generation=number[run.signal_key]))
    for tbl in stage_tables:
        for row_id, trigger in conn.execute(sa.select(tbl.c.id, tbl.c.trigger_key)):
            n = number.get((trigger or "").split("#attempt-")[0])
            if n is not None:
                conn.execute(sa.update(tbl).where(tbl.c.id == row_id).values(generation=n))


def downgrade() -> None:
    for name in ("analysis_jobs", "evaluation_jobs", "training_runs"):
        with op.batch_alter_table(name) as batch:
            batch.drop_column("generation")
    op.drop_table("training_generations")
