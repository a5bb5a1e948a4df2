"""the campaign control plane

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 02:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

import baton.ledger.schema

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(length=128), nullable=False),
        sa.Column("type", sa.String(length=128), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("display_name", sa.String(length=255), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("started_at", baton.ledger.schema.UTCDateTime(), nullable=True),
        sa.Column("expected_end", baton.ledger.schema.UTCDateTime(), nullable=True),
        sa.Column("expected_jobs", sa.Integer(), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("registered_at", baton.ledger.schema.UTCDateTime(), nullable=False),
        sa.Column("registered_by", sa.String(length=4096), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
        sa.UniqueConstraint("tag", "type", name=op.f("uq_campaigns_tag")),
    )
    op.create_table(
        "unknown_campaign_types",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=128), nullable=False),
        sa.Column("tag", sa.String(length=128), nullable=False),
        sa.Column("occurrences", sa.Integer(), nullable=False),
        sa.Column("first_seen", baton.ledger.schema.UTCDateTime(), nullable=False),
        sa.Column("last_seen", baton.ledger.schema.UTCDateTime(), nullable=False),
        sa.Column("source", sa.String(length=4096), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_unknown_campaign_types")),
        sa.UniqueConstraint("type", "tag", name=op.f("uq_unknown_campaign_types_type")),
    )


def downgrade() -> None:
    op.drop_table("unknown_campaign_types")
    op.drop_table("campaigns")
