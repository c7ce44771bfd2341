"""call_journals: the console's journal of each ended call; calls indexed by owner and time
(the console's calls list).

Revision ID: 0009
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "call_journals",
        sa.Column("call_id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("app_id", sa.String(128), nullable=False),
        sa.Column("ended_at", sa.Float, nullable=False),
        sa.Column("dropped", sa.Integer, nullable=False),
        sa.Column("entries", sa.JSON, nullable=False),
    )
    op.create_index("ix_call_journals_ended_at", "call_journals", ["ended_at"])
    op.create_index("ix_calls_owner_created", "calls", ["tenant_id", "app_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_calls_owner_created", "calls")
    op.drop_index("ix_call_journals_ended_at", "call_journals")
    op.drop_table("call_journals")
