"""maintenance_runs: each backup, archive, vacuum and log pruning, with its outcome (the
exporter's last-backup and backup-failure metrics, the drive's log space, the archive's
crash recovery read it).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 02:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "maintenance_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=False),
        sa.Column("path", sa.String(length=4096), nullable=True),
        sa.Column("bytes", sa.BigInteger(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_maintenance_runs"),
    )
    op.create_index("ix_maintenance_runs_kind", "maintenance_runs", ["kind", "finished_at"])


def downgrade() -> None:
    op.drop_index("ix_maintenance_runs_kind", table_name="maintenance_runs")
    op.drop_table("maintenance_runs")
