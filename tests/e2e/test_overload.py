"""Overload is refused before keys suffer: the real service with its media loop made late.

The service runs in this process (uvicorn, the SIP phone, SQLite); a CPU hog on its event loop
(a callback that spins 180 ms of every 200 ms) makes the media clock genuinely late. The far end
is a separate ``dtmfgraph answer`` process, the judge of the keys that reach it. While the media
runs late, a new call is refused (create-call 503 ``serviceNotAvailable`` + Retry-After, an
INVITE SIP 503 + Retry-After), counted as ``resource="media_load"``, while a call already up is
still served and hears every key it was sent. Once the hog stops, calls are taken again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..api.harness import Receiver, stop
from .test_exhausted_resources import _exhausted, _invite_answer, _new_call
from .test_graph_sip import is_call_state, is_op_end, start_sip_service

KEYS = "1234567890"
TONES = [f"tone{k}" for k in KEYS]


class Hog:
    """Spins the CPU on the event loop for ``busy_s`` of every ``every_s`` (a real load on the
    loop the media runs on: every timer due meanwhile fires late)."""

    def __init__(self, busy_s: float = 0.18, every_s: float = 0.2) -> None:
        self.busy_s = busy_s
        self.every_s = every_s
        self.spins = 0
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._handle = asyncio.get_running_loop().call_later(0, self._spin)

    def _spin(self) -> None:
        end = time.perf_counter() + self.busy_s
        while time.perf_counter() < end:
            pass
        self.spins += 1
        self._handle = asyncio.get_running_loop().call_later(self.every_s - self.busy_s, self._spin)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


@contextlib.asynccontextmanager
async def answer_process() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """``dtmfgraph answer --json`` on a free port: its SIP URI and the events it prints."""
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "dtmfgraph", "answer", "--port", "0", "--json"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    events: list[dict[str, Any]] = []

    async def read(stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            events.append(json.loads(line))

    try:
        ready = json.loads(await asyncio.wait_for(proc.stdout.readline(), 30))
        assert ready["event"] == "ready", ready
        reader = asyncio.create_task(read(proc.stdout))
        try:
            yield str(ready["uri"]), events
        finally:
            reader.cancel()
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()


async def until(what: str, check: Callable[[], bool], tries: int = 300) -> None:
    for _ in range(tries):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never came: {what}")


async def test_a_late_media_clock_refuses_new_calls_and_calls_up_get_every_key(
    tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    svc, server, task = await start_sip_service(
        tmp_path / "svc",
        receiver,
        overload_new_calls_ms=50,  # far above a loaded box's lateness with two calls, far
        # under the hog's (~90 ms): back under 25 ms once the hog stops
        overload_media_ops_ms=0,  # sendDtmfTones on the call up is always served here
    )
    service = svc.app.state.service
    loop = asyncio.get_running_loop()
    hog = Hog()
    try:
        async with (
            answer_process() as (far, heard),
            httpx.AsyncClient(
                base_url=f"{svc.base}/v1.0",
                headers={"Authorization": f"Bearer {svc.token()}"},
                timeout=60,
            ) as http,
        ):
            up = await http.post("/communications/calls", json=_new_call(receiver, far))
            assert up.status_code == 201, up.text
            call_id = up.json()["id"]
            await receiver.wait_for(is_call_state(call_id, "established"), 20)

            with caplog.at_level(logging.WARNING, "dtmfgraph.service.calls"):
                hog.start()
                await until(
                    "the media clock runs late",
                    lambda: service.admission.level(loop.time()) >= 0.05,
                )
                send = await http.post(
                    f"/communications/calls/{call_id}/sendDtmfTones",
                    json={"tones": TONES, "clientContext": "under-load"},
                )
                assert send.status_code == 200, send.text  # the call up is served
                refused = await http.post("/communications/calls", json=_new_call(receiver, far))
                answer = await _invite_answer(svc.media.sip_address, "while-overloaded")
                metrics = (await http.get(f"{svc.base}/metrics")).text
                await receiver.wait_for(is_op_end(send.json()["id"]), 60)
                assert hog.spins > 0
                hog.stop()
                await until(
                    "the media load back under half the level",
                    lambda: service.admission.level(loop.time()) < 0.025,
                    tries=600,
                )
                again = await http.post("/communications/calls", json=_new_call(receiver, far))

            assert refused.status_code == 503, refused.text
            assert refused.json()["error"]["code"] == "serviceNotAvailable"
            assert refused.headers["Retry-After"] == "5"
            assert answer.startswith("SIP/2.0 503"), answer
            assert "Retry-After: 5\r\n" in answer
            assert _exhausted(metrics, "media_load") == 2
            assert _exhausted(metrics, "calls") == 0
            assert again.status_code == 201, again.text

            await until(
                "the far end heard the keys",
                lambda: len([e for e in heard if e["event"] == "key"]) >= len(KEYS),
            )
            keys = [e for e in heard if e["event"] == "key" and e["call"]]
            assert "".join(e["key"] for e in keys) == KEYS  # none lost, none extra
            for cid in (call_id, again.json()["id"]):
                assert (await http.delete(f"/communications/calls/{cid}")).status_code == 204

        logged = [r.getMessage() for r in caplog.records if "media" in r.getMessage()]
        assert len(logged) == 2, logged  # one episode: its start and its end
        assert logged[0].startswith("media overloaded") and "new calls" in logged[0]
        assert logged[1].startswith("media load back to normal") and "2 new calls" in logged[1]
    finally:
        hog.stop()
        await stop(server, task)
