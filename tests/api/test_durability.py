"""Outbox retries and give-up, keep-alive, dial failures, kill -9 of `dtmfgraph serve`."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from dtmfgraph.api import mint_token
from dtmfgraph.service import calls as service_calls

from .conftest import ServiceFactory
from .harness import (
    APP,
    SECRET,
    TENANT,
    Receiver,
    Service,
    free_port,
    make_settings,
    trail,
)


def _auth(svc: Service) -> dict[str, str]:
    return {"Authorization": f"Bearer {svc.token()}"}


def _call_body(receiver: Receiver, target: str = "sip:bob@127.0.0.1") -> dict[str, Any]:
    return {"callbackUri": receiver.url, "targets": [{"identity": {"user": {"id": target}}}]}


async def _wait_state(http: httpx.AsyncClient, url: str, key: str, want: str, t: float = 30) -> Any:
    deadline = time.monotonic() + t
    while True:
        body = (await http.get(url)).json()
        if body.get(key) == want:
            return body
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.05)


async def test_receiver_down_then_back(svc: Service, receiver: Receiver) -> None:
    receiver.up = False
    async with httpx.AsyncClient(base_url=f"{svc.base}/v1.0", headers=_auth(svc)) as http:
        cid = (await http.post("/communications/calls", json=_call_body(receiver))).json()["id"]
        await _wait_state(http, f"/communications/calls/{cid}", "state", "established")
        ops = []
        for keys in (["tone1", "tone2"], ["tone3"], ["star"]):
            ops.append(
                (
                    await http.post(
                        f"/communications/calls/{cid}/sendDtmfTones", json={"tones": keys}
                    )
                ).json()["id"]
            )
        await _wait_state(
            http, f"/communications/calls/{cid}/operations/{ops[-1]}", "status", "completed"
        )
        await asyncio.sleep(0.3)
        assert receiver.notes == [] and receiver.refused > 0
        receiver.up = True
        notes = await receiver.wait_for(lambda n: True, count=5)
    order = [n["resourceData"].get("state") or n["resourceData"]["id"] for n in notes]
    assert order == ["establishing", "established", *ops]
    assert all(n["resourceData"].get("status", "completed") == "completed" for n in notes)


async def test_give_up_keeps_last_error(
    service_factory: ServiceFactory, receiver: Receiver
) -> None:
    receiver.up = False
    async with (
        service_factory(notify_retry_for_s=1.0) as svc,
        httpx.AsyncClient(base_url=f"{svc.base}/v1.0", headers=_auth(svc)) as http,
    ):
        cid = (await http.post("/communications/calls", json=_call_body(receiver))).json()["id"]
        await _wait_state(http, f"/communications/calls/{cid}", "state", "established")
        deadline = time.monotonic() + 10
        while True:
            rows = await svc.app.state.repo.outbox_rows(cid)
            if rows and all(r["state"] == "dead" for r in rows) and len(rows) >= 2:
                break
            assert time.monotonic() < deadline, rows
            await asyncio.sleep(0.05)
    # retried for its window (1 s), then dead; the call's later notification went with it (in
    # the same POSTs, once it was queued) and died with it, or is held behind it
    first, *later = rows
    assert first["attempts"] >= 2 and first["last_error"].endswith("HTTP 503"), first
    assert first["attempts"] == receiver.refused  # every POST carried the first
    held = f"held behind notification {first['id']}"
    for r in later:
        assert r["attempts"] <= first["attempts"], r  # only ever sent with the first
        assert r["last_error"] == held or r["last_error"].endswith("HTTP 503"), r


async def test_keepalive_timeout(
    service_factory: ServiceFactory, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service's clock is driven here: time jumps instead of passing, so that a loaded
    machine (a slow request between two keepAlives) cannot end the call early."""
    skipped = [0.0]
    monkeypatch.setattr(service_calls, "now", lambda: time.time() + skipped[0])
    async with (
        service_factory(keepalive_timeout_s=8.0) as svc,
        httpx.AsyncClient(base_url=f"{svc.base}/v1.0", headers=_auth(svc)) as http,
    ):
        cid = (await http.post("/communications/calls", json=_call_body(receiver))).json()["id"]
        await _wait_state(http, f"/communications/calls/{cid}", "state", "established")
        for _ in range(4):  # kept alive for 16 s, twice the timeout: 4 s apart, a 4 s margin
            skipped[0] += 4.0
            assert (await http.post(f"/communications/calls/{cid}/keepAlive")).status_code == 200
            assert (await http.get(f"/communications/calls/{cid}")).json()["state"] == "established"
        skipped[0] += 9.0  # then none for longer than the timeout: the watchdog (every 2 s) ends it
        body = await _wait_state(http, f"/communications/calls/{cid}", "state", "terminated")
        assert (body["resultInfo"]["code"], body["resultInfo"]["subcode"]) == (408, 8537)
        r = await http.post(f"/communications/calls/{cid}/keepAlive")
        assert r.status_code == 404


