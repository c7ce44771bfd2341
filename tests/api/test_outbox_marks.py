"""The outbox's "delivered" marks coalesce: the POSTs that end while a mark is written are
marked together in the next transaction (a real SQLite store); a failed write fails each of
its submitters, and the next write goes on."""

from __future__ import annotations

import asyncio

from dtmfgraph.notify.coalesce import Coalescer

from .test_webhook_delivery import Hook, _add, dispatching, hooks, outbox, until


async def test_marks_submitted_together_are_one_write_and_errors_reach_each() -> None:
    writes: list[list[int]] = []

    async def write(items: list[int]) -> None:
        await asyncio.sleep(0.01)
        if 13 in items:
            raise OSError("the store is away")
        writes.append(items)

    marks = Coalescer(write, max_items=4)
    await asyncio.gather(*(marks.submit(i) for i in range(6)))
    assert writes == [[0, 1, 2, 3], [4, 5]]
    results = await asyncio.gather(*(marks.submit(i) for i in (12, 13)), return_exceptions=True)
    assert [type(r).__name__ for r in results] == ["OSError", "OSError"]
    await marks.submit(14)
    assert writes[-1] == [14] and marks.sizes == [4, 2, 1]
    await marks.close()


async def test_mark_delivered_many_marks_each_row(db_url: str) -> None:
    hook = Hook("ok")
    async with hooks(hook), outbox(db_url) as repo:
        for call in ("A", "B", "C"):
            await _add(repo, call, hook.url)
        rows = await repo.outbox_rows()
        await repo.mark_delivered_many([r["id"] for r in rows[:2]])
        states = [r["state"] for r in await repo.outbox_rows()]
        assert states == ["delivered", "delivered", "pending"]


async def test_a_dispatcher_marks_every_calls_notifications(db_url: str) -> None:
    """Many calls' notifications at once: every one delivered and marked (however the marks
    were grouped)."""
    hook = Hook("ok")
    calls = 6
    async with hooks(hook), outbox(db_url) as repo, dispatching(repo) as d:
        for _ in range(3):
            for c in range(calls):
                await _add(repo, f"call-{c}", hook.url)
        await until(lambda: len(hook.accepted) == 3 * calls, "every notification")
        await until(lambda: sum(d.marks.sizes) == 3 * calls, "every mark")
        rows = await repo.outbox_rows()
    assert {r["state"] for r in rows} == {"delivered"}
