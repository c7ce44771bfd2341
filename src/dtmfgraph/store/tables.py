"""The schema (SQLAlchemy Core). Alembic migrations in ``migrations/`` create and evolve it."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

calls = sa.Table(
    "calls",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("tenant_id", sa.String(128), nullable=False),
    sa.Column("app_id", sa.String(128), nullable=False),
    sa.Column("direction", sa.String(16), nullable=False),
    sa.Column("state", sa.String(32), nullable=False, index=True),
    sa.Column("callback_uri", sa.Text, nullable=False),
    sa.Column("target_uri", sa.Text, nullable=True),
    sa.Column("properties", sa.JSON, nullable=False),
    sa.Column("result_info", sa.JSON, nullable=True),
    sa.Column("tone_subscribed", sa.Boolean, nullable=False, default=False),
    sa.Column("tone_seq", sa.BigInteger, nullable=False, default=0),
    sa.Column("last_tone", sa.String(16), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("last_keepalive_at", sa.Float, nullable=False),
    sa.Column("media_record", sa.JSON, nullable=True),
    sa.Column("node_id", sa.String(128), nullable=True, index=True),
    sa.Column("audio_held", sa.Boolean, nullable=False, default=False, server_default=sa.false()),
    sa.Column("control", sa.JSON, nullable=True),
)

nodes = sa.Table(
    "nodes",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("heartbeat_at", sa.Float, nullable=False),
)

operations = sa.Table(
    "operations",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("call_id", sa.String(64), sa.ForeignKey("calls.id"), nullable=False, index=True),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("client_context", sa.String(256), nullable=True),
    sa.Column("completion_reason", sa.String(32), nullable=True),
    sa.Column("result_info", sa.JSON, nullable=True),
    sa.Column("tones", sa.JSON, nullable=False),
    sa.Column("delay_ms", sa.Integer, nullable=False),
    sa.Column("tone_ms", sa.Integer, nullable=False),
    sa.Column("method", sa.String(16), nullable=True),
    sa.Column("repeat_key", sa.String(128), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("params", sa.JSON, nullable=True),
    sa.Column("recording_location", sa.Text, nullable=True),
    sa.Column("recording_token", sa.String(64), nullable=True),
    sa.UniqueConstraint("call_id", "repeat_key", name="uq_operations_repeat"),
)

recordings = sa.Table(
    "recordings",
    metadata,
    sa.Column("op_id", sa.String(64), primary_key=True),
    sa.Column("call_id", sa.String(64), nullable=False),
    sa.Column("token_sha256", sa.String(64), nullable=False),
    sa.Column("wav", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False, index=True),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("call_id", sa.String(64), nullable=False, index=True),
    sa.Column("app_id", sa.String(128), nullable=False),
    sa.Column("callback_uri", sa.Text, nullable=False),
    sa.Column("event", sa.JSON, nullable=False),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.Float, nullable=False),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("delivered_at", sa.Float, nullable=True),
    sa.Column("claimed_by", sa.String(128), nullable=True),
    sa.Column("claimed_until", sa.Float, nullable=True),
    sa.Column("retry_from", sa.Float, nullable=True),
)

call_journals = sa.Table(
    "call_journals",
    metadata,
    sa.Column("call_id", sa.String(64), primary_key=True),
    sa.Column("tenant_id", sa.String(128), nullable=False),
    sa.Column("app_id", sa.String(128), nullable=False),
    sa.Column("ended_at", sa.Float, nullable=False, index=True),
    sa.Column("dropped", sa.Integer, nullable=False, default=0),
    sa.Column("entries", sa.JSON, nullable=False),
)
"""The console's journal of each ended call (``dtmfgraph.journal``), the latest ones only."""

sa.Index("ix_calls_owner_created", calls.c.tenant_id, calls.c.app_id, calls.c.created_at)
