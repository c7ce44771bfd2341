"""SIP over TCP, sans-I/O: framing a byte stream, and what the agent does differently."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dtmfgraph.sip import (
    IncomingCall,
    SipParseError,
    SipRequest,
    SipResponse,
    UserAgent,
    build_offer,
    parse_message,
)
from dtmfgraph.sip.stream import MAX_HEADER_BYTES, StreamFramer

PEER = ("127.0.0.1", 40123)  # a TCP peer's ephemeral port


def _message(body: bytes = b"", extra: str = "") -> bytes:
    return (
        "OPTIONS sip:bot@127.0.0.1 SIP/2.0\r\n"
        "Via: SIP/2.0/TCP 127.0.0.1:40123;branch=z9hG4bKx\r\n"
        "From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:bot@127.0.0.1>\r\n"
        f"Call-ID: c\r\nCSeq: 1 OPTIONS\r\n{extra}Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def test_framer_cuts_messages_wherever_the_bytes_break() -> None:
    one, two = _message(b"hello"), _message(b"")
    stream = b"\r\n\r\n" + one + b"\r\n" + two  # keep-alive CRLFs before and between
    for cut in range(1, len(stream)):
        framer = StreamFramer()
        got = framer.feed(stream[:cut]) + framer.feed(stream[cut:])
        assert got == [one, two], cut
        assert framer.pending == 0
    assert StreamFramer().feed(one + two) == [one, two]


def test_framer_refuses_what_it_cannot_frame() -> None:
    with pytest.raises(SipParseError, match="needs a Content-Length"):
        StreamFramer().feed(b"OPTIONS sip:x SIP/2.0\r\nVia: x\r\n\r\n")
    with pytest.raises(SipParseError, match="conflicting"):
        StreamFramer().feed(_message(b"", extra="l: 5\r\n"))
    with pytest.raises(SipParseError, match="too large"):
        StreamFramer().feed(_message(b"").replace(b"Length: 0", b"Length: 99999999"))
    with pytest.raises(SipParseError, match="no end of the header block"):
        StreamFramer().feed(b"X" * (MAX_HEADER_BYTES + 1))
    assert StreamFramer().feed(b"OPTIONS sip:x SIP/2.0\r\n") == []  # just not complete yet


def test_a_request_over_tcp_is_answered_over_tcp_without_retransmissions() -> None:
    ua = UserAgent("127.0.0.1", 5060, "bot", rng=random.Random(1))
    offer = build_offer("127.0.0.1", 40000, session_id="1")
    caller = UserAgent("127.0.0.1", 40123, "alice", rng=random.Random(2))
    call = caller.invite("sip:bot@127.0.0.1:5060;transport=tcp", offer, 0.0)
    [(data, dest)] = caller.stream_messages_to_send(0.0)
    assert caller.datagrams_to_send(0.0) == []
    invite = parse_message(data)
    assert isinstance(invite, SipRequest) and dest == ("127.0.0.1", 5060)
    assert invite.top_via.transport == "TCP"
    assert invite.contacts[0].sip_uri.params == {"transport": "tcp"}
    caller.handle_deadline(10.0)  # no Timer A over TCP: nothing resent
    assert caller.stream_messages_to_send(10.0) == []

    ua.receive_stream_message(data, PEER, 0.0)
    [event] = list(iter(ua.next_event, None))
    assert isinstance(event, IncomingCall)
    assert event.offer is not None
    ua.reject(event.call, 486, 0.1)
    sent = ua.stream_messages_to_send(0.1)
    assert ua.datagrams_to_send(0.1) == []
    assert [(parse_message(d).status, a) for d, a in sent] == [  # type: ignore[union-attr]
        (100, PEER),
        (486, PEER),
    ]
    ua.handle_deadline(5.0)  # no Timer G over TCP: the 486 is not resent
    assert ua.stream_messages_to_send(5.0) == []
    final = parse_message(sent[-1][0])
    assert isinstance(final, SipResponse)
    caller.receive_stream_message(sent[0][0], dest, 0.2)
    caller.receive_stream_message(bytes(final), dest, 0.2)
    [(ack, _)] = caller.stream_messages_to_send(0.2)
    assert ack.startswith(b"ACK ")
    assert call.is_over


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=8))
def test_framer_fails_only_with_a_parse_error(chunks: list[bytes]) -> None:
    framer = StreamFramer()
    try:
        for chunk in chunks:
            for message in framer.feed(chunk):
                assert b"\r\n\r\n" in message
    except SipParseError:
        pass
