"""Our Phone against hostile SIP over real loopback sockets: a final answer for every INVITE,
no socket or task left behind."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dtmfgraph.media import PortRange, PortRangeExhaustedError
from dtmfgraph.media.phone import RTP_FULL_RETRY_AFTER_S, Phone

from ..api.harness import Receiver, stop
from ..judges.ports import free_udp_port
from ..sip.hostile import invite, sdp
from .answering import answer_every_call
from .raw_sip import final_response
from .test_graph_sip import start_sip_service


async def test_a_nul_in_the_sdp_address_gets_488_and_binds_nothing(phone: Phone) -> None:
    """``c=IN IP4 127.0.0.1\\x00``: 488 at once; no call, no RTP socket (before: 200 OK, a
    TypeError on every packet, and two sockets that stayed bound for good)."""
    calls, _ = answer_every_call(phone)
    for n in range(3):
        response = await final_response(
            lambda port, n=n: invite(
                sdp("127.0.0.1\x00"),
                target=phone.sip_address,
                via_port=port,
                call_id=f"nul-{n}",
            ).decode(),
            phone.sip_address,
        )
        assert response.startswith("SIP/2.0 488"), response
    await asyncio.sleep(0.05)
    assert calls == [] and phone.calls == []


@contextlib.contextmanager
def _taken_range() -> Iterator[PortRange]:
    """A two-port RTP range (even ports) whose ports this test holds itself."""
    for _ in range(50):
        base = free_udp_port() & ~1
        socks: list[socket.socket] = []
        try:
            for port in (base, base + 2):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            for sock in socks:
                sock.close()
            continue
        try:
            yield PortRange(base, base + 3, even=True)
        finally:
            for sock in socks:
                sock.close()
        return
    pytest.fail("no two free even ports found")


async def test_a_full_rtp_range_answers_503_with_retry_after() -> None:
    """Every RTP port taken: an INVITE gets 503 + Retry-After at once, not 100 Trying and then
    nothing; counted. Placing a call raises at once, counted too."""
    with _taken_range() as ports:
        phone = await Phone.start("127.0.0.1", 0, ports)
        try:
            calls, _ = answer_every_call(phone)
            response = await final_response(
                lambda port: invite(
                    sdp(), target=phone.sip_address, via_port=port, call_id="full-1"
                ).decode(),
                phone.sip_address,
            )
            assert response.startswith("SIP/2.0 503"), response
            assert f"Retry-After: {RTP_FULL_RETRY_AFTER_S}\r\n" in response
            assert calls == [] and phone.rtp_ports_exhausted == 1
            with pytest.raises(PortRangeExhaustedError):
                await phone.dial("sip:far@127.0.0.1:9", timeout=1)
            assert phone.rtp_ports_exhausted == 2
        finally:
            await phone.close()


async def test_create_call_with_no_rtp_port_free_is_503(tmp_path: Path, receiver: Receiver) -> None:
    """POST /communications/calls while every RTP port is taken: 503 serviceNotAvailable with
    Retry-After at once (before: 201, then the call failed 500/1005 with no log line), and
    /metrics counts it."""
    with _taken_range() as ports:
        svc, server, task = await start_sip_service(
            tmp_path / "svc", receiver, rtp_ports=f"{ports.first}-{ports.last}"
        )
        try:
            body = {
                "callbackUri": receiver.url,
                "targets": [{"identity": {"user": {"id": "sip:far@127.0.0.1:9"}}}],
                "requestedModalities": ["audio"],
                "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
            }
            headers = {"Authorization": f"Bearer {svc.token()}"}
            async with httpx.AsyncClient() as http:
                reply = await http.post(
                    f"{svc.base}/v1.0/communications/calls", json=body, headers=headers
                )
                assert reply.status_code == 503, reply.text
                assert reply.json()["error"]["code"] == "serviceNotAvailable"
                assert reply.headers["Retry-After"] == str(RTP_FULL_RETRY_AFTER_S)
                metrics = (await http.get(f"{svc.base}/metrics")).text
            [line] = [
                x
                for x in metrics.splitlines()
                if x.startswith("dtmfgraph_rtp_ports_exhausted_total")
            ]
            assert float(line.rsplit(" ", 1)[1]) == 1
        finally:
            await stop(server, task)


def _pending(name: str) -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if name in getattr(t.get_coro(), "__qualname__", "")]


async def test_an_incoming_call_abandoned_without_cancel_leaves_no_task(
    tmp_path: Path, receiver: Receiver
) -> None:
    """The caller sends an INVITE and goes away (no CANCEL, no ACK): the app never answers,
    the answer timeout refuses it 480, and nothing of it is left waiting (before: one task
    per such call, waiting for a CANCEL for good: 2,076 destroyed at stop)."""
    svc, server, task = await start_sip_service(
        tmp_path / "svc", receiver, incoming_answer_timeout_s=0.3
    )
    try:
        phone = svc.media.phone
        before = len(_pending("_caller_gave_up"))
        for n in range(3):
            response = await final_response(
                lambda port, n=n: invite(
                    sdp(), target=phone.sip_address, via_port=port, call_id=f"gone-{n}"
                ).decode(),
                phone.sip_address,
            )
            assert response.startswith("SIP/2.0 480"), response
        await asyncio.sleep(0.1)
        assert len(_pending("_caller_gave_up")) == before
        assert not any(live.incoming for live in svc.app.state.service._live.values())
    finally:
        await stop(server, task)
