"""`dtmfgraph serve --media sip` killed with SIGKILL while its call rings at sipp; sipp answers
after the restart. The new process never sent that INVITE, yet it ACKs the 200 OK (so the far
end stops resending it) and hangs up with a BYE (so the far end is not left in a silent
answered call); the call itself is recorded as ended by the restart."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

from ..api.harness import Receiver
from ..judges.sipp import sipp_uas, uas_late_answer_scenario
from .test_graph_restart import ServeProcess, ready, reap

ANSWER_AFTER_MS = 4000
"""How long sipp rings before it answers: the kill happens at once when it rings, and the
200 OK is then resent (0.5 s, 1 s, 2 s, ... apart) until the restarted process ACKs it."""


async def _wait_for_text(path: Path, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{text!r} never appeared in {path}")


async def test_answer_after_restart_is_acked_and_hung_up(
    tmp_path: Path, receiver: Receiver
) -> None:
    serve = ServeProcess(tmp_path)
    trace = tmp_path / "sipp" / "messages.log"
    scenario = uas_late_answer_scenario(ANSWER_AFTER_MS)
    extra = ("-trace_msg", "-message_file", str(trace))
    proc = serve.start()
    try:
        async with (
            sipp_uas(tmp_path / "sipp", scenario, timeout_s=60, extra=extra) as (port, sipp),
            serve.client() as http,
        ):
            await ready(serve.base, proc, serve.log)
            target = f"sip:bob@127.0.0.1:{port}"
            targets = [{"identity": {"user": {"id": target}}}]
            body = {"callbackUri": receiver.url, "targets": targets}
            r = await http.post("/communications/calls", json=body)
            assert r.status_code == 201, r.text
            cid = r.json()["id"]
            await _wait_for_text(trace, "SIP/2.0 180 Ringing", 15)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            assert "SIP/2.0 200 OK" not in trace.read_text(errors="replace")  # still ringing
            proc = serve.start()
            await ready(serve.base, proc, serve.log)
            # sipp exits 0 once it got the ACK and a BYE (and answered the BYE)
            _, err = await asyncio.wait_for(sipp.communicate(), 60)
            assert sipp.returncode == 0, err.decode(errors="replace")
            call = (await http.get(f"/communications/calls/{cid}")).json()
            assert call["state"] == "terminated"
            assert "media was lost" in call["resultInfo"]["message"]
    finally:
        reap(proc)
