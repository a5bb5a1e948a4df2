"""indexes for the status pages (baton web): a failure by status, a campaign's experiments

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 06:00:00
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# name -> (table, columns): the `failed` filter finds failed stage rows by status (with the
# experiment's name, so the index alone answers it), Campaigns a campaign's experiments
INDEXES = {
    "ix_training_runs_status": ("training_runs", ["status"]),
    "ix_training_runs_campaign": ("training_runs", ["campaign"]),
    "ix_evaluation_jobs_status": ("evaluation_jobs", ["status", "experiment_name"]),
    "ix_analysis_jobs_status": ("analysis_jobs", ["status", "experiment_name"]),
}


def upgrade() -> None:
    for name, (table, columns) in INDEXES.items():
        op.create_index(name, table, columns, unique=False)


def downgrade() -> None:
    for name, (table, _) in reversed(INDEXES.items()):
        op.drop_index(name, table_name=table)