async def test_dial_failure_maps_sip_status(svc: Service, receiver: Receiver) -> None:
    async with httpx.AsyncClient(base_url=f"{svc.base}/v1.0", headers=_auth(svc)) as http:
        cid = (
            await http.post(
                "/communications/calls", json=_call_body(receiver, "sip:busy@127.0.0.1")
            )
        ).json()["id"]
        body = await _wait_state(http, f"/communications/calls/{cid}", "state", "terminated")
    assert (body["resultInfo"]["code"], body["resultInfo"]["subcode"]) == (480, 10076)
    [end] = await receiver.wait_for(lambda n: n["changeType"] == "deleted")
    assert end["resourceData"]["resultInfo"]["subcode"] == 10076


SERVE = (
    "import typer\nfrom dtmfgraph.cli import serve\n"
    "app = typer.Typer()\nserve.register(app)\napp()\n"
)


def _start_serve(tmp: Path, db_url: str, port: int) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ,
        DTMFGRAPH_JWT_HS256_SECRET=SECRET,
        DTMFGRAPH_NOTIFY_BACKOFF_INITIAL_S="0.05",
        DTMFGRAPH_NOTIFY_BACKOFF_MAX_S="0.3",
    )
    cmd = [
        sys.executable,
        "-c",
        SERVE,
        "serve",
        "--port",
        str(port),
        "--data-dir",
        str(tmp),
        "--database-url",
        db_url,
        "--media",
        "loopback",
        "--loopback-speed",
        "0.2",
    ]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def _ready(base: str) -> None:
    deadline = time.monotonic() + 20
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            try:
                await http.get(f"{base}/v1.0/communications/calls/x")
                return
            except httpx.TransportError:
                await asyncio.sleep(0.1)
    raise AssertionError("dtmfgraph serve did not come up")


async def test_restart_after_kill_9(db_url: str, tmp_path: Path, receiver: Receiver) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = make_settings(tmp_path, db_url, port)
    token = mint_token(settings, tenant_id=TENANT, app_id=APP)
    proc = _start_serve(tmp_path, db_url, port)
    try:
        await _ready(base)
        async with httpx.AsyncClient(
            base_url=f"{base}/v1.0", headers={"Authorization": f"Bearer {token}"}
        ) as http:
            cid = (await http.post("/communications/calls", json=_call_body(receiver))).json()["id"]
            await receiver.wait_for(lambda n: n["resourceData"].get("state") == "established")
            done = (
                await http.post(
                    f"/communications/calls/{cid}/sendDtmfTones", json={"tones": ["tone1"]}
                )
            ).json()["id"]
            await receiver.wait_for(lambda n: n["resourceData"].get("id") == done)
            receiver.up = False  # what happens next stays in the outbox
            long_op = (
                await http.post(
                    f"/communications/calls/{cid}/sendDtmfTones", json={"tones": ["tone2"] * 50}
                )
            ).json()
            queued = (
                await http.post(
                    f"/communications/calls/{cid}/sendDtmfTones", json={"tones": ["tone3"]}
                )
            ).json()
            assert (long_op["status"], queued["status"]) == ("running", "notStarted")
            await asyncio.sleep(0.2)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            proc = _start_serve(tmp_path, db_url, port)
            await _ready(base)
            call = (await http.get(f"/communications/calls/{cid}")).json()
            assert call["state"] == "terminated"
            assert (
                call["resultInfo"]["code"] == 500 and "restarted" in call["resultInfo"]["message"]
            )
            for op in (long_op, queued):
                got = (await http.get(f"/communications/calls/{cid}/operations/{op['id']}")).json()
                assert got["status"] == "failed" and got["resultInfo"]["code"] == 500
            receiver.up = True
            notes = await receiver.wait_for(lambda n: True, count=6)
    finally:
        proc.kill()
        proc.wait(10)
    assert trail(notes) == [
        ("updated", "establishing"),
        ("updated", "established"),
        ("deleted", done),
        ("deleted", long_op["id"]),
        ("deleted", queued["id"]),
        ("deleted", "terminated"),
    ]
