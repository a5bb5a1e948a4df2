"""slurm_jobs.figures: whether a job's CPU time and MaxRSS are final (from accounting of
the finished job) or unavailable, so a job whose end came from the controller while
slurmdbd was down is asked about again, for a bounded time

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 19:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# frozen here: baton.ledger.schema.OPEN_JOB_SQL as of this revision
FINAL_JOB = (
    "state IN ('BOOT_FAIL', 'CANCELLED', 'COMPLETED', 'DEADLINE', 'FAILED', 'LOST', "
    "'NODE_FAIL', 'OUT_OF_MEMORY', 'PREEMPTED', 'REVOKED', 'SPECIAL_EXIT', 'SUBMIT_FAILED', "
    "'TIMEOUT')")
AWAITED = sa.text("figures IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("slurm_jobs") as batch:
        batch.add_column(sa.Column("figures", sa.String(length=16), nullable=True))
    # what earlier versions recorded for finished jobs stands; a finished job without CPU
    # time is asked about again (the tracker gives up, and says so, past its bound)
    op.execute(f"UPDATE slurm_jobs SET figures = 'final' WHERE {FINAL_JOB} "
               "AND cpu_seconds IS NOT NULL")
    op.execute(f"UPDATE slurm_jobs SET figures = 'unavailable' WHERE {FINAL_JOB} "
               "AND job_id IS NULL")
    op.create_index("ix_slurm_jobs_figures_awaited", "slurm_jobs", ["id"], unique=False,
                    sqlite_where=AWAITED, postgresql_where=AWAITED)


def downgrade() -> None:
    op.drop_index("ix_slurm_jobs_figures_awaited", table_name="slurm_jobs")
    with op.batch_alter_table("slurm_jobs") as batch:
        batch.drop_column("figures")
