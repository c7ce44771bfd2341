"""Nodes sharing a PostgreSQL database, at the database level: a request about a call whose
node beats but does not answer gets a clear 503; one whose node stopped beating is handled
here (the call was ended by this node); this node's outbox claims skip rows others hold."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import sqlalchemy as sa

from dtmfgraph.service import LoopbackMedia
from dtmfgraph.store.tables import calls, nodes

from .harness import (
    APP,
    TENANT,
    free_port,
    make_settings,
    running_service,
)


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
    async with running_service(settings, LoopbackMedia(speed=0.05)) as svc:
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
