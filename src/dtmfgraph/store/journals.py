"""The console's saved call journals (table ``call_journals``): one row per ended call, the
latest ``keep`` only."""

from __future__ import annotations

import json
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from .tables import call_journals

MAX_SAVED_BYTES: Final = 1_000_000
"""A saved journal's JSON is cut to about this: past it, entries lose their full SIP text and
notification bodies (their summaries stay)."""


def _fit(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    size = len(json.dumps(entries, separators=(",", ":")))
    if size <= MAX_SAVED_BYTES:
        return entries
    slim = []
    for entry in entries:
        if size > MAX_SAVED_BYTES and ("text" in entry or "body" in entry):
            cut = {k: v for k, v in entry.items() if k not in ("text", "body")}
            size -= len(str(entry.get("text", ""))) + len(str(entry.get("body", "")))
            cut["cut"] = True
            slim.append(cut)
        else:
            slim.append(entry)
    return slim


class JournalStore:
    def __init__(self, engine: AsyncEngine, keep: int = 1000) -> None:
        self.engine = engine
        self.keep = keep

    async def save(
        self,
        call_id: str,
        tenant_id: str,
        app_id: str,
        ended_at: float,
        entries: list[dict[str, Any]],
        dropped: int,
    ) -> None:
        """Write (or rewrite) a call's journal, then drop the oldest past ``keep``."""
        row = {
            "tenant_id": tenant_id,
            "app_id": app_id,
            "ended_at": ended_at,
            "dropped": dropped,
            "entries": _fit(entries),
        }
        async with self.engine.begin() as conn:
            done = await conn.execute(
                call_journals.update().where(call_journals.c.call_id == call_id).values(row)
            )
            if done.rowcount == 0:
                await conn.execute(call_journals.insert().values(call_id=call_id, **row))
            newest = (
                sa.select(call_journals.c.ended_at)
                .order_by(call_journals.c.ended_at.desc())
                .offset(self.keep)
                .limit(1)
                .scalar_subquery()
            )
            await conn.execute(call_journals.delete().where(call_journals.c.ended_at <= newest))

    async def load(self, call_id: str) -> tuple[list[dict[str, Any]], int] | None:
        """A saved journal's entries and its dropped count, or ``None``."""
        q = sa.select(call_journals.c.entries, call_journals.c.dropped).where(
            call_journals.c.call_id == call_id
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(q)).first()
        return None if row is None else (list(row.entries), int(row.dropped))
