"""Webhook delivery against real HTTP receivers on 127.0.0.1: one receiver that hangs delays
nobody else; a receiver that comes back gets its backlog at once, in order per call; retry by
time ends in a dead letter that the CLI lists and redelivers; each notification keeps one id
across its retries (header and JWT ``jti``); a callback URI that cannot even be requested is a
failed attempt like any other."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dtmfgraph.notify import CallbackSigner, Dispatcher
from dtmfgraph.notify.outbox import ID_HEADER
from dtmfgraph.service.model import Call, CallState, Direction, Event, EventKind, snapshot_call
from dtmfgraph.store import SqlRepository, upgrade

from .conftest import ServiceFactory
from .harness import SECRET, Service, free_port, serve_in_task, stop, trail


@dataclass
class Hook:
    """A webhook receiver that records every POST it gets (answered or not): ``mode`` is
    ``ok`` (202), ``down`` (503) or ``hang`` (holds the POST until the test ends)."""

    mode: str = "ok"
    fail_first: int = 0
    """Answer 503 to this many POSTs first, then as ``mode`` says."""
    port: int = field(default_factory=free_port)
    posts: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    """Every POST: (Notification-Id header: its notifications' ids, JWT jti, body)."""
    accepted: list[dict[str, Any]] = field(default_factory=list)
    accepted_ids: list[str] = field(default_factory=list)
    open: int = 0
    most_open: int = 0
    _release: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/cb"

    async def _cb(self, request: Request) -> Response:
        body = json.loads(await request.body())
        token = request.headers.get("authorization", "")[7:]
        jti = jwt.decode(token, options={"verify_signature": False})["jti"]
        self.posts.append((request.headers.get(ID_HEADER, ""), jti, body))
        if self.fail_first > 0:
            self.fail_first -= 1
            return Response(status_code=503)
        if self.mode == "hang":
            self.open += 1
            self.most_open = max(self.most_open, self.open)
            try:
                await self._release.wait()
            finally:
                self.open -= 1
            return Response(status_code=503)
        if self.mode == "down":
            return Response(status_code=503)
        ids = request.headers.get(ID_HEADER, "").split(", ")  # one per notification, in order
        assert len(ids) == len(body["value"]), (ids, body)
        self.accepted.extend(body["value"])
        self.accepted_ids.extend(ids)
        return Response(status_code=202)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/cb", self._cb, methods=["POST"])])

    def release(self) -> None:
        self._release.set()

    def of_call(self, cid: str) -> list[dict[str, Any]]:
        return [
            n for n in self.accepted if n["resourceUrl"].startswith(f"/communications/calls/{cid}")
        ]


@contextlib.asynccontextmanager
async def hooks(*made: Hook) -> AsyncIterator[tuple[Hook, ...]]:
    servers = [await serve_in_task(h.app(), h.port) for h in made]
    try:
        yield made
    finally:
        for h in made:
            h.release()
        for server, task in servers:
            await stop(server, task)


async def until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


def _api(svc: Service) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=f"{svc.base}/v1.0", headers={"Authorization": f"Bearer {svc.token()}"}
    )


async def _call(http: httpx.AsyncClient, callback: str) -> str:
    body = {
        "callbackUri": callback,
        "targets": [{"identity": {"user": {"id": "sip:bob@127.0.0.1"}}}],
    }
    resp = await http.post("/communications/calls", json=body)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


async def _send(http: httpx.AsyncClient, cid: str, *tones: str) -> str:
    resp = await http.post(f"/communications/calls/{cid}/sendDtmfTones", json={"tones": tones})
    assert resp.status_code == 200, resp.text
    return str(resp.json()["id"])


async def _established(http: httpx.AsyncClient, cid: str) -> None:
    async def state() -> str:
        return str((await http.get(f"/communications/calls/{cid}")).json()["state"])

    deadline = time.monotonic() + 20
    while await state() != "established":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)


async def test_hanging_receivers_do_not_delay_a_healthy_one(
    service_factory: ServiceFactory,
) -> None:
    """Ten receivers that take a POST and never answer (each with a call), and one with six
    calls that may have at most two POSTs open: the healthy receiver gets each of its
    notifications, in order, while all of those are still hanging."""
    hanging = [Hook("hang") for _ in range(10)]
    crowded, healthy = Hook("hang"), Hook("ok")
    async with (
        hooks(*hanging, crowded, healthy),
        service_factory(
            notify_timeout_s=120.0, notify_receiver_concurrency=2, notify_drain_on_stop_s=0
        ) as svc,
        _api(svc) as http,
    ):
        for h in hanging:
            await _call(http, h.url)
        for _ in range(6):
            await _call(http, crowded.url)
        await until(
            lambda: all(h.open == 1 for h in hanging), "every hanging receiver holds a POST"
        )
        await until(lambda: crowded.open == 2, "the crowded receiver holds two POSTs")
        cid = await _call(http, healthy.url)
        await _established(http, cid)
        ops = [await _send(http, cid, "tone1"), await _send(http, cid, "tone2", "star")]
        await until(lambda: len(healthy.of_call(cid)) == 4, "the healthy receiver's notifications")
        # all delivered while every other receiver still holds its first POST(s)
        assert all(h.open == 1 and len(h.posts) == 1 for h in hanging)
        assert crowded.open == crowded.most_open == 2 and len(crowded.posts) == 2
        got = trail(healthy.of_call(cid))
    assert got == [
        ("updated", "establishing"),
        ("updated", "established"),
        ("deleted", ops[0]),
        ("deleted", ops[1]),
    ]


