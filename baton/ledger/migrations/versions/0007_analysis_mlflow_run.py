"""analysis_jobs.mlflow_run_id: the analysis' MLflow run, for the Dagster link

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 05:05:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("analysis_jobs") as batch:
        batch.add_column(sa.Column("mlflow_run_id", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("analysis_jobs") as batch:
        batch.drop_column("mlflow_run_id")
