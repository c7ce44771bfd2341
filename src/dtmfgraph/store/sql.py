"""``SqlRepository``: the service's repository and the notification outbox on SQLAlchemy (async)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from ..service.errors import StoreUnavailableError
from ..service.model import (
    Call,
    CallControl,
    CallState,
    CompletionReason,
    Direction,
    DtmfMethod,
    Event,
    EventKind,
    Operation,
    OpKind,
    OpStatus,
    ResultInfo,
)
from ..service.outage import StoreHealth
from ..service.recordings import Recording
from .sqlite_runs import Run, write_runs
from .tables import calls, nodes, operations, outbox, recordings
from .turns import Turns, TurnTimeoutError

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"

POOL_TIMEOUT_S = 5.0
"""Longest wait for a pooled connection; past it the request is answered 503 with
``Retry-After`` (a change of a live call waits in memory and is retried), never a dead task."""

PG_WRITERS = 4
"""Groups of live calls' changes written at once on PostgreSQL (each a transaction on its own
connection, of the pool's 10 kept; see ``service.write_behind``)."""


@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: int
    call_id: str
    app_id: str
    callback_uri: str
    event: Event
    attempts: int
    created_at: float = 0.0
    retry_from: float | None = None
    """When its retry window began, if it was redelivered (else: ``created_at``)."""


def _call_row(c: Call) -> dict[str, Any]:
    return {
        "id": c.id,
        "tenant_id": c.tenant_id,
        "app_id": c.app_id,
        "direction": c.direction.value,
        "state": c.state.value,
        "callback_uri": c.callback_uri,
        "target_uri": c.target_uri,
        "properties": c.properties,
        "result_info": c.result_info.to_dict() if c.result_info else None,
        "tone_subscribed": c.tone_subscribed,
        "tone_seq": c.tone_seq,
        "last_tone": c.last_tone,
        "created_at": c.created_at,
        "last_keepalive_at": c.last_keepalive_at,
        "media_record": c.media_record,
        "node_id": c.node_id,
        "audio_held": c.audio_held,
        "control": c.control.to_json(),
    }


def _call(r: sa.Row[Any]) -> Call:
    m = r._mapping
    return Call(
        id=m["id"],
        tenant_id=m["tenant_id"],
        app_id=m["app_id"],
        direction=Direction(m["direction"]),
        state=CallState(m["state"]),
        callback_uri=m["callback_uri"],
        target_uri=m["target_uri"],
        properties=dict(m["properties"]),
        result_info=ResultInfo.from_dict(m["result_info"]),
        tone_subscribed=bool(m["tone_subscribed"]),
        tone_seq=int(m["tone_seq"]),
        last_tone=m["last_tone"],
        created_at=float(m["created_at"]),
        last_keepalive_at=float(m["last_keepalive_at"]),
        media_record=dict(m["media_record"]) if m["media_record"] else None,
        node_id=m["node_id"],
        audio_held=bool(m["audio_held"]),
        control=CallControl.from_json(m["control"]),
    )


def _op_row(o: Operation) -> dict[str, Any]:
    return {
        "id": o.id,
        "call_id": o.call_id,
        "kind": o.kind.value,
        "status": o.status.value,
        "client_context": o.client_context,
        "completion_reason": o.completion_reason.value if o.completion_reason else None,
        "result_info": o.result_info.to_dict() if o.result_info else None,
        "tones": o.tones,
        "delay_ms": o.delay_ms,
        "tone_ms": o.tone_ms,
        "method": o.method.value if o.method else None,
        "repeat_key": o.repeat_key,
        "created_at": o.created_at,
        "params": o.params,
        "recording_location": o.recording_location,
        "recording_token": o.recording_access_token,
    }


def _op(r: sa.Row[Any]) -> Operation:
    m = r._mapping
    return Operation(
        id=m["id"],
        call_id=m["call_id"],
        kind=OpKind(m["kind"]),
        status=OpStatus(m["status"]),
        client_context=m["client_context"],
        completion_reason=CompletionReason(m["completion_reason"])
        if m["completion_reason"]
        else None,
        result_info=ResultInfo.from_dict(m["result_info"]),
        tones=list(m["tones"]),
        delay_ms=int(m["delay_ms"]),
        tone_ms=int(m["tone_ms"]),
        method=DtmfMethod(m["method"]) if m["method"] else None,
        repeat_key=m["repeat_key"],
        created_at=float(m["created_at"]),
        params=dict(m["params"]) if m["params"] is not None else None,
        recording_location=m["recording_location"],
        recording_access_token=m["recording_token"],
    )