async def test_receiver_back_gets_its_backlog_in_order_per_call(
    service_factory: ServiceFactory,
) -> None:
    """A receiver down while three calls each queue several notifications; once it answers,
    everything arrives, each call's in order, each notification once (by its id)."""
    hook = Hook("down")
    async with (
        hooks(hook),
        service_factory(notify_backoff_initial_s=0.05, notify_backoff_max_s=1.0) as svc,
        _api(svc) as http,
    ):
        calls: dict[str, list[str]] = {}
        for _ in range(3):
            cid = await _call(http, hook.url)
            await _established(http, cid)
            calls[cid] = [await _send(http, cid, "tone1"), await _send(http, cid, "tone2")]
        repo: SqlRepository = svc.app.state.repo
        await until(lambda: len(hook.posts) >= 6, "failed attempts")
        assert hook.accepted == []
        hook.mode = "ok"
        await until(lambda: len(hook.accepted) == 12, "the backlog")
        deadline = time.monotonic() + 10
        while True:  # the last ones are being recorded
            rows = await repo.outbox_rows()
            if all(r["state"] == "delivered" for r in rows):
                break
            assert time.monotonic() < deadline, rows
            await asyncio.sleep(0.05)
    assert len(rows) == 12
    for cid, ops in calls.items():  # (then the stop ends the call: "terminated")
        assert trail(hook.of_call(cid))[:4] == [
            ("updated", "establishing"),
            ("updated", "established"),
            ("deleted", ops[0]),
            ("deleted", ops[1]),
        ]
    assert len(set(hook.accepted_ids)) == len(hook.accepted)  # each once


def _event(call_id: str, uri: str) -> Event:
    call = Call(
        call_id, "t", "a", Direction.OUTGOING, CallState.ESTABLISHING, uri, None
    )  # fmt: skip
    return Event(EventKind.CALL_UPDATED, call_id, snapshot_call(call))


@contextlib.asynccontextmanager
async def outbox(url: str) -> AsyncIterator[SqlRepository]:
    repo = SqlRepository(url)
    await upgrade(repo.engine)
    try:
        yield repo
    finally:
        await repo.close()


@contextlib.asynccontextmanager
async def dispatching(repo: SqlRepository, **kw: Any) -> AsyncIterator[Dispatcher]:
    signer = CallbackSigner(issuer="https://dtmfgraph.test", hs256_secret=SECRET)
    # the tests write rows straight to the store, as another process would (nothing wakes the
    # dispatcher): it finds them by polling, here often
    kw.setdefault("poll_s", 0.2)
    d = Dispatcher(repo, signer, node="n", **kw)
    task = asyncio.create_task(d.run())
    try:
        yield d
    finally:
        await d.stop(task, 0)
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await d.close()


async def _add(repo: SqlRepository, call_id: str, uri: str) -> None:
    async with repo.unit() as uow:
        await uow.add_event(_event(call_id, uri), callback_uri=uri, app_id="a")


async def test_an_answer_makes_the_receivers_whole_backlog_due(db_url: str) -> None:
    """Call A's notification waits an hour for its retry (an earlier outage); call B's, to the
    same receiver, had failed too and goes out now: its success makes A's due at once."""
    hook = Hook("ok")
    async with hooks(hook), outbox(db_url) as repo:
        await _add(repo, "A", hook.url)
        await _add(repo, "B", hook.url)
        rows = await repo.outbox_rows()
        hour = time.time() + 3600
        await repo.mark_failed_attempt(rows[0]["id"], error="HTTP 503", retry_at=hour)
        await repo.mark_failed_attempt(rows[1]["id"], error="HTTP 503", retry_at=time.time())
        async with dispatching(repo, backoff_initial_s=0.05):
            await until(lambda: len(hook.accepted) == 2, "A's notification, long before its hour")
            assert [n["resourceData"]["id"] for n in hook.accepted] == ["B", "A"]


