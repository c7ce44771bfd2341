"""The write-behind of live calls on a real SQLite file made read-only, and the outage
bookkeeping (the whole service through such outages: tests/api/test_store_outage.py)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
import sqlalchemy as sa

from dtmfgraph.service.errors import StoreUnavailableError
from dtmfgraph.service.model import Call, CallState, Direction, Event, EventKind
from dtmfgraph.service.outage import StoreHealth
from dtmfgraph.service.write_behind import Batch, CallRecord, LiveUnit, WriteBehind
from dtmfgraph.store import SqlRepository, upgrade
from dtmfgraph.store.tables import outbox

from ..api.outages import read_only_store


def _call(cid: str) -> Call:
    return Call(cid, "t", "a", Direction.OUTGOING, CallState.ESTABLISHING, "http://x/cb", None)


async def _change(
    writes: WriteBehind, rec: CallRecord, state: CallState, tone: bool = False
) -> None:
    uow = LiveUnit(rec)
    call = await uow.get_call(rec.call.id)
    assert call is not None
    call.state = state
    await uow.update_call(call)
    kind = EventKind.TONE if tone else EventKind.CALL_UPDATED
    event = Event(kind, call.id, {"state": state.value})
    await uow.add_event(event, callback_uri=call.callback_uri, app_id=call.app_id)
    uow.commit()
    await writes.submit(Batch(call.id, uow.steps, lambda: None, droppable=tone), rec)


async def test_changes_wait_in_order_and_land_when_the_store_is_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    repo = SqlRepository(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}")
    await upgrade(repo.engine)
    writes = WriteBehind(
        repo,
        repo.health,
        max_droppable=5,
        backoff_max_s=0.2,
        probe=lambda uow: uow.node_alive("node", 0.0),
    )
    recs = {cid: CallRecord(_call(cid)) for cid in ("one", "two")}
    for rec in recs.values():
        uow = LiveUnit(rec)
        await uow.insert_call(rec.call)
        uow.commit()
        await writes.submit(Batch(rec.call.id, uow.steps, lambda: None), rec)
    assert writes.pending == 0 and not repo.health.down
    try:
        async with read_only_store(tmp_path, repo.engine):
            for state in (CallState.ESTABLISHED, CallState.TERMINATING, CallState.TERMINATED):
                for rec in recs.values():
                    await _change(writes, rec, state)
            for _ in range(5):  # the far end keeps pressing keys: past 5 waiting, tones are dropped
                await _change(writes, recs["one"], CallState.TERMINATED, tone=True)
            assert repo.health.down
            assert writes.pending == 2 * 3 + 2 and writes.dropped == 3
            assert recs["one"].call.state is CallState.TERMINATED  # memory has it at once
            with pytest.raises(StoreUnavailableError):
                writes.accepting("one")
            await asyncio.sleep(0.3)  # retried meanwhile, still away
        assert await writes.flush(10.0)
        assert writes.pending == 0
        for _ in range(500):  # the outage ends once writes have gone through for a second
            if not repo.health.down:
                break
            await asyncio.sleep(0.02)
        assert not repo.health.down
        async with repo.engine.connect() as conn:
            rows = (await conn.execute(sa.select(outbox).order_by(outbox.c.id))).all()
        for cid in ("one", "two"):
            states = [r.event["call"]["state"] for r in rows if r.call_id == cid]
            expected = ["established", "terminating", "terminated"]
            assert states == expected + (["terminated"] * 2 if cid == "one" else [])
        async with repo.unit() as uow:
            for cid in ("one", "two"):
                got = await uow.get_call(cid)
                assert got is not None and got.state is CallState.TERMINATED
    finally:
        await writes.close()
        await repo.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "dtmfgraph.service.outage"]
    assert len(lines) == 2 and "store available again after" in lines[1], lines


def test_health_counts_one_outage_per_failure_run() -> None:
    t = [100.0]
    health = StoreHealth(clock=lambda: t[0], settle_s=0.0)
    told: list[float] = []
    health.on_down = lambda: told.append(t[0])
    health.ok()
    assert health.outages == 0 and health.outage_seconds() == 0.0
    for _ in range(3):
        health.failed(OSError("refused"))
        t[0] += 1.0
    assert health.down and health.outages == 1 and health.failures == 3 and told == [100.0]
    assert health.outage_seconds() == 3.0
    health.ok()
    t[0] += 5.0
    assert not health.down and health.outage_seconds() == 3.0
    health.failed(OSError("again"))
    t[0] += 2.0
    health.ok()
    assert health.outages == 2 and health.outage_seconds() == 5.0 and told == [100.0, 108.0]


def test_a_store_that_flaps_is_one_outage_until_writes_settle() -> None:
    t = [0.0]
    health = StoreHealth(clock=lambda: t[0], settle_s=1.0)
    health.failed(OSError("disk full"))
    for _ in range(3):  # a little space freed now and then: one write goes through
        t[0] += 0.5
        health.ok()
        t[0] += 0.1
        health.failed(OSError("disk full"))
    assert health.down and health.outages == 1
    t[0] += 0.4
    health.ok()  # first write of the end (at 2.2)
    t[0] += 0.5
    health.ok()
    assert health.down  # not settled yet
    t[0] += 0.6
    health.ok()
    assert not health.down and health.outages == 1
    assert health.outage_seconds() == pytest.approx(2.2)
