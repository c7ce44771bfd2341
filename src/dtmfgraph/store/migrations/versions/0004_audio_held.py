"""calls.audio_held: the far end holds the call (Graph mediaState.audio inactive).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("calls") as batch:  # SQLite: batch mode
        batch.add_column(
            sa.Column("audio_held", sa.Boolean, nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("audio_held")
