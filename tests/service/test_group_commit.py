"""Group commit of the write-behind on a real SQLite file: the changes several calls submit
while a transaction is written go together in the next one, each call's in order; a change the
store refuses fails alone; a submitter returns only once its change is in the store."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from dtmfgraph.service.model import Call, CallState, Direction, Event, EventKind
from dtmfgraph.service.repository import UnitOfWork
from dtmfgraph.service.write_behind import Batch, CallRecord, LiveUnit, WriteBehind
from dtmfgraph.store import SqlRepository, upgrade
from dtmfgraph.store.tables import outbox

STATES = (CallState.ESTABLISHED, CallState.TERMINATING, CallState.TERMINATED)


def _call(cid: str) -> Call:
    return Call(cid, "t", "a", Direction.OUTGOING, CallState.ESTABLISHING, "http://x/cb", None)


async def _change(rec: CallRecord, state: CallState | None, landed: list[str]) -> Batch:
    uow = LiveUnit(rec)
    if state is None:
        await uow.insert_call(rec.call)
    else:
        call = await uow.get_call(rec.call.id)
        assert call is not None
        call.state = state
        await uow.update_call(call)
        event = Event(EventKind.CALL_UPDATED, call.id, {"state": state.value})
        await uow.add_event(event, callback_uri=call.callback_uri, app_id=call.app_id)
    uow.commit()
    return Batch(rec.call.id, uow.steps, lambda: landed.append(rec.call.id))


@pytest.fixture
async def repo(tmp_path: Path) -> SqlRepository:
    repo = SqlRepository(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}")
    await upgrade(repo.engine)
    yield repo  # type: ignore[misc]
    await repo.close()


async def _states_in_outbox(repo: SqlRepository) -> dict[str, list[str]]:
    async with repo.engine.connect() as conn:
        rows = (await conn.execute(sa.select(outbox).order_by(outbox.c.id))).all()
    out: dict[str, list[str]] = {}
    for r in rows:
        out.setdefault(r.call_id, []).append(r.event["call"]["state"])
    return out


async def test_several_calls_changes_land_in_one_transaction_in_order(
    repo: SqlRepository,
) -> None:
    writes = WriteBehind(repo, repo.health)
    recs = [CallRecord(_call(f"call-{i}")) for i in range(4)]
    landed: list[str] = []
    try:
        # every call's insert and its three changes, submitted together (as concurrent
        # requests and media workers do): made in memory first, in order per call
        batches = [await _change(rec, None, landed) for rec in recs]
        for state in STATES:
            batches += [await _change(rec, state, landed) for rec in recs]
        await asyncio.gather(*(writes.submit(b, recs[int(b.call_id[-1])]) for b in batches))
        assert list(writes.group_sizes) == [16]  # one transaction, one commit
        assert sorted(landed) == sorted(b.call_id for b in batches)
        got = await _states_in_outbox(repo)
        assert got == {r.call.id: ["established", "terminating", "terminated"] for r in recs}
        async with repo.unit() as uow:
            for rec in recs:
                stored = await uow.get_call(rec.call.id)
                assert stored is not None and stored.state is CallState.TERMINATED
    finally:
        await writes.close()


async def test_changes_submitted_while_a_transaction_is_written_go_in_the_next(
    repo: SqlRepository,
) -> None:
    writes = WriteBehind(repo, repo.health)
    recs = [CallRecord(_call(f"call-{i}")) for i in range(3)]
    landed: list[str] = []
    try:
        inserts = [await _change(r, None, landed) for r in recs]
        await asyncio.gather(*(writes.submit(b, r) for b, r in zip(inserts, recs, strict=True)))
        first = writes.submit(await _change(recs[0], STATES[0], landed), recs[0])
        task = asyncio.ensure_future(first)
        while not writes._group:
            await asyncio.sleep(0)
        while writes._group:  # taken: its transaction is being written
            await asyncio.sleep(0)
        rest = [writes.submit(await _change(r, STATES[0], landed), r) for r in recs[1:]]
        await asyncio.gather(task, *rest)
        assert list(writes.group_sizes) == [3, 1, 2]
    finally:
        await writes.close()


async def test_a_change_the_store_refuses_fails_alone(repo: SqlRepository) -> None:
    writes = WriteBehind(repo, repo.health)
    recs = [CallRecord(_call(f"call-{i}")) for i in range(3)]
    landed: list[str] = []

    async def refused(uow: UnitOfWork) -> None:
        raise ValueError("a statement the store refuses")

    try:
        inserts = [await _change(r, None, landed) for r in recs]
        await asyncio.gather(*(writes.submit(b, r) for b, r in zip(inserts, recs, strict=True)))
        good = [await _change(r, STATES[0], landed) for r in recs]
        bad = Batch(recs[1].call.id, [refused], lambda: landed.append("bad"))
        results = await asyncio.gather(
            writes.submit(good[0], recs[0]),
            writes.submit(bad, recs[1]),
            writes.submit(good[1], recs[1]),
            writes.submit(good[2], recs[2]),
            return_exceptions=True,
        )
        assert [type(r).__name__ for r in results] == ["NoneType", "ValueError", *["NoneType"] * 2]
        assert "bad" not in landed and writes.pending == 0
        got = await _states_in_outbox(repo)
        assert got == {r.call.id: ["established"] for r in recs}
    finally:
        await writes.close()


async def test_groups_in_flight_together_never_share_a_call(tmp_path: Path) -> None:
    """A store that takes several writers (PostgreSQL: ``repo.writers``) gets several groups
    at once; a call's later change waits for the group holding its earlier one."""
    repo = SqlRepository(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}")
    repo.writers = 2  # as PostgreSQL's (SQLite's one connection just makes them take turns)
    await upgrade(repo.engine)
    writes = WriteBehind(repo, repo.health)
    x, y = CallRecord(_call("call-x")), CallRecord(_call("call-y"))
    landed: list[str] = []
    try:
        await writes.submit(await _change(x, None, landed), x)
        first = asyncio.ensure_future(writes.submit(await _change(x, STATES[0], landed), x))
        while not writes._busy:  # x's change is in a group being written
            await asyncio.sleep(0)
        later = [
            writes.submit(await _change(x, STATES[1], landed), x),
            writes.submit(await _change(y, None, landed), y),
            writes.submit(await _change(y, STATES[0], landed), y),
        ]
        await asyncio.gather(first, *later)
        assert sorted(writes.group_sizes) == [1, 1, 1, 2]  # y's two went together, x's alone
        got = await _states_in_outbox(repo)
        assert got == {"call-x": ["established", "terminating"], "call-y": ["established"]}
    finally:
        await writes.close()
        await repo.close()


