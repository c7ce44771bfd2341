"""playPrompt and recordResponse: operation parameters and recording fields; the recordings.

Revision ID: 0007
Revises: 0009 (0009 landed first: the chain stays linear)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("operations") as batch:  # SQLite: batch mode
        batch.add_column(sa.Column("params", sa.JSON, nullable=True))
        batch.add_column(sa.Column("recording_location", sa.Text, nullable=True))
        batch.add_column(sa.Column("recording_token", sa.String(64), nullable=True))
    op.create_table(
        "recordings",
        sa.Column("op_id", sa.String(64), primary_key=True),
        sa.Column("call_id", sa.String(64), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("wav", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False, index=True),
    )


def downgrade() -> None:
    op.drop_table("recordings")
    with op.batch_alter_table("operations") as batch:
        batch.drop_column("recording_token")
        batch.drop_column("recording_location")
        batch.drop_column("params")
