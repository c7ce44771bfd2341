"""Group commit keeps durability: many sendDtmfTones to several calls at once (their changes
written several per transaction), then `dtmfgraph serve` killed with SIGKILL right after the
last answer; after the restart every operation that was acknowledged is in the store."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import httpx

from dtmfgraph.api import mint_token

from .harness import APP, TENANT, Receiver, free_port, make_settings
from .test_durability import _call_body, _ready, _start_serve, _wait_state


async def test_every_acknowledged_operation_survives_a_kill_9(
    db_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    token = mint_token(make_settings(tmp_path, db_url, port), tenant_id=TENANT, app_id=APP)
    proc = _start_serve(tmp_path, db_url, port)
    try:
        await _ready(base)
        async with httpx.AsyncClient(
            base_url=f"{base}/v1.0", headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as http:
            calls = []
            for _ in range(4):
                made = await http.post("/communications/calls", json=_call_body(receiver))
                calls.append(made.json()["id"])
            for cid in calls:
                await _wait_state(http, f"/communications/calls/{cid}", "state", "established")

            async def send(cid: str, n: int) -> tuple[str, str]:
                tones = {"tones": [f"tone{n % 10}"], "clientContext": f"c{n}"}
                got = await http.post(f"/communications/calls/{cid}/sendDtmfTones", json=tones)
                assert got.status_code == 200, got.text
                return cid, got.json()["id"]

            acked = await asyncio.gather(*(send(calls[n % 4], n) for n in range(40)))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            proc = _start_serve(tmp_path, db_url, port)
            await _ready(base)
            for cid, op_id in acked:
                got = await http.get(f"/communications/calls/{cid}/operations/{op_id}")
                assert got.status_code == 200, (op_id, got.text)
                assert got.json()["id"] == op_id
    finally:
        proc.kill()
        proc.wait(10)