def _event_json(e: Event) -> dict[str, Any]:
    # the snapshots are plain JSON already: no deep copy (``asdict``) before they are written
    return {"kind": e.kind.value, "call_id": e.call_id, "call": e.call, "operation": e.operation}


def _event(d: dict[str, Any]) -> Event:
    return Event(EventKind(d["kind"]), d["call_id"], d["call"], d.get("operation"))


# The statements of the request path, built once: executed with their parameters, they skip
# building a statement (and its cache key's bind values) per call.
_B_ID: sa.BindParameter[str] = sa.bindparam("b_id")
_B_CALL: sa.BindParameter[str] = sa.bindparam("b_call_id")
_GET_CALL = sa.select(calls).where(calls.c.id == _B_ID)
_INSERT_CALL = calls.insert()
_UPDATE_CALL = calls.update().where(calls.c.id == _B_ID)
_GET_OP = sa.select(operations).where(operations.c.id == _B_ID, operations.c.call_id == _B_CALL)
_LIST_OPS = sa.select(operations).where(operations.c.call_id == _B_CALL).order_by(operations.c.seq)
_FIND_REPEAT = sa.select(operations).where(
    operations.c.call_id == _B_CALL, operations.c.repeat_key == sa.bindparam("b_repeat")
)


def _upsert_op(insert: Any) -> sa.Insert:
    """Insert an operation, or update it where it is already there (a write retried after a
    commit that did land), its ``seq`` (order) kept."""
    stmt = insert(operations)
    kept = ("id", "seq")
    changed = {c.name: stmt.excluded[c.name] for c in operations.c if c.name not in kept}
    return stmt.on_conflict_do_update(index_elements=[operations.c.id], set_=changed)  # type: ignore[no-any-return]


def _upsert_call(insert: Any) -> sa.Insert:
    """Insert a call, or update it where it is already there (a write retried after a commit
    that did land)."""
    stmt = insert(calls)
    changed = {c.name: stmt.excluded[c.name] for c in calls.c if c.name != "id"}
    return stmt.on_conflict_do_update(index_elements=[calls.c.id], set_=changed)  # type: ignore[no-any-return]


_INSERT_OP = {"sqlite": _upsert_op(sqlite_insert), "postgresql": _upsert_op(pg_insert)}
_SAVE_CALL = {"sqlite": _upsert_call(sqlite_insert), "postgresql": _upsert_call(pg_insert)}
_UPDATE_OP = operations.update().where(operations.c.id == _B_ID)
_INSERT_EVENT = outbox.insert()
_WRITE_ORDER = {"calls": 0, "operations": 1, "outbox": 2}
"""The order a batched unit writes its tables in: a row before the rows that refer to it
(an operation's ``call_id``); within a table, the order the writes were made."""


