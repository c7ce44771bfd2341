"""Persistence: calls, operations and the outbox (SQLite by default, PostgreSQL by URL)."""

from .migrate import upgrade
from .sql import OutboxItem, SqlRepository, SqlUnit

__all__ = ["OutboxItem", "SqlRepository", "SqlUnit", "upgrade"]
