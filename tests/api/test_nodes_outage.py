"""Nodes on one PostgreSQL server that is stopped and started again (issue 13): each node's
forwarding connection (``LISTEN``) is reopened, requests forwarded meanwhile answer 503 with
``Retry-After`` at once, and afterwards a request sent to one node for a call the other carries
is forwarded and answered again. No node is declared dead by another because the outage
stopped every heartbeat for longer than the lease."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from dtmfgraph.api.forward import Forwarder, ForwardError, asyncpg_dsn
from dtmfgraph.service import LoopbackMedia
from dtmfgraph.store.tables import nodes

from .harness import Receiver, free_port, make_settings, running_service
from .outages import PrivateServer, private_postgres

LEASE = 2.0
"""The node lease of these tests; each outage lasts longer, so every heartbeat is older."""


@pytest.fixture(scope="module")
def server() -> Iterator[PrivateServer]:
    with private_postgres() as s:
        yield s


async def _until(what: str, pred: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.02)


def _lines(caplog: pytest.LogCaptureFixture, start: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "dtmfgraph.api.listener" and r.getMessage().startswith(start)
    ]


async def _hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A node's app that answers every request 200."""
    if scope["type"] != "http":
        return
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


async def test_forwarder_reopens_its_connection(
    server: PrivateServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    url = await server.create_database("forwarder")
    forwarder = Forwarder(_hello, asyncpg_dsn(url), "me", timeout_s=60.0)
    request = {"method": "POST", "path": "/x", "headers": {}, "body": ""}
    await forwarder.start()
    try:
        assert (await forwarder.forward("me", request))["status"] == 200
        await asyncio.to_thread(server.stop)
        try:
            await _until("the lost connection is noticed", lambda: not forwarder.listening)
            # at once (not after the 60 s timeout): the answer could not come back anyway
            with pytest.raises(ForwardError) as raised:
                async with asyncio.timeout(30):
                    await forwarder.forward("me", request)
            assert "being reopened" in str(raised.value)
            assert raised.value.retry_after_s >= 1
        finally:
            await asyncio.to_thread(server.start)
        await _until("the connection is back", lambda: forwarder.listening)
        response = await forwarder.forward("me", request)
        assert (response["status"], response["body"]) == (200, "hello")
    finally:
        await forwarder.close()
    lost = _lines(caplog, "forwarding connection to the database lost")
    back = _lines(caplog, "forwarding connection to the database back after")
    assert (len(lost), len(back)) == (1, 1), caplog.text
    assert forwarder.served == 2


async def test_two_nodes_forward_again_after_postgresql_restarts(
    server: PrivateServer, tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    url = await server.create_database("nodes")
    common: dict[str, Any] = {
        "node_heartbeat_s": 0.2,
        "node_dead_after_s": LEASE,
        "node_forward_timeout_s": 10.0,
        "incoming_callback_uri": receiver.url,
    }
    settings_a = make_settings(tmp_path / "a", url, free_port(), node_id="a", **common)
    settings_b = make_settings(tmp_path / "b", url, free_port(), node_id="b", **common)
    async with (
        running_service(settings_a, LoopbackMedia(speed=0.05)) as a,
        running_service(settings_b, LoopbackMedia(speed=0.05)) as b,
    ):
        headers = {"Authorization": f"Bearer {a.token()}"}
        async with (
            httpx.AsyncClient(base_url=f"{a.base}/v1.0", headers=headers, timeout=60) as http_a,
            httpx.AsyncClient(base_url=f"{b.base}/v1.0", headers=headers, timeout=60) as http_b,
        ):
            body = {
                "callbackUri": receiver.url,
                "targets": [{"identity": {"phone": {"id": "+14255550100"}}}],
            }
            r = await http_a.post("/communications/calls", json=body)
            assert r.status_code == 201, r.text
            cid = r.json()["id"]
            await receiver.wait_for(lambda n: n["resourceData"].get("state") == "established")
            dtmf = f"/communications/calls/{cid}/sendDtmfTones"
            r = await http_b.post(dtmf, json={"tones": ["tone1"]})
            assert r.status_code == 200, r.text

            began = time.monotonic()
            await asyncio.to_thread(server.stop)
            try:
                forwarders = (a.app.state.forwarder, b.app.state.forwarder)
                await _until("both nodes saw it", lambda: not any(f.listening for f in forwarders))
                _assert_503(await http_b.post(dtmf, json={"tones": ["tone2"]}))
                await asyncio.sleep(max(0.0, LEASE + 1.0 - (time.monotonic() - began)))
            finally:
                await asyncio.to_thread(server.start)
            restarted = time.time()

            # as a client (the SDK) does: a 503 is retried; the request gets to node A again
            deadline = time.monotonic() + 30
            while (r := await http_b.post(dtmf, json={"tones": ["tone3"]})).status_code != 200:
                _assert_503(r)
                assert time.monotonic() < deadline, "forwarding never came back"
                await asyncio.sleep(0.1)
            op = r.json()["id"]
            await receiver.wait_for(
                lambda n: (
                    n["resourceData"].get("id") == op
                    and n["resourceData"].get("status") == "completed"
                )
            )
            assert all(f.listening for f in forwarders)

            # a lease after every node could beat again, A still beats and B left its call alone
            await asyncio.sleep(LEASE + 5 * 0.2)
            for http in (http_a, http_b):
                got = await http.get(f"/communications/calls/{cid}")
                assert got.status_code == 200 and got.json()["state"] == "established", got.text
            async with a.app.state.repo.engine.connect() as conn:
                beat = await conn.scalar(sa.select(nodes.c.heartbeat_at).where(nodes.c.id == "a"))
            assert beat is not None and beat > restarted

    assert len(_lines(caplog, "forwarding connection to the database lost")) == 2, caplog.text
    assert len(_lines(caplog, "forwarding connection to the database back after")) == 2
    reaped = [r.getMessage() for r in caplog.records if "is gone; ending it" in r.getMessage()]
    assert reaped == []
    errors = [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.name != "dtmfgraph.service.outage"
    ]
    assert errors == []  # the heartbeat, among others, went through the outage quietly


def _assert_503(r: httpx.Response) -> None:
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "serviceNotAvailable"
    assert int(r.headers.get("Retry-After", 0)) >= 1, (r.headers, r.text)
