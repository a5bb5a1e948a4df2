"""signals.extra_fields: the fields of a lab's own that an accepted signal carried (kept
with the signal, whatever its kind, instead of refusing the signal); NULL when it carried
none, and for the history recorded before

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 20:50:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("signals") as batch:
        batch.add_column(sa.Column("extra_fields", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("signals") as batch:
        batch.drop_column("extra_fields")