class SqlUnit:
    """One transaction (implements ``service.repository.UnitOfWork``).

    ``batched``: the writes of calls, operations and notifications are kept until the unit
    ends (or until it reads), then written a table at a time, each run of the same statement
    as one ``executemany`` (see :meth:`flush`; on SQLite all of them in one round trip to
    aiosqlite's thread, :mod:`.sqlite_runs`): a group of many calls' changes costs one or a
    few round trips to the driver instead of several per row (with aiosqlite each statement is
    three hops between the event loop and its thread, each waiting for a busy loop's turn)."""

    def __init__(self, conn: AsyncConnection, *, batched: bool = False) -> None:
        self._c = conn
        self.wrote = False
        """Whether this transaction changed anything (only a write shows the store is back:
        a read-only or full store still reads)."""
        self._held: list[tuple[int, sa.Executable, dict[str, Any]]] | None = [] if batched else None

    async def _exec(
        self, stmt: sa.Executable, params: dict[str, Any] | None = None
    ) -> sa.CursorResult[Any]:
        if isinstance(stmt, (sa.Insert, sa.Update, sa.Delete)):
            self.wrote = True
        if self._held:
            await self.flush()  # what this reads or writes sees the writes made before it
        return await self._c.execute(stmt, params)

    async def _write(self, table: str, stmt: sa.Executable, params: dict[str, Any]) -> None:
        """A write of a row of ``table``: now, or held for :meth:`flush` (``batched``)."""
        if self._held is None:
            await self._exec(stmt, params)
            return
        self.wrote = True
        self._held.append((_WRITE_ORDER[table], stmt, params))

    async def flush(self) -> None:
        """Write the held writes: table by table (:data:`_WRITE_ORDER`), in the order they were
        made, each run of one statement in one ``executemany``."""
        held = self._held
        if not held:
            return
        self._held = []
        held.sort(key=lambda w: w[0])  # stable: each table's writes keep their order
        runs: list[Run] = []
        for _, stmt, params in held:
            if runs and runs[-1][0] is stmt:
                runs[-1][1].append(params)
            else:
                runs.append((stmt, [params]))
        if await write_runs(self._c, runs):  # SQLite: all of them in one round trip
            return
        for stmt, rows in runs:
            await self._c.execute(stmt, rows if len(rows) > 1 else rows[0])

    async def get_call(self, call_id: str) -> Call | None:
        r = (await self._exec(_GET_CALL, {"b_id": call_id})).first()
        return _call(r) if r else None

    async def insert_call(self, call: Call) -> None:
        await self._write("calls", _INSERT_CALL, _call_row(call))

    async def save_call(self, call: Call) -> None:
        """Insert ``call``, or update it where it is already there (a retried write)."""
        await self._write("calls", _SAVE_CALL[self._c.dialect.name], _call_row(call))

    async def update_call(self, call: Call) -> None:
        await self._write("calls", _UPDATE_CALL, {**_call_row(call), "b_id": call.id})

    async def unfinished_calls(self) -> list[Call]:
        q = sa.select(calls).where(calls.c.state != CallState.TERMINATED.value)
        return [_call(r) for r in await self._exec(q)]

    async def node_alive(self, node_id: str, now: float, *, started: bool = False) -> None:
        """Record that ``node_id`` is alive at ``now`` (``started``: it just started)."""
        values: dict[str, Any] = {"heartbeat_at": now}
        if started:
            values["started_at"] = now
        done = await self._exec(nodes.update().where(nodes.c.id == node_id).values(values))
        if done.rowcount == 0:
            await self._exec(nodes.insert().values(id=node_id, started_at=now, heartbeat_at=now))

    async def node_stopped(self, node_id: str) -> None:
        """Record that ``node_id`` stopped: to the other nodes it is gone at once (its row is
        kept; it beats again when it restarts)."""
        await self._exec(nodes.update().where(nodes.c.id == node_id).values(heartbeat_at=0.0))

    async def calls_of_node(self, node_id: str) -> list[Call]:
        """The calls ``node_id`` carries that are not terminated."""
        q = sa.select(calls).where(
            calls.c.state != CallState.TERMINATED.value, calls.c.node_id == node_id
        )
        return [_call(r) for r in await self._exec(q)]

    async def first_node_alive(self, me: str, dead_before: float) -> bool:
        """Whether ``me`` comes first (by id) among the nodes alive: ``me`` and those that
        have beaten since ``dead_before``."""
        first = await self._c.scalar(
            sa.select(sa.func.min(nodes.c.id)).where(
                sa.or_(nodes.c.heartbeat_at >= dead_before, nodes.c.id == me)
            )
        )
        return first is None or first == me

    async def orphaned_calls(self, me: str, dead_before: float, *, own: bool) -> list[Call]:
        """Unfinished calls whose node is gone: a node with no heartbeat since
        ``dead_before``, or not known; with ``own``, also ``me``'s (from its previous run) and
        calls with no node (made before nodes were recorded). On PostgreSQL the rows are locked
        and rows another node has locked are skipped, so one node takes each orphan."""
        alive = _others_alive(me, dead_before)
        gone = sa.and_(calls.c.node_id.is_not(None), calls.c.node_id.not_in(alive))
        if own:
            gone = sa.or_(gone, calls.c.node_id.is_(None))
        else:
            gone = sa.and_(gone, calls.c.node_id != me)
        q = sa.select(calls).where(calls.c.state != CallState.TERMINATED.value, gone)
        if self._c.dialect.name == "postgresql":
            q = q.with_for_update(skip_locked=True)
        return [_call(r) for r in await self._exec(q)]

    async def release_claims(self, me: str, dead_before: float, *, own: bool) -> int:
        """Free the outbox rows that gone nodes had claimed (and, with ``own``, those of
        ``me``'s previous run), so that their notifications go out now rather than when the
        claims lapse; returns how many."""
        gone: sa.ColumnElement[bool] = outbox.c.claimed_by.not_in(_others_alive(me, dead_before))
        if not own:
            gone = sa.and_(gone, outbox.c.claimed_by != me)
        done = await self._exec(
            outbox.update()
            .where(outbox.c.state == PENDING, outbox.c.claimed_until.is_not(None), gone)
            .values(claimed_until=None)
        )
        return int(done.rowcount or 0)

    async def get_operation(self, call_id: str, op_id: str) -> Operation | None:
        r = (await self._exec(_GET_OP, {"b_id": op_id, "b_call_id": call_id})).first()
        return _op(r) if r else None

    async def list_operations(self, call_id: str) -> list[Operation]:
        return [_op(r) for r in await self._exec(_LIST_OPS, {"b_call_id": call_id})]

    async def find_repeat(self, call_id: str, repeat_key: str) -> Operation | None:
        r = (await self._exec(_FIND_REPEAT, {"b_call_id": call_id, "b_repeat": repeat_key})).first()
        return _op(r) if r else None

    async def insert_operation(self, op: Operation) -> None:
        """Insert ``op`` (or update it, if a retried write finds it there)."""
        stmt = _INSERT_OP[self._c.dialect.name]
        await self._write("operations", stmt, {**_op_row(op), "seq": time.time_ns()})

    async def update_operation(self, op: Operation) -> None:
        await self._write("operations", _UPDATE_OP, {**_op_row(op), "b_id": op.id})

    async def insert_recording(self, rec: Recording) -> None:
        await self._exec(
            recordings.insert().values(
                op_id=rec.op_id,
                call_id=rec.call_id,
                token_sha256=rec.token_digest,
                wav=rec.wav,
                created_at=rec.created_at,
                expires_at=rec.expires_at,
            )
        )

    async def get_recording(self, op_id: str) -> Recording | None:
        q = sa.select(recordings).where(recordings.c.op_id == op_id)
        r = (await self._exec(q)).first()
        if r is None:
            return None
        return Recording(
            r.op_id, r.call_id, r.token_sha256, bytes(r.wav), r.created_at, r.expires_at
        )

    async def delete_expired_recordings(self, now: float) -> int:
        done = await self._exec(recordings.delete().where(recordings.c.expires_at <= now))
        return int(done.rowcount or 0)

    async def add_event(self, event: Event, *, callback_uri: str, app_id: str) -> None:
        t = time.time()
        await self._write(
            "outbox",
            _INSERT_EVENT,
            {
                "call_id": event.call_id,
                "app_id": app_id,
                "callback_uri": callback_uri,
                "event": _event_json(event),
                "state": PENDING,
                "attempts": 0,
                "next_attempt_at": t,
                "created_at": t,
            },
        )


