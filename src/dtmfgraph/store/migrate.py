"""Run the Alembic migrations (at startup) on the repository's own async engine.

A start on a schema that is already current (every restart) reads the stored revision and
compares it with the head of ``migrations/versions``, read from the files' ``revision`` and
``down_revision`` lines: Alembic (and Mako, and the migration scripts) is imported only when
there is something to migrate.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
VERSIONS = MIGRATIONS / "versions"

_REVISION = re.compile(r"^revision\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", re.M)
_DOWN = re.compile(r"^down_revision\s*(?::[^=]*)?=\s*(.+)$", re.M)


def head_revisions(versions: Path = VERSIONS) -> set[str]:
    """The revisions no other migration revises (one, unless the chain has branched), read
    from the migration files' text without importing them."""
    revisions: set[str] = set()
    revised: set[str] = set()
    for path in versions.glob("*.py"):
        text = path.read_text()
        found = _REVISION.search(text)
        if found is None:
            continue
        revisions.add(found.group(1))
        down = _DOWN.search(text)
        if down is not None:
            revised.update(re.findall(r"['\"]([^'\"]+)['\"]", down.group(1)))
    return revisions - revised


def stored_revisions(conn: Connection) -> set[str]:
    """The revisions recorded in the database (none when it was never migrated)."""
    if not sa.inspect(conn).has_table("alembic_version"):
        return set()
    rows = conn.execute(sa.text("SELECT version_num FROM alembic_version"))
    return {str(row[0]) for row in rows}


def _config(connection: Connection) -> Config:
    from alembic.config import Config  # noqa: PLC0415 (only when there is work to do)

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (nothing to import nor do when it is there already)."""
    if revision == "head":
        heads = head_revisions()
        async with engine.connect() as conn:
            stored = await conn.run_sync(stored_revisions)
        if heads and stored == heads:
            return

    def run(conn: Connection) -> None:
        from alembic import command  # noqa: PLC0415

        command.upgrade(_config(conn), revision)

    async with engine.begin() as conn:
        await conn.run_sync(run)
