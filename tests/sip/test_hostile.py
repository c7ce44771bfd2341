"""The user agent against hostile INVITEs: every one gets a final answer, none a traceback."""

from __future__ import annotations

import pytest

from dtmfgraph.sip import CallEstablished, UserAgent, build_offer, parse_message

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