class SqlRepository:
    """Calls, operations and the outbox in one database (SQLite or PostgreSQL)."""

    def __init__(self, url: str, *, pool_timeout_s: float = POOL_TIMEOUT_S) -> None:
        self.url = url
        self.engine: AsyncEngine = create_async_engine(url, **_engine_options(url, pool_timeout_s))
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.health = StoreHealth()
        """Up or down; told of every transaction (see :func:`unavailable`)."""
        self._turns = Turns(pool_timeout_s) if _one_connection(url) else None
        """Who uses SQLite's one connection next (see :mod:`.turns`)."""
        self.writers = 1 if self.engine.dialect.name == "sqlite" else PG_WRITERS
        """Write transactions worth running at once (SQLite takes one writer at a time)."""
        self._beat_engine = self.engine
        if self.engine.dialect.name != "sqlite":
            # the heartbeat's own connection: a burst of requests holding the whole pool past
            # the lease (node_dead_after_s) would make the other nodes take this one for dead
            self._beat_engine = create_async_engine(
                url, pool_size=1, max_overflow=0, pool_timeout=pool_timeout_s, pool_pre_ping=True
            )

    @asynccontextmanager
    async def unit(self) -> AsyncIterator[SqlUnit]:
        done: list[SqlUnit] = []
        wrote = lambda: any(u.wrote for u in done)  # noqa: E731
        async with self.guard(wrote, urgent=True), self.engine.begin() as conn:
            done.append(unit := SqlUnit(conn))
            yield unit

    @asynccontextmanager
    async def batched_unit(self) -> AsyncIterator[SqlUnit]:
        """A :meth:`unit` whose writes are held and written together at its end (see
        :class:`SqlUnit`): for the write-behind's groups of many calls' changes."""
        done: list[SqlUnit] = []
        wrote = lambda: any(u.wrote for u in done)  # noqa: E731
        async with self.guard(wrote, urgent=True), self.engine.begin() as conn:
            done.append(unit := SqlUnit(conn, batched=True))
            yield unit
            await unit.flush()

    @asynccontextmanager
    async def beat_unit(self) -> AsyncIterator[SqlUnit]:
        """A transaction on the heartbeat's own connection (PostgreSQL; on SQLite, whose one
        writer at a time is the one pooled connection, an ordinary :meth:`unit`)."""
        async with self.guard(urgent=True), self._beat_engine.begin() as conn:
            yield SqlUnit(conn)

    @asynccontextmanager
    async def guard(
        self, wrote: Callable[[], bool] = lambda: True, *, urgent: bool = False
    ) -> AsyncIterator[None]:
        """Around a use of :attr:`engine`: the store being away (read-only, full, stopped,
        unreachable) becomes :class:`StoreUnavailableError` and is told to :attr:`health`
        (which logs once per outage); anything else passes through unchanged. A success
        that ``wrote`` tells :attr:`health` the store is back. On SQLite's one connection,
        an ``urgent`` use (what a request waits for) goes before the others waiting
        (:mod:`.turns`)."""
        try:
            async with self._turns.turn(urgent=urgent) if self._turns else nullcontext():
                yield
        except StoreUnavailableError:
            raise
        except (sa.exc.TimeoutError, TurnTimeoutError) as exc:  # the connection stayed in use
            raise StoreUnavailableError(
                "the store is busy (every connection is in use); retry later", retry_after_s=1
            ) from exc
        except Exception as exc:
            if not unavailable(exc):
                raise
            self.health.failed(exc)
            if self.engine.dialect.name == "sqlite":
                # a connection that failed mid-write (a journal it could not remove) keeps a
                # stale view of the file: start afresh
                await self.engine.dispose()
            raise StoreUnavailableError("the store is unavailable for now; retry later") from exc
        if wrote():
            self.health.ok()

    async def close(self) -> None:
        await self.engine.dispose()
        if self._beat_engine is not self.engine:
            await self._beat_engine.dispose()

    # --- outbox ---------------------------------------------------------------------------
    @staticmethod
    def _first_pending_of_its_call() -> sa.ColumnElement[bool]:
        """The row is pending and the first of its call not delivered: a dead row holds the
        rows after it (order per call) until it is redelivered."""
        o2 = outbox.alias("o2")
        first = (
            sa.select(sa.func.min(o2.c.id))
            .where(o2.c.call_id == outbox.c.call_id, o2.c.state.in_([PENDING, DEAD]))
            .scalar_subquery()
        )
        return sa.and_(outbox.c.state == PENDING, outbox.c.id == first)

    async def due_notifications(
        self,
        now: float,
        limit: int = 100,
        *,
        node: str = "",
        lease_s: float = 30.0,
        per_call: int = 1,
    ) -> list[OutboxItem]:
        """Claim the first pending notification of each call, where it is due and no other
        node holds it, for ``node`` until ``now + lease_s`` (delivering or failing it ends
        the claim; a node that dies lets its claims lapse). On PostgreSQL the candidate rows
        are locked and rows another node is claiming are skipped: each goes to one node.

        With ``per_call`` > 1, the rows pending behind each such head are claimed with it, up
        to ``per_call`` rows a call, as long as they go to the head's callback URI and app (a
        batch: one POST). At most ``limit`` calls; rows come call by call, each call's in
        order."""
        free = sa.or_(outbox.c.claimed_until.is_(None), outbox.c.claimed_until < now)
        q = (
            sa.select(outbox)
            .where(self._first_pending_of_its_call(), outbox.c.next_attempt_at <= now, free)
            .order_by(outbox.c.id)
            .limit(limit)
        )
        rows: list[sa.Row[Any]] = []
        async with self.guard(wrote=lambda: bool(rows)), self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                q = q.with_for_update(skip_locked=True)
            rows = list((await conn.execute(q)).all())
            if rows and per_call > 1:
                rows = await self._with_followers(conn, rows, per_call)
            if rows:
                await conn.execute(
                    outbox.update()
                    .where(outbox.c.id.in_([r.id for r in rows]))
                    .values(claimed_by=node, claimed_until=now + lease_s)
                )
        return [
            OutboxItem(
                id=int(r.id),
                call_id=r.call_id,
                app_id=r.app_id,
                callback_uri=r.callback_uri,
                event=_event(r.event),
                attempts=int(r.attempts),
                created_at=float(r.created_at),
                retry_from=None if r.retry_from is None else float(r.retry_from),
            )
            for r in rows
        ]

    @staticmethod
    async def _with_followers(
        conn: AsyncConnection, heads: list[sa.Row[Any]], per_call: int
    ) -> list[sa.Row[Any]]:
        """The head rows, each followed by the pending rows of its call after it (up to
        ``per_call`` in all, stopping at one for another callback URI or app). Those rows are
        reached only through their head, which this transaction claims (and locks, on
        PostgreSQL): no other node claims them meanwhile."""
        rank = (
            sa.func.row_number()
            .over(partition_by=outbox.c.call_id, order_by=outbox.c.id)
            .label("rank")
        )
        pending = (
            sa.select(outbox, rank)
            .where(outbox.c.call_id.in_([h.call_id for h in heads]), outbox.c.state == PENDING)
            .subquery()
        )
        q = sa.select(pending).where(pending.c.rank <= per_call).order_by(pending.c.id)
        behind: dict[str, list[sa.Row[Any]]] = {}
        for r in (await conn.execute(q)).all():
            behind.setdefault(r.call_id, []).append(r)
        out: list[sa.Row[Any]] = []
        for head in heads:
            out.append(head)
            for r in behind.get(head.call_id, ()):
                if r.id <= head.id:
                    continue
                if (r.callback_uri, r.app_id) != (head.callback_uri, head.app_id):
                    break
                out.append(r)
        return out

    async def next_notification_at(self) -> float | None:
        """When the next call's head-of-line notification is due (later rows wait for it), or
        its claim by another node lapses."""
        claimed = sa.and_(
            outbox.c.claimed_until.is_not(None), outbox.c.claimed_until > outbox.c.next_attempt_at
        )
        when = sa.case((claimed, outbox.c.claimed_until), else_=outbox.c.next_attempt_at)
        q = sa.select(sa.func.min(when)).where(self._first_pending_of_its_call())
        async with self.guard(wrote=lambda: False), self.engine.connect() as conn:
            v = (await conn.execute(q)).scalar()
        return float(v) if v is not None else None

    async def mark_delivered(self, item_id: int) -> None:
        await self.mark_delivered_many([item_id])

    async def mark_delivered_many(self, item_ids: list[int]) -> None:
        """Mark rows delivered, in one transaction."""
        if not item_ids:
            return
        async with self.guard(), self.engine.begin() as conn:
            await conn.execute(
                outbox.update()
                .where(outbox.c.id.in_(item_ids))
                .values(
                    state=DELIVERED,
                    delivered_at=time.time(),
                    attempts=outbox.c.attempts + 1,
                    claimed_until=None,
                )
            )

    async def mark_failed_attempt(
        self, item_id: int, *, error: str, retry_at: float | None
    ) -> None:
        """Record a failed attempt: retry at ``retry_at``, or give up (kept as ``dead``, with
        the call's later rows: they wait behind it, see :meth:`redeliver`)."""
        await self.mark_failed_many([item_id], error=error, retry_at=retry_at)

    async def mark_failed_many(
        self, item_ids: list[int], *, error: str, retry_at: float | None
    ) -> None:
        """:meth:`mark_failed_attempt` for the rows of one POST (a call's, in order), in one
        transaction: all retried at ``retry_at``, or all dead, with the call's rows after
        them held behind the first."""
        if not item_ids:
            return
        values: dict[str, Any] = {
            "attempts": outbox.c.attempts + 1,
            "last_error": error[:2000],
            "claimed_until": None,
        }
        if retry_at is None:
            values["state"] = DEAD
        else:
            values["next_attempt_at"] = retry_at
        async with self.guard(), self.engine.begin() as conn:
            await conn.execute(outbox.update().where(outbox.c.id.in_(item_ids)).values(values))
            if retry_at is None:
                await self._held_behind(conn, max(item_ids), first=min(item_ids))

    @staticmethod
    async def _held_behind(conn: AsyncConnection, item_id: int, first: int | None = None) -> None:
        """The call's pending rows after ``item_id`` are kept dead, "held behind" ``first``
        (default: ``item_id``), the row to redeliver."""
        call = sa.select(outbox.c.call_id).where(outbox.c.id == item_id).scalar_subquery()
        head = item_id if first is None else first
        await conn.execute(
            outbox.update()
            .where(outbox.c.call_id == call, outbox.c.state == PENDING, outbox.c.id > item_id)
            .values(state=DEAD, claimed_until=None, last_error=f"held behind notification {head}")
        )

    async def renew_claim(self, item_id: int, node: str, until: float) -> bool:
        """Extend ``node``'s claim on a pending row; False if the row is no longer its own."""
        return await self.renew_claims([item_id], node, until) == 1

    async def renew_claims(self, item_ids: list[int], node: str, until: float) -> int:
        """:meth:`renew_claim` for several rows in one transaction; returns how many are
        still ``node``'s."""
        if not item_ids:
            return 0
        async with self.guard(), self.engine.begin() as conn:
            done = await conn.execute(
                outbox.update()
                .where(
                    outbox.c.id.in_(item_ids),
                    outbox.c.state == PENDING,
                    outbox.c.claimed_by == node,
                )
                .values(claimed_until=until)
            )
        return int(done.rowcount or 0)

    async def give_up(self, item_ids: list[int], error: str) -> None:
        """Keep rows that were not tried (their receiver kept failing past their retry
        window) as dead, with the rows after them."""
        async with self.guard(), self.engine.begin() as conn:
            for item_id in item_ids:
                await conn.execute(
                    outbox.update()
                    .where(outbox.c.id == item_id, outbox.c.state == PENDING)
                    .values(state=DEAD, last_error=error[:2000], claimed_until=None)
                )
                await self._held_behind(conn, item_id)

    async def postpone(self, item_ids: list[int], at: float, *, node: str = "") -> None:
        """Give back claimed rows, not tried, due again at ``at`` (their receiver backs off)."""
        if not item_ids:
            return
        async with self.guard(), self.engine.begin() as conn:
            await conn.execute(
                outbox.update()
                .where(
                    outbox.c.id.in_(item_ids),
                    outbox.c.state == PENDING,
                    outbox.c.claimed_by == node,
                )
                .values(next_attempt_at=at, claimed_until=None)
            )

    async def retry_now(self, callback_uris: list[str], now: float) -> int:
        """Make the pending rows for these callback URIs due now (their receiver answered
        again); returns how many were waiting."""
        if not callback_uris:
            return 0
        async with self.guard(), self.engine.begin() as conn:
            done = await conn.execute(
                outbox.update()
                .where(
                    outbox.c.state == PENDING,
                    outbox.c.callback_uri.in_(callback_uris),
                    outbox.c.next_attempt_at > now,
                )
                .values(next_attempt_at=now)
            )
        return int(done.rowcount or 0)

    async def undelivered(
        self, *, dead: bool = True, call_id: str | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """Dead rows (or, with ``dead=False``, pending ones), oldest first (``dtmfgraph
        notifications list``)."""
        state = DEAD if dead else PENDING
        q = sa.select(outbox).where(outbox.c.state == state).order_by(outbox.c.id).limit(limit)
        if call_id is not None:
            q = q.where(outbox.c.call_id == call_id)
        async with self.guard(wrote=lambda: False), self.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(q)]

    async def redeliver(
        self, *, ids: list[int] | None = None, call_id: str | None = None, now: float
    ) -> int:
        """Put dead rows back in the queue, due now, with a new retry window: the given ones
        and the dead rows of their calls after them (with ``ids``), those of one call, or all
        (neither); returns how many."""
        values = {"state": PENDING, "next_attempt_at": now, "retry_from": now}
        base = outbox.update().where(outbox.c.state == DEAD).values(claimed_until=None, **values)
        if call_id is not None:
            base = base.where(outbox.c.call_id == call_id)
        n = 0
        async with self.guard(), self.engine.begin() as conn:
            if ids is None:
                return int((await conn.execute(base)).rowcount or 0)
            for item_id in ids:
                call = sa.select(outbox.c.call_id).where(outbox.c.id == item_id)
                q = base.where(outbox.c.call_id == call.scalar_subquery(), outbox.c.id >= item_id)
                n += int((await conn.execute(q)).rowcount or 0)
        return n

    # --- monitoring -----------------------------------------------------------------------
    async def calls_by_state(self) -> dict[str, int]:
        """How many calls are in each state (every node's calls: the database's view)."""
        q = sa.select(calls.c.state, sa.func.count()).group_by(calls.c.state)
        async with self.guard(wrote=lambda: False), self.engine.connect() as conn:
            return {str(state): int(n) for state, n in await conn.execute(q)}

    async def outbox_backlog(self) -> dict[str, int]:
        """Outbox rows not delivered, by state: ``pending`` (waiting or being retried), ``dead``."""
        q = (
            sa.select(outbox.c.state, sa.func.count())
            .where(outbox.c.state.in_([PENDING, DEAD]))
            .group_by(outbox.c.state)
        )
        counts = {PENDING: 0, DEAD: 0}
        async with self.guard(wrote=lambda: False), self.engine.connect() as conn:
            counts.update({str(state): int(n) for state, n in await conn.execute(q)})
        return counts

    async def outbox_rows(self, call_id: str | None = None) -> list[dict[str, Any]]:
        """Every outbox row (for diagnostics and tests)."""
        q = sa.select(outbox).order_by(outbox.c.id)
        if call_id is not None:
            q = q.where(outbox.c.call_id == call_id)
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(q)]


