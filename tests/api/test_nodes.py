"""Nodes sharing a PostgreSQL database, at the database level: a request about a call whose
node beats but does not answer gets a clear 503; one whose node stopped beating is handled
here (the call was ended by this node); this node's outbox claims skip rows others hold."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import httpx
import sqlalchemy as sa

from dtmfgraph.api.forward import asyncpg_dsn, channel_of
from dtmfgraph.service import LoopbackMedia
from dtmfgraph.store.tables import calls, nodes

from .harness import (
    APP,
    TENANT,
    Receiver,
    free_port,
    make_settings,
    running_service,
)


@contextlib.asynccontextmanager
async def listening_as(db_url: str, node: str) -> AsyncIterator[asyncpg.Connection]:
    """A database connection listening on ``node``'s channel as that node's forwarder would,
    that answers nothing; closed on exit (the node died)."""
    conn = await asyncpg.connect(
        asyncpg_dsn(db_url), server_settings={"application_name": channel_of(node)}
    )
    await conn.add_listener(channel_of(node), lambda *_: None)
    try:
        yield conn
    finally:
        await conn.close()


async def _ghost_call(engine: sa.ext.asyncio.AsyncEngine, node: str, beat: float) -> str:
    """A live call owned by ``node`` (last beat at ``beat``), as another node left it."""
    cid = f"call-of-{node}"
    async with engine.begin() as conn:
        await conn.execute(nodes.insert().values(id=node, started_at=beat, heartbeat_at=beat))
        await conn.execute(
            calls.insert().values(
                id=cid, tenant_id=TENANT, app_id=APP,
                direction="outgoing", state="established", callback_uri="http://127.0.0.1:9/cb",
                target_uri="sip:x@127.0.0.1:5070", properties={}, result_info=None,
                tone_subscribed=False, tone_seq=0, last_tone=None, created_at=beat,
                last_keepalive_at=beat, media_record=None, node_id=node,
            )
        )  # fmt: skip
    return cid


async def test_owner_that_beats_but_does_not_answer_is_503(tmp_path: Path, pg: str) -> None:
    settings = make_settings(tmp_path, pg, free_port(), node_id="here", node_forward_timeout_s=0.5)
    async with (
        running_service(settings, LoopbackMedia(speed=0.05)) as svc,
        listening_as(pg, "ghost"),  # it listens, and never answers
    ):
        cid = await _ghost_call(svc.app.state.repo.engine, "ghost", time.time() + 3600)
        headers = {"Authorization": f"Bearer {svc.token()}"}
        async with httpx.AsyncClient(base_url=svc.base, headers=headers) as http:
            r = await http.post(
                f"/v1.0/communications/calls/{cid}/sendDtmfTones", json={"tones": ["tone1"]}
            )
            assert r.status_code == 503, r.text
            error = r.json()["error"]
            assert error["code"] == "serviceNotAvailable"
            assert "node 'ghost'" in error["message"] and "did not answer" in error["message"]
            got = await http.get(f"/v1.0/communications/calls/{cid}")  # reads stay local
            assert got.status_code == 200 and got.json()["state"] == "established"
        assert svc.app.state.forwarder.forwarded == 1


async def test_call_of_a_node_that_stopped_beating_is_ended_here(tmp_path: Path, pg: str) -> None:
    settings = make_settings(
        tmp_path, pg, free_port(), node_id="here", node_heartbeat_s=0.1, node_dead_after_s=1.0
    )
    async with running_service(settings, LoopbackMedia(speed=0.05)) as svc:
        cid = await _ghost_call(svc.app.state.repo.engine, "gone", time.time() - 60)
        headers = {"Authorization": f"Bearer {svc.token()}"}
        async with httpx.AsyncClient(base_url=svc.base, headers=headers) as http:
            for _ in range(50):
                call = (await http.get(f"/v1.0/communications/calls/{cid}")).json()
                if call["state"] == "terminated":
                    break
                await asyncio.sleep(0.1)
            assert call["state"] == "terminated"
            assert (call["resultInfo"]["code"], call["resultInfo"]["subcode"]) == (500, 1005)
            assert "lost with the node that carried it" in call["resultInfo"]["message"]
            r = await http.post(
                f"/v1.0/communications/calls/{cid}/sendDtmfTones", json={"tones": ["tone1"]}
            )
            assert r.status_code == 400, r.text  # handled here: the call is over
        assert svc.app.state.forwarder.forwarded == 0


async def test_owner_known_dead_is_503_at_once_with_retry_after(tmp_path: Path, pg: str) -> None:
    """An owner whose forwarding connection is gone (its process was killed: the database sees
    that at once) or whose lease ran out gets no request: 503 with Retry-After straight away,
    not after node_forward_timeout_s. (No heartbeat here: nothing reaps the calls meanwhile.)"""
    settings = make_settings(
        tmp_path, pg, free_port(), node_id="here", node_forward_timeout_s=5.0,
        node_heartbeat_s=3600.0, node_dead_after_s=5.0,
    )  # fmt: skip
    async with running_service(settings, LoopbackMedia(speed=0.05)) as svc:
        engine = svc.app.state.repo.engine
        killed = await _ghost_call(engine, "killed", time.time() + 1.0)  # beats, never listened
        silent = await _ghost_call(engine, "silent", time.time() - 60)  # lease ran out
        headers = {"Authorization": f"Bearer {svc.token()}"}
        async with httpx.AsyncClient(base_url=svc.base, headers=headers) as http:
            for cid, node in ((killed, "killed"), (silent, "silent")):
                r = await http.post(
                    f"/v1.0/communications/calls/{cid}/sendDtmfTones", json={"tones": ["tone1"]}
                )
                assert r.status_code == 503, r.text
                error = r.json()["error"]
                assert error["code"] == "serviceNotAvailable"
                assert f"node {node!r}" in error["message"] and "is gone" in error["message"]
                assert 1 <= int(r.headers["Retry-After"]) <= 3600 + 5 + 1
        assert svc.app.state.forwarder.forwarded == 0  # nothing was sent to a dead node


async def test_owner_dying_while_a_request_waits_ends_the_wait(tmp_path: Path, pg: str) -> None:
    settings = make_settings(
        tmp_path, pg, free_port(), node_id="here", node_forward_timeout_s=120.0
    )
    async with running_service(settings, LoopbackMedia(speed=0.05)) as svc:
        headers = {"Authorization": f"Bearer {svc.token()}"}
        async with (
            listening_as(pg, "doomed") as doomed,
            httpx.AsyncClient(base_url=svc.base, headers=headers, timeout=120) as http,
        ):
            cid = await _ghost_call(svc.app.state.repo.engine, "doomed", time.time() + 3600)
            post = asyncio.create_task(
                http.post(
                    f"/v1.0/communications/calls/{cid}/sendDtmfTones", json={"tones": ["tone1"]}
                )
            )
            while svc.app.state.forwarder.forwarded == 0:
                await asyncio.sleep(0.05)
            await doomed.close()  # the owner is killed while the request waits on it
            r = await post
        assert r.status_code == 503, r.text
        assert "died" in r.json()["error"]["message"] and int(r.headers["Retry-After"]) >= 1


async def test_forwarded_request_location_names_the_node_asked(
    tmp_path: Path, pg: str, receiver: Receiver
) -> None:
    """sendDtmfTones sent to node B for node A's call runs on A; the operation's Location is
    B's public base URL (the client asked B), not A's."""
    b_public = "https://b.example/graph"
    settings_a = make_settings(tmp_path / "a", pg, free_port(), node_id="a")
    settings_b = make_settings(
        tmp_path / "b", pg, free_port(), node_id="b", public_base_url=b_public
    )
    async with (
        running_service(settings_a, LoopbackMedia(speed=0.05)) as a,
        running_service(settings_b, LoopbackMedia(speed=0.05)) as b,
    ):
        headers = {"Authorization": f"Bearer {a.token()}"}
        body = {
            "callbackUri": receiver.url,
            "targets": [{"identity": {"phone": {"id": "+14255550100"}}}],
        }
        async with (
            httpx.AsyncClient(base_url=f"{a.base}/v1.0", headers=headers) as http_a,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings_b.port}/v1.0",
                              headers=headers) as http_b,
        ):  # fmt: skip
            r = await http_a.post("/communications/calls", json=body)
            assert r.status_code == 201, r.text
            cid = r.json()["id"]
            assert r.headers["Location"].startswith(a.base)
            await receiver.wait_for(lambda n: n["resourceData"].get("state") == "established")
            r = await http_b.post(
                f"/communications/calls/{cid}/sendDtmfTones", json={"tones": ["tone1"]}
            )
            assert r.status_code == 200, r.text
            op = r.json()["id"]
            assert r.headers["Location"] == (
                f"{b_public}/v1.0/communications/calls/{cid}/operations/{op}"
            )
        assert b.app.state.forwarder.forwarded == 1 and a.app.state.forwarder.served == 1