async def test_a_group_writes_in_one_round_trip_reads_see_it(repo: SqlRepository) -> None:
    """The store holds a group's writes and writes them all in one round trip to SQLite's
    thread (with aiosqlite each statement would be three, each waiting for the loop's turn):
    50 calls' inserts and updates and 50 notifications land as written, in order; a read inside
    a group sees the writes before it, and a write retried after a commit that landed updates
    the row."""
    loop = asyncio.get_running_loop()
    trips = 0
    original = loop.call_soon_threadsafe

    def counted(*args: Any, **kw: Any) -> Any:
        nonlocal trips
        trips += 1
        return original(*args, **kw)

    writes = WriteBehind(repo, repo.health)
    recs = [CallRecord(_call(f"call-{i}")) for i in range(50)]
    landed: list[str] = []
    try:
        batches = [await _change(rec, None, landed) for rec in recs]
        batches += [await _change(rec, STATES[0], landed) for rec in recs]
        loop.call_soon_threadsafe = counted  # type: ignore[method-assign]
        await asyncio.gather(*(writes.submit(b, recs[int(b.call_id[5:])]) for b in batches))
        loop.call_soon_threadsafe = original  # type: ignore[method-assign]
        assert list(writes.group_sizes) == [100]
        assert trips <= 4, trips  # the writes, the commit (and the pool's own)
        got = await _states_in_outbox(repo)
        assert got == {r.call.id: ["established"] for r in recs}
        async with repo.batched_unit() as uow:
            again = _call("call-0")
            again.state = CallState.TERMINATED
            await uow.save_call(again)  # a retry of a write that landed: an update
            seen = await uow.get_call("call-0")
        assert seen is not None and seen.state is CallState.TERMINATED
        async with repo.unit() as plain:
            stored = await plain.get_call("call-0")
        assert stored is not None and stored.state is CallState.TERMINATED
    finally:
        loop.call_soon_threadsafe = original  # type: ignore[method-assign]
        await writes.close()