def _others_alive(me: str, dead_before: float) -> sa.Select[tuple[str]]:
    """The nodes other than ``me`` that have beaten since ``dead_before``."""
    return sa.select(nodes.c.id).where(nodes.c.heartbeat_at >= dead_before, nodes.c.id != me)


_UNAVAILABLE_SQLSTATES = ("08", "53", "57P")
"""PostgreSQL error classes of a server that is away: connection exception, insufficient
resources (disk full), operator intervention (shutting down, starting up)."""


def unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the store is away for now (rather than that a statement is wrong):
    SQLite's read-only, full, locked or I/O errors, a PostgreSQL server stopped, restarting,
    unreachable or out of disk, a connection lost."""
    if isinstance(exc, (OSError, TimeoutError, sa.exc.OperationalError, sa.exc.InterfaceError)):
        return True
    if isinstance(exc, sa.exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        state = str(getattr(exc.orig, "sqlstate", "") or getattr(exc.orig, "pgcode", "") or "")
        return state.startswith(_UNAVAILABLE_SQLSTATES)
    return type(exc).__module__.startswith("asyncpg") and "Connection" in type(exc).__name__


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL: readers never wait for the writer, and a commit appends to the log instead of
    rewriting pages and a journal (one fsync at checkpoints, not several per commit). With
    ``synchronous=NORMAL`` a commit is durable across a crash of the process (the restart
    tests kill -9 it); only a power loss or an OS crash may lose the last commits."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _one_connection(url: str) -> bool:
    """Whether the store at ``url`` is a SQLite file (used through one pooled connection)."""
    return url.startswith("sqlite") and ":memory:" not in url and not url.rstrip("/").endswith(":")


def _engine_options(url: str, pool_timeout_s: float) -> dict[str, Any]:
    if url.startswith("sqlite"):
        options: dict[str, Any] = {"connect_args": {"timeout": 30}}
        if _one_connection(url):
            # one connection: SQLite takes one writer at a time, and connections that wait
            # for each other's lock sleep in its busy handler; here they queue for the pool
            options.update(pool_size=1, max_overflow=0, pool_timeout=pool_timeout_s)
        return options
    # pre-ping: after the server restarts, pooled connections are found dead before use
    return {
        "pool_size": 10,
        "max_overflow": 10,
        "pool_timeout": pool_timeout_s,
        "pool_pre_ping": True,
    }
