"""A call's queued notifications go in one POST (real SQLite/PostgreSQL store, real HTTP
receivers on 127.0.0.1): claimed together behind their call's first, up to the bound and only
to one callback URI and app; sent as the ``value`` array in order with an id each in
``Notification-Id``; a refused POST is sent again whole; a body past the size bound is split
into POSTs in order; a batch given up holds the call's later rows. An idle dispatcher reads
nothing, and a commit wakes it at once."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dtmfgraph.notify import outbox as outbox_mod
from dtmfgraph.notify.outbox import _chunks
from dtmfgraph.notify.receivers import delivery_id
from dtmfgraph.notify.render import BODY_HEAD, BODY_TAIL, notifications_body

from .conftest import ServiceFactory
from .harness import Receiver
from .test_webhook_delivery import Hook, _add, dispatching, hooks, outbox, until


async def test_a_calls_queued_rows_are_claimed_together_up_to_the_bound(db_url: str) -> None:
    async with outbox(db_url) as repo:
        for _ in range(5):
            await _add(repo, "A", "http://127.0.0.1:1/one")
        await _add(repo, "A", "http://127.0.0.1:1/two")  # another callback URI: its own POST
        for _ in range(2):
            await _add(repo, "B", "http://127.0.0.1:1/one")
        rows = await repo.outbox_rows()
        a, b = [r["id"] for r in rows if r["call_id"] == "A"], [r["id"] for r in rows[6:]]
        now = time.time()
        got = await repo.due_notifications(now, node="n", lease_s=30, per_call=3)
        assert [(i.call_id, i.id) for i in got] == [("A", x) for x in a[:3]] + [("B", x) for x in b]
        assert await repo.due_notifications(now, node="m", per_call=3) == []  # all claimed
        later = now + 60  # the claims lapsed
        got = await repo.due_notifications(later, node="n", per_call=50)
        assert [i.id for i in got] == a[:5] + b  # up to the change of callback URI
        one = await repo.due_notifications(later + 60, node="n")  # per_call 1: heads only
        assert [i.id for i in one] == [a[0], b[0]]


async def test_a_batch_given_up_is_dead_and_holds_the_calls_later_rows(db_url: str) -> None:
    async with outbox(db_url) as repo:
        for _ in range(4):
            await _add(repo, "A", "http://127.0.0.1:1/cb")
        ids = [r["id"] for r in await repo.outbox_rows()]
        await repo.mark_failed_many(ids[:2], error="HTTP 500", retry_at=time.time() + 60)
        rows = await repo.outbox_rows()
        assert [(r["state"], r["attempts"]) for r in rows[:2]] == [("pending", 1)] * 2
        assert await repo.due_notifications(time.time(), node="n", per_call=50) == []
        await repo.mark_failed_many(ids[:2], error="HTTP 500", retry_at=None)
        rows = await repo.outbox_rows()
    assert [r["state"] for r in rows] == ["dead"] * 4
    assert [r["last_error"] for r in rows] == ["HTTP 500"] * 2 + [
        f"held behind notification {ids[0]}"
    ] * 2


async def test_queued_notifications_go_in_one_post_in_order_with_their_ids(db_url: str) -> None:
    hook = Hook("ok", fail_first=1)  # the first POST is refused: it goes again whole
    async with hooks(hook), outbox(db_url) as repo:
        for _ in range(5):
            await _add(repo, "A", hook.url)
        ids = [r["id"] for r in await repo.outbox_rows()]
        async with dispatching(repo, backoff_initial_s=0.05) as d:
            await until(lambda: len(hook.accepted) == 5, "the five notifications")
            await until(lambda: sum(d.marks.sizes) == 5, "their marks")
            sizes = d.marks.sizes
        rows = await repo.outbox_rows()
    want = ", ".join(delivery_id("A", i) for i in ids)
    assert [p[0] for p in hook.posts] == [want, want]  # refused, then taken: the same five
    assert hook.posts[0][2] == hook.posts[1][2]
    assert hook.posts[1][2]["@odata.type"] == "#microsoft.graph.commsNotifications"
    assert sizes == [5]  # one "delivered" write
    assert [(r["state"], r["attempts"]) for r in rows] == [("delivered", 2)] * 5


async def test_the_bounds_split_a_backlog_into_posts_in_order(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = Hook("ok")
    async with hooks(hook), outbox(db_url) as repo:
        for _ in range(5):
            await _add(repo, "A", hook.url)
        ids = [r["id"] for r in await repo.outbox_rows()]
        async with dispatching(repo, batch_max=2):
            await until(lambda: len(hook.accepted) == 5, "by twos")
        assert [p[0].count(",") + 1 for p in hook.posts] == [2, 2, 1]
        assert [i for p in hook.posts for i in p[0].split(", ")] == [
            delivery_id("A", i) for i in ids
        ]
        await repo.redeliver(call_id=None, now=time.time())  # nothing dead: a no-op
        for _ in range(3):
            await _add(repo, "B", hook.url)
        one = len(json.dumps(hook.posts[0][2]["value"][0], separators=(",", ":")))
        monkeypatch.setattr(outbox_mod, "MAX_BATCH_BYTES", len(BODY_HEAD) + 2 * one + 3)
        hook.posts.clear()
        async with dispatching(repo):  # claimed as one batch, sent as two POSTs, in order
            await until(lambda: len(hook.accepted) == 8, "B's three")
    assert [len(p[2]["value"]) for p in hook.posts] == [2, 1]
    assert [n["resourceData"]["id"] for p in hook.posts for n in p[2]["value"]] == ["B"] * 3


async def test_an_idle_dispatcher_reads_nothing_and_a_commit_wakes_it(
    service_factory: ServiceFactory, receiver: Receiver
) -> None:
    """With an hour between idle reads, a sendDtmfTones' notification still comes at once:
    the commit wakes the dispatcher. Idle meanwhile, it reads the store not once."""
    async with service_factory(notify_poll_s=3600) as svc:
        d = svc.app.state.dispatcher
        headers = {"Authorization": f"Bearer {svc.token()}"}
        async with httpx.AsyncClient(base_url=f"{svc.base}/v1.0", headers=headers) as http:
            body = {
                "callbackUri": receiver.url,
                "targets": [{"identity": {"user": {"id": "sip:bob@127.0.0.1"}}}],
            }
            cid = (await http.post("/communications/calls", json=body)).json()["id"]
            await receiver.wait_for(lambda n: n["resourceData"].get("state") == "established")
            await until(lambda: d.held == 0, "delivered")
            while True:  # the reads that follow the last delivery
                reads = d.reads
                await asyncio.sleep(0.3)
                if d.reads == reads:
                    break
            await asyncio.sleep(1.5)
            assert d.reads == reads  # idle: no read of the store
            resp = await http.post(
                f"/communications/calls/{cid}/sendDtmfTones", json={"tones": ["tone1"]}
            )
            op = resp.json()["id"]
            await receiver.wait_for(lambda n: n["resourceData"].get("id") == op, timeout=20)
    assert d.reads > reads


@given(st.lists(st.text(st.characters(max_codepoint=127), min_size=0, max_size=40), max_size=30),
       st.integers(min_value=0, max_value=200))  # fmt: skip
def test_chunks_keep_order_and_fit_the_bound(parts: list[str], max_bytes: int) -> None:
    ends = _chunks(parts, max_bytes)
    starts = [0, *ends[:-1]]
    assert ends[-1] == len(parts) and ends == sorted(ends)
    for start, end in zip(starts, ends, strict=True):
        chunk = parts[start:end]
        if not parts:
            assert chunk == []
            continue
        assert chunk  # never an empty POST
        size = len(BODY_HEAD) + len(BODY_TAIL) + len(",".join(chunk))
        assert size <= max_bytes or len(chunk) == 1  # one too big goes alone


@given(st.lists(st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8)),
                max_size=10))  # fmt: skip
def test_a_body_of_any_notifications_is_their_value_array(items: list[dict[str, object]]) -> None:
    body = json.loads(notifications_body([json.dumps(i, separators=(",", ":")) for i in items]))
    assert body == {"@odata.type": "#microsoft.graph.commsNotifications", "value": items}
