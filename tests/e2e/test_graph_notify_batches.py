"""Keys heard on a real SIP call come back batched: baresip calls in and presses keys, the
service answers through the Graph API, and a real HTTP receiver on 127.0.0.1 takes the
notifications. While the receiver refuses a POST (500) and the service backs off, the call's
keys queue; they come back in fewer POSTs than keys (several ``toneInfo`` items in one
``value``), every key once, in order, the refused POST's notifications first and whole."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dtmfgraph.notify.outbox import ID_HEADER

from ..api.harness import Receiver, free_port, serve_in_task, stop
from ..api.sdkhelp import context_body
from ..judges.baresip import Baresip, require_baresip
from .test_graph_sip import SipService, answer_incoming, is_call_state, start_sip_service

KEYS = "1234567890"


@dataclass
class Post:
    ids: list[str]
    """The ``Notification-Id`` header, split: one id per notification."""
    value: list[dict[str, Any]]
    status: int


@dataclass
class Flaky:
    """A webhook receiver that answers 500 to the next ``fail`` POSTs carrying a ``toneInfo``,
    and 202 to everything else; it records every POST and what it answered."""

    fail: int = 0
    port: int = field(default_factory=free_port)
    posts: list[Post] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/cb"

    async def _cb(self, request: Request) -> Response:
        body = json.loads(await request.body())
        ids = request.headers.get(ID_HEADER, "").split(", ")
        tones = any("toneInfo" in n["resourceData"] for n in body["value"])
        status = 202
        if tones and self.fail > 0:
            self.fail -= 1
            status = 500
        self.posts.append(Post(ids, body["value"], status))
        return Response(status_code=status)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/cb", self._cb, methods=["POST"])])

    def accepted(self) -> list[tuple[str, dict[str, Any]]]:
        return [
            (i, n)
            for p in self.posts
            if p.status == 202
            for i, n in zip(p.ids, p.value, strict=True)
        ]

    def tones(self) -> list[tuple[str, dict[str, Any]]]:
        return [(i, n) for i, n in self.accepted() if "toneInfo" in n["resourceData"]]


@pytest.fixture
async def flaky() -> AsyncIterator[Flaky]:
    hook = Flaky()
    server, task = await serve_in_task(hook.app(), hook.port)
    try:
        yield hook
    finally:
        await stop(server, task)


@pytest.fixture
async def svc(tmp_path: Path, receiver: Receiver) -> AsyncIterator[SipService]:
    require_baresip()
    # a refused POST is retried after 2 s: the keys pressed meanwhile queue behind it
    service, server, task = await start_sip_service(
        tmp_path / "svc", receiver, notify_backoff_initial_s=2.0, notify_backoff_max_s=2.0
    )
    try:
        yield service
    finally:
        await stop(server, task)


async def until(check: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def test_keys_heard_come_back_batched_in_order_once_after_a_500(
    tmp_path: Path, svc: SipService, receiver: Receiver, flaky: Flaky
) -> None:
    async with Baresip(tmp_path / "bs", answer=False) as bs:
        await bs.dial(svc.media.uri)  # type: ignore[attr-defined]
        [created] = await receiver.wait_for(lambda n: n["changeType"] == "created")
        cid = created["resourceData"]["id"]
        calls = svc.incoming_sdk("v1.0").communications.calls.by_call_id(cid)
        await answer_incoming(calls, flaky, "v1.0")  # this call's callbacks go to the flaky one
        await until(
            lambda: any(is_call_state(cid, "established")(n) for _, n in flaky.accepted()),
            "established",
        )
        await bs.wait_event("CALL_ESTABLISHED", 5)
        await calls.subscribe_to_tone.post(context_body("v1.0", "subscribe", "tones"))
        flaky.fail = 1  # the first POST with a key heard is refused
        for key in KEYS:
            await bs.sndcode(key)
        await until(lambda: len(flaky.tones()) >= len(KEYS), "every key heard", timeout=40)
        await asyncio.sleep(0.5)  # a key delivered twice would show up here
        await bs.hangup()

    tones = flaky.tones()
    data = [n["resourceData"]["toneInfo"] for _, n in tones]
    assert [d["tone"] for d in data] == [f"tone{k}" for k in KEYS]  # none lost, in order
    assert [d["sequenceId"] for d in data] == list(range(1, len(KEYS) + 1))  # none twice
    ids = [i for i, _ in flaky.accepted()]
    assert len(ids) == len(set(ids)) and all(len(i) == 36 for i in ids)
    assert all(len(p.ids) == len(p.value) for p in flaky.posts)  # an id per notification
    # the refused POST went again whole and first, with what queued meanwhile after it
    [refused] = [i for i, p in enumerate(flaky.posts) if p.status == 500]
    again = flaky.posts[refused + 1]
    assert again.status == 202
    assert again.ids[: len(flaky.posts[refused].ids)] == flaky.posts[refused].ids
    assert again.value[: len(flaky.posts[refused].value)] == flaky.posts[refused].value
    # keys heard while it backed off went together: fewer POSTs than keys
    with_tones = [p for p in flaky.posts if p.status == 202 and any(
        "toneInfo" in n["resourceData"] for n in p.value
    )]  # fmt: skip
    assert len(again.value) > len(flaky.posts[refused].value)
    assert len(with_tones) < len(KEYS)
