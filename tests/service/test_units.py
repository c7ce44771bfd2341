"""Service-layer pieces on their own: the loopback far end, mappings, callback policy, paths."""

from __future__ import annotations

import asyncio
import time

import pytest

from dtmfgraph.api.middleware import normalise_path
from dtmfgraph.service import InvalidRequestError, LoopbackMedia, MediaBackend, check_callback_uri
from dtmfgraph.service.calls import map_dial_error
from dtmfgraph.service.media import CallEndedError, DialError


async def test_loopback_timing_and_order() -> None:
    media: MediaBackend = LoopbackMedia(speed=0.1)
    assert isinstance(media, LoopbackMedia)
    call = await media.dial("sip:bob@127.0.0.1", timeout=1)
    t0 = time.monotonic()
    await call.send_dtmf("1#A", method="rfc4733", tone_ms=100, gap_ms=100)
    elapsed = time.monotonic() - t0
    assert media.calls[0].heard == [("1", "rfc4733"), ("#", "rfc4733"), ("A", "rfc4733")]
    assert elapsed >= 0.045  # 3 tones + 2 gaps of 10 ms each, paced (how late: not tested)


async def test_loopback_cancel_stops_at_key_boundary() -> None:
    media = LoopbackMedia(speed=0.1)
    call = await media.dial("sip:bob@127.0.0.1", timeout=1)
    task = asyncio.ensure_future(call.send_dtmf("1" * 50, method="inband", tone_ms=100, gap_ms=0))
    while len(media.calls[0].heard) < 3:  # a few keys out (however long that takes)
        await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    heard = len(media.calls[0].heard)
    assert 3 <= heard < 50
    await asyncio.sleep(0.05)
    assert len(media.calls[0].heard) == heard


async def test_loopback_remote_hangup_ends_send() -> None:
    media = LoopbackMedia(speed=0.1)
    call = await media.dial("sip:bob@127.0.0.1;dtmf=inband", timeout=1)
    assert not call.can_send_rfc4733 and not call.can_send_sipinfo
    task = asyncio.ensure_future(call.send_dtmf("123456", method="inband", tone_ms=100, gap_ms=100))
    await asyncio.sleep(0.03)
    media.calls[0].remote_hangup()
    with pytest.raises(CallEndedError):
        await task
    assert (await call.ended).kind.value == "remoteBye"


@pytest.mark.parametrize(
    ("user", "status"), [("busy", 486), ("decline", 603), ("nobody", 404), ("noroute", 0)]
)
async def test_loopback_dial_failures(user: str, status: int) -> None:
    with pytest.raises(DialError) as info:
        await LoopbackMedia().dial(f"sip:{user}@127.0.0.1", timeout=0.01)
    assert info.value.sip_status == status


@pytest.mark.parametrize(
    ("status", "reason", "code", "subcode"),
    [
        (486, "Busy Here", 480, 10076),
        (603, "Decline", 480, 10076),
        (404, "Not Found", 480, 10037),
        (408, "Request Timeout", 408, 10057),
        (0, "no route to the target", 480, 10134),
        (503, "Service Unavailable", 480, 10134),
    ],
)
def test_dial_error_mapping(status: int, reason: str, code: int, subcode: int) -> None:
    r = map_dial_error(DialError(status, reason))
    assert (r.code, r.subcode) == (code, subcode)


def test_callback_policy() -> None:
    check_callback_uri("https://bot.example.com/cb", ())
    check_callback_uri("http://127.0.0.1:9/cb", ())
    check_callback_uri("http://[::1]:9/cb", ())
    check_callback_uri("http://localhost/cb", ())
    check_callback_uri("http://bot.lan/cb", ("bot.lan",))
    for bad in (
        "http://bot.example.com/cb",
        "http://127.0.0.2/cb",
        "ftp://127.0.0.1/x",
        "not a url",
    ):
        with pytest.raises(InvalidRequestError):
            check_callback_uri(bad, ())


def test_normalise_path() -> None:
    assert normalise_path("/v1.0//communications/calls") == "/v1.0/communications/calls"
    assert (
        normalise_path("/beta/app/calls/abc/microsoft.graph.sendDtmfTones")
        == "/beta/communications/calls/abc/sendDtmfTones"
    )