async def test_dead_letter_listed_and_redelivered_by_the_cli(
    service_factory: ServiceFactory, tmp_path: Path, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Retried for its window (1 s), the call's first notification is dead, the second held
    behind it; /metrics counts them, a log line says how to resend, `dtmfgraph notifications
    list --dead` lists them, `... redeliver` sends them again, in order, once the receiver is
    back."""
    hook = Hook("down")
    caplog.set_level(logging.WARNING, "dtmfgraph.notify")
    async with (
        hooks(hook),
        # the CLI's redelivery is another process: the service finds it by polling
        service_factory(
            notify_retry_for_s=1.0, notify_backoff_initial_s=0.05, notify_poll_s=0.2
        ) as svc,
        _api(svc) as http,
    ):
        cid = await _call(http, hook.url)
        await _established(http, cid)
        repo: SqlRepository = svc.app.state.repo

        async def dead() -> list[dict[str, Any]]:
            return [r for r in await repo.outbox_rows(cid) if r["state"] == "dead"]

        deadline = time.monotonic() + 20
        while len(await dead()) < 2:
            assert time.monotonic() < deadline, await repo.outbox_rows(cid)
            await asyncio.sleep(0.05)
        first, second = await dead()
        metrics = (await http.get(f"{svc.base}/metrics")).text
        assert 'dtmfgraph_outbox_backlog{state="dead"} 2.0' in metrics
        assert f"dtmfgraph notifications redeliver {first['id']}" in caplog.text
        cli = [sys.executable, "-m", "dtmfgraph", "notifications"]
        where = ["--data-dir", str(tmp_path), "--database-url", db_url]
        listed = subprocess.run(
            [*cli, "list", "--dead", "--json", *where], capture_output=True, text=True, check=True
        )
        lines = [json.loads(line) for line in listed.stdout.splitlines()]
        assert [(x["id"], x["call_id"]) for x in lines] == [(first["id"], cid), (second["id"], cid)]
        assert lines[0]["last_error"].endswith("HTTP 503"), lines[0]
        # the second was held behind the first, or died with it (both in its POST)
        assert lines[1]["last_error"] in (
            f"held behind notification {first['id']}",
            lines[0]["last_error"],
        ), lines
        hook.mode = "ok"
        await asyncio.sleep(0.3)
        assert hook.accepted == []  # dead stays dead until redelivered
        sent = subprocess.run(
            [*cli, "redeliver", str(first["id"]), *where],
            capture_output=True,
            text=True,
            check=True,
        )
        assert sent.stdout.strip() == "2 notification(s) queued again"
        await until(lambda: len(hook.accepted) == 2, "the redelivered notifications")
        assert trail(hook.accepted) == [("updated", "establishing"), ("updated", "established")]
        none = subprocess.run(
            [*cli, "list", "--dead", "--json", *where], capture_output=True, text=True, check=True
        )
        assert none.stdout == ""


async def test_one_id_across_retries(db_url: str) -> None:
    """A notification refused twice, then taken: the three POSTs carry the same id, as
    ``Notification-Id`` and (with a token per notification: ``notify_token_reuse_s`` 0) as
    the JWT ``jti``; another notification has another id."""
    hook = Hook("ok", fail_first=2)
    async with (
        hooks(hook),
        outbox(db_url) as repo,
        dispatching(repo, backoff_initial_s=0.05, token_reuse_s=0),
    ):
        await _add(repo, "A", hook.url)
        await _add(repo, "A", hook.url)
        await until(lambda: len(hook.accepted) == 2, "both notifications")
    first, *rest = hook.posts
    assert len(hook.posts) == 4 and first[0] == first[1] and len(first[0]) == 36
    assert [p[:2] for p in rest] == [first[:2], first[:2], (rest[-1][0], rest[-1][0])]
    assert rest[-1][0] != first[0]
    assert [p[2] for p in hook.posts[:3]] == [first[2]] * 3  # the same body each time


@pytest.mark.parametrize("uri", ["http://[::1/cb", "ftp://127.0.0.1/cb", "http://127.0.0.1:0/cb"])
async def test_a_callback_that_cannot_be_requested_is_a_failed_attempt(
    db_url: str, uri: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A bad URL, an unsupported scheme, a port nobody listens on: each POST is a failed
    attempt (retried, then dead by time), never an error that escapes the dispatcher."""
    async with outbox(db_url) as repo, dispatching(repo, retry_for_s=0.3, backoff_initial_s=0.05):
        await _add(repo, "A", uri)
        deadline = time.monotonic() + 10
        while (rows := await repo.outbox_rows())[0]["state"] != "dead":
            assert time.monotonic() < deadline, rows
            await asyncio.sleep(0.05)
    assert rows[0]["attempts"] >= 1 and rows[0]["last_error"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
