"""Resources that run out: the calls limit (``max_calls``) and file descriptors.

Past either, a new call is refused at once, 503 with Retry-After, in both directions: the API's
create-call (``serviceNotAvailable``) and an incoming INVITE. Each refusal is counted in
/metrics by resource, and a burst of refusals is logged once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from dtmfgraph.refusals import Refusals

from ..api.harness import Receiver, stop
from ..sip.hostile import invite, sdp
from .raw_sip import final_response
from .test_graph_restart import ServeProcess, ready, reap
from .test_graph_sip import start_sip_service


def _new_call(receiver: Receiver, target: str) -> dict[str, Any]:
    return {
        "callbackUri": receiver.url,
        "targets": [{"identity": {"user": {"id": target}}}],
        "requestedModalities": ["audio"],
        "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
    }


def _exhausted(metrics: str, resource_name: str) -> float:
    prefix = f'dtmfgraph_resources_exhausted_total{{resource="{resource_name}"}} '
    [line] = [x for x in metrics.splitlines() if x.startswith(prefix)]
    return float(line.removeprefix(prefix))


async def _invite_answer(sip: tuple[str, int], call_id: str) -> str:
    return await final_response(
        lambda port: invite(sdp(), target=sip, via_port=port, call_id=call_id).decode(), sip
    )


def test_a_burst_of_refusals_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    refusals = Refusals(logging.getLogger("test.refusals"), quiet_s=60)
    with caplog.at_level(logging.WARNING, "test.refusals"):
        assert refusals.refuse("calls", "full", 100.0)
        assert not refusals.refuse("calls", "full", 130.0)
        assert not refusals.refuse("calls", "full", 189.0)  # 59 s after the previous one
        assert refusals.refuse("rtp_ports", "full", 189.5)  # each resource has its bursts
        assert refusals.refuse("calls", "full", 250.0)  # 61 s of quiet: a new burst
    assert refusals.counts == {"calls": 4, "rtp_ports": 1, "file_descriptors": 0, "media_load": 0}
    assert len(caplog.records) == 3
    assert "calls exhausted" in caplog.records[0].getMessage()
    assert "(4 refused so far" in caplog.records[2].getMessage()


async def test_past_max_calls_create_call_and_invite_get_503(
    tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """max_calls=1 and one call being placed: create-call is 503 serviceNotAvailable with
    Retry-After, an INVITE 503 with Retry-After (before ringing); both counted, one log line;
    once the call has ended, calls are taken again."""
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # a far end that never answers
    silent.bind(("127.0.0.1", 0))
    target = f"sip:far@127.0.0.1:{silent.getsockname()[1]}"
    svc, server, task = await start_sip_service(tmp_path / "svc", receiver, max_calls=1)
    try:
        headers = {"Authorization": f"Bearer {svc.token()}"}
        calls = f"{svc.base}/v1.0/communications/calls"
        with caplog.at_level(logging.WARNING, "dtmfgraph.service.calls"):
            async with httpx.AsyncClient(headers=headers) as http:
                first = await http.post(calls, json=_new_call(receiver, target))
                assert first.status_code == 201, first.text
                refused = await http.post(calls, json=_new_call(receiver, target))
                assert refused.status_code == 503, refused.text
                assert refused.json()["error"]["code"] == "serviceNotAvailable"
                assert refused.headers["Retry-After"] == "5"
                answer = await _invite_answer(svc.media.sip_address, "over-the-limit")
                assert answer.startswith("SIP/2.0 503"), answer
                assert "Retry-After: 5\r\n" in answer
                assert _exhausted((await http.get(f"{svc.base}/metrics")).text, "calls") == 2
                assert (await http.delete(f"{calls}/{first.json()['id']}")).status_code == 204
                for _ in range(100):  # the call ends (its CANCEL may take a moment)
                    if not svc.app.state.service._live:
                        break
                    await asyncio.sleep(0.05)
                again = await http.post(calls, json=_new_call(receiver, target))
                assert again.status_code == 201, again.text
        logged = [r for r in caplog.records if "calls exhausted" in r.getMessage()]
        assert len(logged) == 1, [r.getMessage() for r in caplog.records]
    finally:
        await stop(server, task)
        silent.close()


def _lowest_free_fd(pid: int) -> int:
    used = {int(fd) for fd in os.listdir(f"/proc/{pid}/fd")}
    return next(n for n in range(len(used) + 1) if n not in used)


async def test_no_file_descriptor_left_gives_503_not_500(
    tmp_path: Path, receiver: Receiver
) -> None:
    """``dtmfgraph serve`` whose open-files limit is lowered (prlimit) to the descriptors it
    holds: create-call is 503 serviceNotAvailable + Retry-After (before: 500), an INVITE 503 +
    Retry-After (before: no answer), one log line for both, counted; with the limit back, calls
    are taken again (nothing died)."""
    serve = ServeProcess(tmp_path)
    proc = serve.start()
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    target = f"sip:far@127.0.0.1:{silent.getsockname()[1]}"
    try:
        await ready(serve.base, proc, serve.log)
        async with serve.client() as http:
            await http.get("/communications/calls/x")  # the connection is open before the limit
            limits = resource.prlimit(proc.pid, resource.RLIMIT_NOFILE)
            resource.prlimit(
                proc.pid, resource.RLIMIT_NOFILE, (_lowest_free_fd(proc.pid), limits[1])
            )
            refused = await http.post("/communications/calls", json=_new_call(receiver, target))
            sip = ("127.0.0.1", serve.sip_port)
            answer = await _invite_answer(sip, "no-fd-left")
            resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, limits)
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"]["code"] == "serviceNotAvailable"
            assert refused.headers["Retry-After"] == "5"
            assert answer.startswith("SIP/2.0 503"), answer
            assert "Retry-After: 5\r\n" in answer
            metrics = (await http.get(f"{serve.base}/metrics")).text
            assert _exhausted(metrics, "file_descriptors") == 2
            assert _exhausted(metrics, "rtp_ports") == 0
            again = await http.post("/communications/calls", json=_new_call(receiver, target))
            assert again.status_code == 201, again.text
        log = serve.log.read_text()
        assert log.count("file descriptors exhausted") == 1, log
        assert "Traceback" not in log, log
    finally:
        reap(proc)
        silent.close()
