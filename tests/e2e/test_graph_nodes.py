"""Two `dtmfgraph serve` nodes on one PostgreSQL database, baresip as the far end.

A call lives on the node that placed it (its SIP dialog and RTP are there), yet every request
may land on either node: sendDtmfTones and DELETE sent to the other node are forwarded over
PostgreSQL LISTEN/NOTIFY and act on the call; reads are served from the database anywhere.
Every notification is delivered once although both nodes deliver (outbox claims). When the
owner dies (`kill -9`), the other node sees its heartbeat stop, ends its call 500/1005, takes
over its notifications and hangs up the far end with a BYE from the recorded dialog.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dtmfgraph.api import mint_token

from ..api.harness import (
    APP,
    TENANT,
    Receiver,
    free_port,
    make_settings,
    pg_database,
    sdk_client,
)
from ..api.sdkhelp import dtmf_body
from ..judges.baresip import Baresip
from ..judges.kamailio import Kamailio
from ..judges.ports import free_udp_port
from .test_graph_restart import ready, start_serve

NODE_ENV = {"DTMFGRAPH_NODE_HEARTBEAT_S": "0.5", "DTMFGRAPH_NODE_DEAD_AFTER_S": "5"}
"""The default lease (5 s): a shorter one declares a node dead on a loaded machine whose
heartbeat is merely late, and its notifications go out twice."""


@pytest.fixture
async def pg() -> AsyncIterator[str]:
    async with pg_database() as url:
        yield url


@contextlib.asynccontextmanager
async def node(
    tmp: Path, db: str, name: str, *args: str, **env: str
) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """A serve node called ``name`` (``args``, ``env``: more options and variables); yields an
    API client for it and its process."""
    port, sip_port = free_port(), free_udp_port()
    tmp.mkdir(parents=True, exist_ok=True)
    log = tmp / "serve.log"
    proc = start_serve(tmp, db, port, sip_port, log, "--node-id", name, *args, **(NODE_ENV | env))
    token = mint_token(make_settings(tmp, db, port), tenant_id=TENANT, app_id=APP)
    base = f"http://127.0.0.1:{port}"
    try:
        await ready(base, proc, log)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=f"{base}/v1.0", headers=headers) as http:
            yield http, proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(10)


def token_of(http: httpx.AsyncClient) -> str:
    return str(http.headers["Authorization"]).removeprefix("Bearer ")


def _is(kind: str, resource: str) -> Any:
    return lambda n: n["changeType"] == kind and n["resourceUrl"].endswith(resource)


async def test_requests_reach_the_calls_node_and_a_dead_node_is_reaped(
    tmp_path: Path, pg: str, receiver: Receiver
) -> None:
    async with (
        Baresip(tmp_path / "bs") as bs,
        node(tmp_path / "a", pg, "node-a") as (a, proc_a),
        node(tmp_path / "b", pg, "node-b") as (b, _),
    ):
        body = {"callbackUri": receiver.url, "targets": [{"identity": {"user": {"id": bs.uri}}}]}
        r = await a.post("/communications/calls", json=body)
        assert r.status_code == 201, r.text
        cid = r.json()["id"]
        await receiver.wait_for(lambda n: n["resourceData"].get("state") == "established")
        await bs.wait_event("CALL_ESTABLISHED", 30)

        # sendDtmfTones to node B with the official SDK: forwarded to node A, which carries
        # the call; the SDK gets the typed operation back as if node B had run it
        sdk_b = sdk_client(str(b.base_url).rstrip("/").removesuffix("/v1.0"), token_of(b))
        sent = await sdk_b.communications.calls.by_call_id(cid).send_dtmf_tones.post(
            dtmf_body("v1.0", "123", dtmfMethod="rfc4733")
        )
        assert type(sent).__name__ == "SendDtmfTonesOperation" and sent.id
        op = {"id": sent.id}
        [done] = await receiver.wait_for(_is("deleted", f"/operations/{op['id']}"), timeout=30)
        assert done["resourceData"]["status"] == "completed"
        await bs.wait_for(lambda x: x.rfc4733_keys() == "123", 5, "keys 123")
        got = (await b.get(f"/communications/calls/{cid}/operations/{op['id']}")).json()
        assert got["status"] == "completed"  # read from the database on node B

        # hang up through node B
        r = await b.delete(f"/communications/calls/{cid}")
        assert r.status_code == 204, r.text
        await bs.wait_event("CALL_CLOSED", 30)
        [end] = await receiver.wait_for(_is("deleted", f"/calls/{cid}"), timeout=30)
        info = end["resourceData"]["resultInfo"]
        assert (info["code"], info["subcode"]) == (200, 7000)

        # a second call on node A, then node A dies: node B ends it and hangs up baresip
        r = await a.post("/communications/calls", json=body)
        cid2 = r.json()["id"]
        await receiver.wait_for(
            lambda n: (
                n["resourceUrl"].endswith(cid2) and n["resourceData"].get("state") == "established"
            )
        )
        await bs.wait_event("CALL_ESTABLISHED", 30, count=2)
        os.kill(proc_a.pid, signal.SIGKILL)
        proc_a.wait(10)
        [end2] = await receiver.wait_for(_is("deleted", f"/calls/{cid2}"), timeout=30)
        info = end2["resourceData"]["resultInfo"]
        assert (info["code"], info["subcode"]) == (500, 1005)
        await bs.wait_event("CALL_CLOSED", 30, count=2)

    # while both nodes ran, each notification went out once although both deliver; around
    # the kill, delivery is at least once (node A may die between a POST and its record)
    first = [
        (n["changeType"], n["resourceUrl"], n["resourceData"].get("state"))
        for n in receiver.for_call(cid)
    ]
    assert len(first) == len(set(first)) == 5, first


def test_node_id_option_is_in_serve_help() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dtmfgraph", "serve", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and "--node-id" in done.stdout


async def test_one_node_registers_and_the_next_takes_over_when_it_dies(
    tmp_path: Path, pg: str
) -> None:
    """Both nodes have --sip-register: only the first alive (by id) binds, else the registrar
    would fork every incoming call to both; when it dies the other registers."""
    async with Kamailio(tmp_path / "kam", {"bot": "bot-secret"}) as kam:
        args = ("--sip-register", kam.uri("bot"), "--sip-auth-user", "bot")
        env = {"DTMFGRAPH_SIP_AUTH_PASSWORD": "bot-secret"}
        async with node(tmp_path / "a", pg, "node-a", *args, **env) as (_, proc_a):
            await kam.wait_bound("bot")
            async with node(tmp_path / "b", pg, "node-b", *args, **env):
                await asyncio.sleep(1.5)  # several heartbeats of b: it stays unbound
                first = kam.bindings("bot")
                assert len(set(first)) == 1, first
                proc_a.send_signal(signal.SIGKILL)
                proc_a.wait(10)
                deadline = asyncio.get_running_loop().time() + 30
                while len(set(kam.bindings("bot"))) < 2:
                    assert asyncio.get_running_loop().time() < deadline, kam.bindings("bot")
                    await asyncio.sleep(0.2)
        contacts = kam.bindings("bot")
        assert contacts[0] != contacts[-1]  # node b's contact, after node a's


async def test_a_node_that_stops_hands_the_registration_over_at_once(
    tmp_path: Path, pg: str
) -> None:
    """node_dead_after_s is 30 s here: node B registers within seconds only because node A,
    stopped with SIGTERM, removed its binding and recorded that it stopped."""
    async with Kamailio(tmp_path / "kam", {"bot": "bot-secret"}) as kam:
        args = ("--sip-register", kam.uri("bot"), "--sip-auth-user", "bot")
        env = {"DTMFGRAPH_SIP_AUTH_PASSWORD": "bot-secret", "DTMFGRAPH_NODE_DEAD_AFTER_S": "30"}
        async with node(tmp_path / "a", pg, "node-a", *args, **env) as (_, proc_a):
            await kam.wait_bound("bot")
            async with node(tmp_path / "b", pg, "node-b", *args, **env):
                await asyncio.sleep(1.0)
                assert len(set(kam.bindings("bot"))) == 1
                proc_a.send_signal(signal.SIGTERM)
                assert proc_a.wait(15) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 8
                while len(set(kam.bindings("bot"))) < 2:
                    assert loop.time() < deadline, kam.log()[-3000:]
                    await asyncio.sleep(0.2)
        removed = [line for line in kam.log().splitlines() if "bound: bot expires '0'" in line]
        assert removed, "node A removed its binding when it stopped"
