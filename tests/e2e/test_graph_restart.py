"""`dtmfgraph serve --media sip` killed with SIGKILL in the middle of a real call to baresip.

Nothing the API acknowledged is lost: after the restart the call is `terminated` with a
resultInfo saying its media was lost, the running and the queued sendDtmfTones end `failed`,
and every notification (queued while the receiver was down) is delivered in order. The far end
is not left in a dead call: the new process sends it a BYE from the dialog recorded when the
call was established.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from dtmfgraph.api import mint_token

from ..api.harness import APP, SECRET, TENANT, Receiver, free_port, make_settings, trail
from ..judges.baresip import Baresip
from ..judges.ports import free_udp_port

DTMFGRAPH = str(Path(sys.executable).with_name("dtmfgraph"))
LONG = ["tone2"] * 50


def start_serve(
    tmp: Path,
    db_url: str,
    port: int,
    sip_port: int,
    log: Path,
    *args: str,
    **env_over: str,
) -> subprocess.Popen[bytes]:
    """``dtmfgraph serve --media sip`` as a subprocess; ``args`` are more options,
    ``env_over`` more ``DTMFGRAPH_*`` variables."""
    env = dict(
        os.environ,
        DTMFGRAPH_JWT_HS256_SECRET=SECRET,
        DTMFGRAPH_NOTIFY_BACKOFF_INITIAL_S="0.05",
        DTMFGRAPH_NOTIFY_BACKOFF_MAX_S="0.3",
        **env_over,
    )
    cmd = [
        DTMFGRAPH,
        "serve",
        "--port",
        str(port),
        "--data-dir",
        str(tmp),
        "--database-url",
        db_url,
        "--media",
        "sip",
        "--sip-host",
        "127.0.0.1",
        "--sip-port",
        str(sip_port),
        *args,
    ]
    with log.open("ab") as err:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)


async def ready(base: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"dtmfgraph serve exited:\n{log.read_text()}"
            try:
                await http.get(f"{base}/v1.0/communications/calls/x")
                return
            except httpx.TransportError:
                await asyncio.sleep(0.1)
    raise AssertionError(f"dtmfgraph serve did not come up:\n{log.read_text()}")


async def test_kill_9_mid_call_loses_nothing(tmp_path: Path, receiver: Receiver) -> None:
    port, sip_port = free_port(), free_udp_port()
    base = f"http://127.0.0.1:{port}"
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'graph.sqlite3'}"
    token = mint_token(make_settings(tmp_path, db_url, port), tenant_id=TENANT, app_id=APP)
    log = tmp_path / "serve.log"
    proc = start_serve(tmp_path, db_url, port, sip_port, log)
    try:
        async with (
            Baresip(tmp_path / "bs") as bs,
            httpx.AsyncClient(
                base_url=f"{base}/v1.0", headers={"Authorization": f"Bearer {token}"}
            ) as http,
        ):
            await ready(base, proc, log)
            assert f"SIP on sip:dtmfgraph@127.0.0.1:{sip_port}" in log.read_text()
            body = {
                "callbackUri": receiver.url,
                "targets": [{"identity": {"user": {"id": bs.uri}}}],
            }
            r = await http.post("/communications/calls", json=body)
            assert r.status_code == 201, r.text
            cid = r.json()["id"]
            await receiver.wait_for(lambda n: n["resourceData"].get("state") == "established")
            await bs.wait_event("CALL_ESTABLISHED", 5)
            done = (
                await http.post(
                    f"/communications/calls/{cid}/sendDtmfTones", json={"tones": ["tone1"]}
                )
            ).json()["id"]
            await receiver.wait_for(lambda n: n["resourceData"].get("id") == done)
            receiver.up = False  # what happens next stays in the outbox
            long_op = (
                await http.post(f"/communications/calls/{cid}/sendDtmfTones", json={"tones": LONG})
            ).json()
            queued = (
                await http.post(
                    f"/communications/calls/{cid}/sendDtmfTones", json={"tones": ["tone3"]}
                )
            ).json()
            assert (long_op["status"], queued["status"]) == ("running", "notStarted")
            await bs.wait_for(lambda b: len(b.rfc4733_keys()) >= 3, 5, "keys of the long send")
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            heard = bs.rfc4733_keys()
            assert not bs.of_type("CALL_CLOSED")  # baresip cannot know we died
            proc = start_serve(tmp_path, db_url, port, sip_port, log)
            await ready(base, proc, log)
            # the new process hangs up the far end from the dialog recorded at establishment
            await bs.wait_event("CALL_CLOSED", 5)
            call = (await http.get(f"/communications/calls/{cid}")).json()
            assert call["state"] == "terminated"
            assert (call["resultInfo"]["code"], call["resultInfo"]["subcode"]) == (500, 1005)
            assert "media was lost" in call["resultInfo"]["message"]
            for op in (long_op, queued):
                got = (await http.get(f"/communications/calls/{cid}/operations/{op['id']}")).json()
                assert got["status"] == "failed" and got["resultInfo"]["code"] == 500
                assert got["completionReason"] == "unknown"
            receiver.up = True
            notes = await receiver.wait_for(lambda n: True, count=6)
            assert heard == "1" + "2" * (len(heard) - 1) and 3 <= len(heard) < 51
    finally:
        with contextlib.suppress(ProcessLookupError):
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
