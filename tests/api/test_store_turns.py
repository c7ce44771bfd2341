"""SQLite's one connection: what a request waits for goes first, the rest is never starved, a
turn that does not come in time is the store being busy (503), and a waiter that gives up never
keeps the turn from the next one."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dtmfgraph.service.errors import StoreUnavailableError
from dtmfgraph.store import SqlRepository, upgrade
from dtmfgraph.store.turns import URGENT_RUN, Turns, TurnTimeoutError


async def _order(urgent_flags: list[bool], timeout_s: float = 5.0) -> list[int]:
    """Who got the turn, in order, when a holder has it and ``urgent_flags`` queue behind."""
    turns = Turns(timeout_s)
    order: list[int] = []
    release = asyncio.Event()

    async def holder() -> None:
        async with turns.turn(urgent=False):
            await release.wait()

    async def one(i: int, urgent: bool) -> None:
        async with turns.turn(urgent=urgent):
            order.append(i)
            await asyncio.sleep(0)

    first = asyncio.ensure_future(holder())
    await asyncio.sleep(0)
    tasks = [asyncio.ensure_future(one(i, u)) for i, u in enumerate(urgent_flags)]
    while turns.waiting < len(urgent_flags):
        await asyncio.sleep(0)
    release.set()
    await asyncio.gather(first, *tasks)
    return order


async def test_urgent_turns_go_first_but_at_most_a_run_in_a_row() -> None:
    flags = [False, False] + [True] * 6
    order = await _order(flags)
    # 4 urgent ones first, then the oldest waiting one, then urgent again
    assert order == [2, 3, 4, 5, 0, 6, 7, 1]
    assert sum(1 for i in order[:URGENT_RUN] if flags[i]) == URGENT_RUN


@settings(max_examples=60, deadline=None)
@given(st.lists(st.booleans(), max_size=30))
def test_every_waiter_gets_one_turn_others_in_order(flags: list[bool]) -> None:
    order = asyncio.run(_order(flags))
    assert sorted(order) == list(range(len(flags)))
    assert [i for i in order if not flags[i]] == [i for i, u in enumerate(flags) if not u]
    assert [i for i in order if flags[i]] == [i for i, u in enumerate(flags) if u]
    run = 0
    for pos, i in enumerate(order):  # no more than URGENT_RUN urgent while another waits
        others_left = any(not flags[j] for j in order[pos + 1 :])
        run = run + 1 if flags[i] and others_left else 0
        assert run <= URGENT_RUN


async def test_a_waiter_that_gives_up_passes_the_turn_on() -> None:
    turns = Turns(5.0)
    got: list[str] = []
    release = asyncio.Event()

    async def hold() -> None:
        async with turns.turn(urgent=False):
            await release.wait()

    async def take(name: str, urgent: bool) -> None:
        async with turns.turn(urgent=urgent):
            got.append(name)

    holder = asyncio.ensure_future(hold())
    await asyncio.sleep(0)
    quitter = asyncio.ensure_future(take("quitter", True))
    later = asyncio.ensure_future(take("later", False))
    while turns.waiting < 2:
        await asyncio.sleep(0)
    quitter.cancel()
    release.set()
    await asyncio.gather(holder, later)
    with pytest.raises(asyncio.CancelledError):
        await quitter
    assert got == ["later"]
    async with turns.turn(urgent=False):  # free again
        got.append("after")
    assert got == ["later", "after"]


async def test_a_turn_that_does_not_come_is_the_store_busy(tmp_path: Path) -> None:
    repo = SqlRepository(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}", pool_timeout_s=0.2)
    await upgrade(repo.engine)
    try:
        async with repo.unit():
            with pytest.raises(StoreUnavailableError, match="busy"):
                async with repo.unit():
                    pass
        async with repo.unit() as uow:  # and the store works on
            assert await uow.get_call("none") is None
        with pytest.raises(TurnTimeoutError):
            turns = Turns(0.05)
            async with turns.turn(urgent=False), turns.turn(urgent=True):
                pass
    finally:
        await repo.close()
