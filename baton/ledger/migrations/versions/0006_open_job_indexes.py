"""indexes for the tracker: open jobs (partial) and ended_at

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 03:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# frozen here: baton.ledger.schema.OPEN_JOB_SQL as of this revision
OPEN_JOB = sa.text(
    "state NOT IN ('BOOT_FAIL', 'CANCELLED', 'COMPLETED', 'DEADLINE', 'FAILED', 'LOST', "
    "'NODE_FAIL', 'OUT_OF_MEMORY', 'PREEMPTED', 'REVOKED', 'SPECIAL_EXIT', 'SUBMIT_FAILED', "
    "'TIMEOUT')")


def upgrade() -> None:
    op.create_index("ix_slurm_jobs_open", "slurm_jobs", ["id"], unique=False,
                    sqlite_where=OPEN_JOB, postgresql_where=OPEN_JOB)
    op.create_index("ix_slurm_jobs_ended_at", "slurm_jobs", ["ended_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_slurm_jobs_ended_at", table_name="slurm_jobs")
    op.drop_index("ix_slurm_jobs_open", table_name="slurm_jobs")
