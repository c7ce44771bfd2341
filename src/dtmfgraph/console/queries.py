"""What the console reads from the database: a page of calls, a call's operations and
notifications (the same tables the API uses; read-only)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from ..service import Principal
from ..store.tables import calls, operations, outbox

PAGE: Final = 50
MAX_PAGE: Final = 200


@dataclass(frozen=True, slots=True)
class CallRow:
    id: str
    direction: str
    state: str
    far_end: str
    created_at: float
    ended_at: float | None
    result: dict[str, Any] | None
    methods: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "direction": self.direction,
            "state": self.state,
            "farEnd": self.far_end,
            "createdAt": self.created_at,
            "endedAt": self.ended_at,
            "result": self.result,
            "methods": list(self.methods),
        }


def far_end(direction: str, target: str | None, properties: dict[str, Any]) -> str:
    """Whom the call is with: the target we dialled, or the caller's identity."""
    if direction == "outgoing":
        return target or ""
    identity = ((properties or {}).get("source") or {}).get("identity") or {}
    for value in identity.values():
        if isinstance(value, dict) and value.get("id"):
            return str(value["id"])
    return target or ""


async def calls_page(
    engine: AsyncEngine,
    who: Principal,
    *,
    before: float | None = None,
    limit: int = PAGE,
    heard: Callable[[str], set[str]] = lambda _: set(),
) -> list[CallRow]:
    """The principal's calls, newest first, ``limit`` of them created before ``before``
    (keyset paging: the next page asks for ``before`` = the last row's ``createdAt``). Methods
    are those of the operations, and those ``heard(call_id)`` adds (the journal's)."""
    limit = max(1, min(limit, MAX_PAGE))
    q = (
        sa.select(
            calls.c.id,
            calls.c.direction,
            calls.c.state,
            calls.c.target_uri,
            calls.c.properties,
            calls.c.created_at,
            calls.c.result_info,
        )
        .where(calls.c.tenant_id == who.tenant_id, calls.c.app_id == who.app_id)
        .order_by(calls.c.created_at.desc(), calls.c.id)
        .limit(limit)
    )
    if before is not None:
        q = q.where(calls.c.created_at < before)
    async with engine.connect() as conn:
        rows = (await conn.execute(q)).all()
        ids = [r.id for r in rows]
        methods: dict[str, set[str]] = {i: set() for i in ids}
        ended: dict[str, float] = {}
        if ids:
            mq = (
                sa.select(operations.c.call_id, operations.c.method)
                .where(operations.c.call_id.in_(ids), operations.c.method.is_not(None))
                .distinct()
            )
            for call_id, method in await conn.execute(mq):
                methods[call_id].add(str(method))
            done = [r.id for r in rows if r.state == "terminated"]
            if done:  # a call's last notification is its end (callDeleted)
                eq = (
                    sa.select(outbox.c.call_id, sa.func.max(outbox.c.created_at))
                    .where(outbox.c.call_id.in_(done))
                    .group_by(outbox.c.call_id)
                )
                ended = {c: float(t) for c, t in await conn.execute(eq)}
    return [
        CallRow(
            r.id,
            r.direction,
            r.state,
            far_end(r.direction, r.target_uri, r.properties),
            float(r.created_at),
            ended.get(r.id),
            r.result_info,
            tuple(sorted(methods[r.id] | heard(r.id))),
        )
        for r in rows
    ]


async def notifications(engine: AsyncEngine, call_id: str) -> list[dict[str, Any]]:
    """The call's outbox rows (each notification, its state and attempts so far)."""
    q = sa.select(outbox).where(outbox.c.call_id == call_id).order_by(outbox.c.id)
    async with engine.connect() as conn:
        return [
            {
                "id": r.id,
                "kind": (r.event or {}).get("kind"),
                "state": r.state,
                "attempts": r.attempts,
                "lastError": r.last_error,
                "createdAt": r.created_at,
                "deliveredAt": r.delivered_at,
                "uri": r.callback_uri,
            }
            for r in await conn.execute(q)
        ]
