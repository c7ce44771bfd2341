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
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    deadline = time.monotonic() + 90  # a loaded machine takes a while to import and start
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"dtmfgraph serve exited:\n{log.read_text()}"
            try:
                await http.get(f"{base}/v1.0/communications/calls/x")
                return
            except httpx.TransportError:
                await asyncio.sleep(0.1)
    raise AssertionError(f"dtmfgraph serve did not come up:\n{log.read_text()}")


def reap(proc: subprocess.Popen[bytes]) -> None:
    """Kill ``proc`` if it still runs, and wait for it."""
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    proc.wait(10)


async def exited(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """``proc``'s exit code, waited for without blocking the event loop (the test's webhook
    receiver runs on it, and a stopping service still delivers to it)."""
    return await asyncio.wait_for(asyncio.to_thread(proc.wait), timeout)


@dataclass(frozen=True)
class ServeProcess:
    """Where one ``serve`` (SQLite under ``tmp``) listens, logs, and how to call its API."""

    tmp: Path
    port: int = field(default_factory=free_port)
    sip_port: int = field(default_factory=free_udp_port)

    @property
    def db_url(self) -> str:
        return f"sqlite+aiosqlite:///{self.tmp / 'graph.sqlite3'}"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.tmp / "serve.log"

    def start(self, *args: str, **env_over: str) -> subprocess.Popen[bytes]:
        """``serve`` with more options ``args`` and ``DTMFGRAPH_*`` variables ``env_over``."""
        return start_serve(
            self.tmp, self.db_url, self.port, self.sip_port, self.log, *args, **env_over
        )

    def client(self) -> httpx.AsyncClient:
        """The v1.0 API with a development token."""
        settings = make_settings(self.tmp, self.db_url, self.port)
        token = mint_token(settings, tenant_id=TENANT, app_id=APP)
        return httpx.AsyncClient(
            base_url=f"{self.base}/v1.0", headers={"Authorization": f"Bearer {token}"}
        )


async def _long_send_under_way(http: httpx.AsyncClient, cid: str, bs: Baresip) -> Any:
    """POST a 50-key sendDtmfTones on call ``cid``; its operation once baresip hears keys."""
    op = await http.post(f"/communications/calls/{cid}/sendDtmfTones", json={"tones": LONG})
    await bs.wait_for(lambda b: len(b.rfc4733_keys()) >= 2, 5, "keys of the long send")
    return op.json()


async def _call_established(http: httpx.AsyncClient, receiver: Receiver, bs: Baresip) -> str:
    """POST a call to baresip; its id once the receiver has heard it is established."""
    body = {"callbackUri": receiver.url, "targets": [{"identity": {"user": {"id": bs.uri}}}]}
    r = await http.post("/communications/calls", json=body)
    assert r.status_code == 201, r.text
    await receiver.wait_for(lambda n: n["resourceData"].get("state") == "established")
    return str(r.json()["id"])


async def test_kill_9_mid_call_loses_nothing(tmp_path: Path, receiver: Receiver) -> None:
    serve = ServeProcess(tmp_path)
    proc = serve.start()
    try:
        async with Baresip(tmp_path / "bs") as bs, serve.client() as http:
            await ready(serve.base, proc, serve.log)
            assert f"SIP on sip:dtmfgraph@127.0.0.1:{serve.sip_port}" in serve.log.read_text()
            cid = await _call_established(http, receiver, bs)
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
            proc = serve.start()
            await ready(serve.base, proc, serve.log)
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
        reap(proc)
    assert trail(notes) == [
        ("updated", "establishing"),
        ("updated", "established"),
        ("deleted", done),
        ("deleted", long_op["id"]),
        ("deleted", queued["id"]),
        ("deleted", "terminated"),
    ]


async def test_sigterm_mid_call_ends_it_once_and_says_so(
    tmp_path: Path, receiver: Receiver
) -> None:
    """A graceful stop (SIGTERM) in the middle of a call and a running send: the stopping
    process records the call terminated ("the service was stopped") and its operations failed,
    and hangs up the far end itself; the restarted process finds nothing left to end (no second
    BYE, nothing re-ended), and the notifications queued in the outbox go out in order."""
    serve = ServeProcess(tmp_path)
    proc = serve.start()
    try:
        async with Baresip(tmp_path / "bs") as bs, serve.client() as http:
            await ready(serve.base, proc, serve.log)
            cid = await _call_established(http, receiver, bs)
            receiver.up = False  # what happens next stays in the outbox
            long_op = await _long_send_under_way(http, cid, bs)
            proc.send_signal(signal.SIGTERM)
            assert await exited(proc, 60) in (0, -signal.SIGTERM)
            await bs.wait_event("CALL_CLOSED", 5)  # the stopping process said BYE
            stopped_log = serve.log.read_text()
            proc = serve.start()
            await ready(serve.base, proc, serve.log)
            call = (await http.get(f"/communications/calls/{cid}")).json()
            assert call["state"] == "terminated"
            assert (call["resultInfo"]["code"], call["resultInfo"]["subcode"]) == (500, 1005)
            assert "service was stopped" in call["resultInfo"]["message"]
            got = (await http.get(f"/communications/calls/{cid}/operations/{long_op['id']}")).json()
            assert got["status"] == "failed" and got["completionReason"] == "unknown"
            receiver.up = True
            notes = await receiver.wait_for(lambda n: True, count=4)
            await asyncio.sleep(1.0)  # a restart that re-ended the call would show here
            restart_log = serve.log.read_text()[len(stopped_log) :]
    finally:
        reap(proc)
    assert "hung up the far end" not in restart_log and "ending it" not in restart_log
    assert len(bs.of_type("CALL_CLOSED")) == 1
    assert trail(receiver.notes) == [
        ("updated", "establishing"),
        ("updated", "established"),
        ("deleted", long_op["id"]),
        ("deleted", "terminated"),
    ]
    assert len(notes) == 4


async def test_sigterm_delivers_the_end_of_its_calls_before_exiting(
    tmp_path: Path, receiver: Receiver
) -> None:
    """A graceful stop does not leave the end of its calls for the next start: the bot hears
    that its operation failed and its call ended before the process exits."""
    serve = ServeProcess(tmp_path)
    proc = serve.start()
    try:
        async with Baresip(tmp_path / "bs") as bs, serve.client() as http:
            await ready(serve.base, proc, serve.log)
            cid = await _call_established(http, receiver, bs)
            long_op = await _long_send_under_way(http, cid, bs)
            proc.send_signal(signal.SIGTERM)
            assert await exited(proc, 60) in (0, -signal.SIGTERM)
            notes = list(receiver.notes)  # all there, with nothing running any more
    finally:
        reap(proc)
    # the operator sees it too, in timestamped lines (serve logs at info by default)
    logged = serve.log.read_text()
    assert re.search(
        r"\n\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} INFO dtmfgraph\.service\.calls: stopping: "
        r"ended the 1 call\(s\) this node carried\n",
        logged,
    ), logged
    assert trail(notes) == [
        ("updated", "establishing"),
        ("updated", "established"),
        ("deleted", long_op["id"]),
        ("deleted", "terminated"),
    ]
    ended = notes[-1]["resourceData"]["resultInfo"]
    assert (ended["code"], ended["subcode"]) == (500, 1005)


async def test_sigterm_does_not_wait_long_for_a_hanging_receiver(
    tmp_path: Path, receiver: Receiver
) -> None:
    """The delivery at a stop is bounded (``notify_drain_on_stop_s``): a receiver that holds
    the POST does not hold the stop (the POST itself would time out only after 12 s), and what
    it did not take is delivered, in order, after the restart."""
    serve = ServeProcess(tmp_path)
    proc = serve.start(DTMFGRAPH_NOTIFY_DRAIN_ON_STOP_S="1", DTMFGRAPH_NOTIFY_TIMEOUT_S="12")
    try:
        async with Baresip(tmp_path / "bs") as bs, serve.client() as http:
            await ready(serve.base, proc, serve.log)
            cid = await _call_established(http, receiver, bs)
            receiver.hang_s = 15.0
            proc.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            assert await exited(proc, 60) in (0, -signal.SIGTERM)
            took = time.monotonic() - signalled
            assert "delivery at stop cut off after 1 s" in serve.log.read_text()
            receiver.hang_s = 0.0
            proc = serve.start()
            await ready(serve.base, proc, serve.log)
            await receiver.wait_for(lambda n: n["changeType"] == "deleted", timeout=25)
            await bs.wait_event("CALL_CLOSED", 5)
    finally:
        reap(proc)
    assert took < 8, took  # the 1 s cut-off, not the 12 s POST timeout nor the 15 s hang
    assert trail(receiver.notes) == [
        ("updated", "establishing"),
        ("updated", "established"),
        ("deleted", "terminated"),
    ]
    assert receiver.notes[-1]["resourceUrl"].endswith(cid)
