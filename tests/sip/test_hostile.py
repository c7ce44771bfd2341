"""The user agent against hostile INVITEs: every one gets a final answer, none a traceback."""

from __future__ import annotations

import pytest

from dtmfgraph.sip import (
    CallEstablished,
    SipParseError,
    UserAgent,
    build_offer,
    parse_message,
)
from dtmfgraph.sip.dtmf_relay import DtmfBodyError, decode
from dtmfgraph.sip.registration import _seconds
from dtmfgraph.sip.stream import StreamFramer

from .hostile import exchange, incoming, invite, sdp


def _ua() -> UserAgent:
    return UserAgent("127.0.0.1", 5060, "bot")


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1\x00", "1.2.3.4\x00evil", "pbx.example.com", "localhost", "fe80::1%eth0", "-"],
)
def test_an_sdp_address_that_is_not_an_ip_literal_gets_488(address: str) -> None:
    """A NUL byte (a TypeError at sendto once) or a host name (resolved on the event loop for
    every packet once) in ``c=``: 488 with a Warning saying why, and no call is raised."""
    ua = _ua()
    [*provisional, final] = exchange(ua, invite(sdp(address)))
    assert not provisional
    assert final.status == 488, final
    warning = final.headers.get("Warning")
    assert warning is not None and warning.startswith("301 ") and "not an IP" in warning
    assert incoming(ua) == []
    assert ua.counters.sdp_refused == 1


def test_an_ip_literal_is_taken() -> None:
    ua = _ua()
    responses = exchange(ua, invite(sdp("::1").replace("IP4 ::1", "IP6 ::1")))
    assert [r.status for r in responses] == [100]
    assert len(incoming(ua)) == 1


def test_a_host_name_in_a_rtcp_gets_488() -> None:
    """``a=rtcp:PORT IN IP4 NAME``: our RTCP would go to a name resolved on the event loop."""
    ua = _ua()
    attributes = "a=rtcp:40001 IN IP4 rtcp.example.com\r\n"
    [final] = exchange(ua, invite(sdp(attributes=attributes)))
    assert final.status == 488 and "a=rtcp" in (final.headers.get("Warning") or "")
    assert incoming(ua) == []


def test_an_answer_naming_a_host_is_not_taken() -> None:
    """The 200 OK to our INVITE names a host: its SDP is not taken (the phone then hangs up
    with 488, having no media address), and nothing is resolved."""
    ua = _ua()
    call = ua.invite("sip:far@127.0.0.1:5070", build_offer("127.0.0.1", 4000, session_id="1"), 0.0)
    [(raw, _)] = ua.datagrams_to_send(0.0)
    request = parse_message(raw)
    body = sdp("pbx.example.com").encode()
    via = request.headers.get("Via")
    ok = (
        "SIP/2.0 200 OK\r\n"
        f"Via: {via}\r\n"
        f"From: {request.headers.get('From')}\r\n"
        f"To: {request.headers.get('To')};tag=b1\r\n"
        f"Call-ID: {call.call_id}\r\n"
        "CSeq: 1 INVITE\r\n"
        "Contact: <sip:far@127.0.0.1:5070>\r\n"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    ua.receive_datagram(ok, ("127.0.0.1", 5070), 0.1)
    events = []
    while (event := ua.next_event()) is not None:
        events.append(event)
    assert any(isinstance(e, CallEstablished) for e in events)
    assert call.remote_sdp is None and call.media is None


BIG = "9" * 5000
"""Past Python's 4,300-digit int() limit: a ValueError where a number is read unbounded."""
TE = "a=rtpmap:101 telephone-event/8000\r\n"


@pytest.mark.parametrize(
    ("attributes", "formats", "why"),
    [
        (f"{TE}a=ptime:{BIG}\r\n", "0 101", "a=ptime"),
        (f"{TE}a=ptime:0\r\n", "0 101", "a=ptime"),
        (f"{TE}a=maxptime:20x\r\n", "0 101", "a=maxptime"),
        (f"a=rtpmap:101 telephone-event/{BIG}\r\n", "0 101", "a=rtpmap"),
        ("a=rtpmap:101 telephone-event/0\r\n", "0 101", "a=rtpmap"),
        (f"{TE}a=rtcp:{BIG}\r\n", "0 101", "a=rtcp"),
        (f"{TE}a=rtcp:70000\r\n", "0 101", "a=rtcp"),
        (f"{TE}a=fmtp:{BIG} 0-16\r\n", "0 101", "a=fmtp"),
        ("a=rtpmap:128 telephone-event/8000\r\n", "0 128", "payload type"),
        ("a=rtpmap:101 telephone-event/8000\r\n", f"0 {BIG}", "payload type"),
        (TE, "0 101 1000", "payload type"),
        ("a=rtpmap:255 PCMU/8000\r\n", "255", "payload type"),
    ],
)
def test_every_sdp_number_is_bounded_488(attributes: str, formats: str, why: str) -> None:
    """A 5,000-digit number in a=ptime, the telephone-event rate or a=rtcp once left the
    INVITE unanswered (a ValueError); a payload type outside 0-127 (telephone-event on 128)
    was answered as offered. Now each is 488 with a Warning naming the field."""
    ua = _ua()
    [final] = exchange(ua, invite(sdp(formats=formats, attributes=attributes)))
    assert final.status == 488, final
    assert why in (final.headers.get("Warning") or ""), final.headers.get("Warning")
    assert incoming(ua) == []


def test_a_media_port_of_5000_digits_is_400() -> None:
    ua = _ua()
    [final] = exchange(
        ua, invite(sdp(port=int(BIG[:5])).replace("m=audio 99999", f"m=audio {BIG}"))
    )
    assert final.status == 400


@pytest.mark.parametrize("value", [BIG, "256", "٧٠", "-1"])
def test_a_bad_max_forwards_is_400(value: str) -> None:
    """Max-Forwards of 5,000 digits once raised ValueError (12 log lines, no reply)."""
    ua = _ua()
    data = invite(sdp()).replace(b"Max-Forwards: 70", f"Max-Forwards: {value}".encode())
    [final] = exchange(ua, data)
    assert final.status == 400 and "Max-Forwards" in (final.headers.get("Warning") or "")


def test_a_content_length_of_5000_digits_breaks_the_stream_cleanly() -> None:

    framer = StreamFramer()
    with pytest.raises(SipParseError, match="Content-Length"):
        framer.feed(
            b"OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nContent-Length: " + BIG.encode() + b"\r\n\r\n"
        )


@pytest.mark.parametrize("signal", [BIG, "١"])
def test_an_info_signal_of_5000_digits_is_400(signal: str) -> None:
    with pytest.raises(DtmfBodyError):
        decode("application/dtmf-relay", f"Signal={signal}\r\nDuration=100\r\n".encode())


def test_an_expires_of_5000_digits_is_capped() -> None:
    assert _seconds(BIG) == 2**32 - 1
    assert _seconds("٣") is None
    assert _seconds("3600") == 3600
