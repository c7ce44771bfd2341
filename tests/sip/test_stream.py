"""SIP over TCP and TLS, sans-I/O: framing a byte stream, and what the agent does differently."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dtmfgraph.sip import (
    CallFailed,
    IncomingCall,
    RegistrationFailed,
    RegistrationState,
    SipError,
    SipParseError,
    SipRequest,
    SipResponse,
    SipUri,
    SourceAllowlist,
    UserAgent,
    build_offer,
    parse_message,
)
from dtmfgraph.sip.stream import MAX_HEADER_BYTES, StreamFramer

from .test_registration import ok

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


def test_tls_peers_get_a_tls_via_and_contact_and_our_tls_port() -> None:
    """A ``;transport=tls`` or ``sips:`` URI makes its destination a TLS peer (5061 unless
    given); requests to it say ``Via: SIP/2.0/TLS`` with our TLS port, and our Contact asks the
    peer to come back over TLS there. A request that came over TLS is answered the same way."""
    ua = UserAgent("127.0.0.1", 5060, "bot", rng=random.Random(1), tls_port=5071)
    offer = build_offer("127.0.0.1", 40000, session_id="1")
    ua.invite("sip:alice@127.0.0.1;transport=tls", offer, 0.0)
    ua.invite("sips:alice@pbx.test", offer, 0.0, destination=("127.0.0.1", 6061))
    sent = ua.stream_messages_to_send(0.0)
    assert ua.datagrams_to_send(0.0) == []
    assert [dest for _, dest in sent] == [("127.0.0.1", 5061), ("127.0.0.1", 6061)]
    for data, dest in sent:
        invite = parse_message(data)
        assert isinstance(invite, SipRequest) and ua.is_secure(dest)
        assert (invite.top_via.transport, invite.top_via.port) == ("TLS", 5071)
        contact = invite.contacts[0].sip_uri
        assert (contact.port, contact.params) == (5071, {"transport": "tls"})
    assert ua.tls_names == {("127.0.0.1", 6061): "pbx.test"}  # its certificate must say so
    ua.receive_stream_message(_message(), PEER, 1.0, secure=True)
    [(answer, dest)] = ua.stream_messages_to_send(1.0)
    assert dest == PEER and ua.is_secure(PEER)
    assert parse_message(answer).status == 200  # type: ignore[union-attr]
    ua.forget_stream_peer(PEER)
    assert not ua.is_secure(PEER)


def test_a_uri_asking_for_tls_without_tls_here_is_refused() -> None:
    ua = UserAgent("127.0.0.1", 5060, "bot", rng=random.Random(1))
    with pytest.raises(SipError, match="asks for TLS, which is not configured here"):
        ua.invite("sips:alice@127.0.0.1", None, 0.0)
    assert SipUri.parse("sip:a@h;transport=TLS").address == ("h", 5061)
    assert SipUri.parse("sip:a@h;transport=tcp").address == ("h", 5060)


def test_a_connection_that_cannot_be_opened_fails_its_requests_at_once() -> None:
    """RFC 3261 8.1.3.1: a transport error is a 503, now, with the reason; not Timer B later.
    The INVITE fails ``unanswered`` (the phone may try another server), the REGISTER 503s."""
    ua = UserAgent("127.0.0.1", 5060, "bot", rng=random.Random(1), tls_port=5071)
    server = ("127.0.0.1", 5061)
    call = ua.invite("sip:alice@127.0.0.1;transport=tls", None, 0.0)
    registration = ua.register(
        "sip:bot@127.0.0.1", 0.0, registrar="sip:127.0.0.1;transport=tls", retry_s=30
    )
    elsewhere = ua.invite("sip:carol@127.0.0.1:5062;transport=tcp", None, 0.0)
    ua.stream_messages_to_send(0.0)
    ua.connection_failed(server, 0.5, "TLS with 127.0.0.1:5061 failed: certificate verify failed")
    events = list(iter(ua.next_event, None))
    [failed] = [e for e in events if isinstance(e, CallFailed)]
    assert failed.call is call and (failed.status, failed.unanswered) == (503, True)
    assert not failed.timed_out and "certificate verify failed" in failed.detail
    [refused] = [e for e in events if isinstance(e, RegistrationFailed)]
    assert refused.status == 503 and refused.retry_at == pytest.approx(30.5)
    assert registration.state is RegistrationState.FAILED
    assert not ua.is_secure(server) and not elsewhere.is_over  # other peers are untouched


def test_a_peer_is_in_use_while_a_transaction_call_or_registration_needs_it() -> None:
    ua = UserAgent("127.0.0.1", 5060, "bot", rng=random.Random(1))
    server, other = ("127.0.0.1", 5070), ("127.0.0.1", 5090)
    assert not ua.peer_in_use(server)
    call = ua.invite("sip:alice@127.0.0.1:5070;transport=tcp", None, 0.0)
    assert ua.peer_in_use(server) and not ua.peer_in_use(other)
    ua.connection_failed(server, 0.1, "refused")  # the call fails: nothing needs it now
    assert call.is_over and not ua.peer_in_use(server)
    registration = ua.register(
        "sip:bot@127.0.0.1:5090", 0.2, registrar="sip:127.0.0.1:5090;transport=tcp"
    )
    ua.stream_messages_to_send(0.2)
    assert ua.peer_in_use(other)
    ua.connection_failed(other, 0.3, "refused")  # failed, but it will try again: still needed
    assert registration.state is RegistrationState.FAILED and ua.peer_in_use(other)


def test_framer_counts_keepalive_pings_and_pongs_however_they_arrive() -> None:
    """RFC 5626 3.5.1: a double CRLF is a ping, a single CRLF a pong; neither is a message."""
    one = _message()
    framer = StreamFramer()
    assert framer.feed(b"\r\n") == [] and (framer.crlfs, framer.pings) == (1, 0)  # a pong...
    assert framer.feed(b"\r\n") == [] and (framer.crlfs, framer.pings) == (2, 1)  # ...or a ping
    assert framer.feed(b"\r\n\r\n\r\n\r\n") == [] and framer.pings == 3
    assert framer.feed(b"\r\n" + one + b"\r\n") == [one]
    assert framer.pings == 3 and framer.crlfs == 8  # a lone CRLF either side of a message
    assert framer.feed(b"\r") == [] and framer.feed(b"\n\r\n") == [] and framer.pings == 4


def _tcp_registered(ua: UserAgent, server: tuple[str, int], now: float) -> None:
    """Answer the REGISTER ``ua`` wrote to ``server``'s connection with 200 (3600 s)."""
    [(data, dest)] = ua.stream_messages_to_send(now)
    request = parse_message(data)
    assert dest == server and isinstance(request, SipRequest)
    assert str(request.headers.get("Via")).startswith("SIP/2.0/TCP")
    ua.receive_stream_message(bytes(ok(request, contact_expires=3600)), server, now)


def test_a_registration_whose_connection_died_registers_again_at_once_over_tcp() -> None:
    """A keep-alive went unanswered (flow_failed): the binding is renewed now, not in an hour,
    on a new TCP connection; and a refresh after a connection closed goes over TCP too (it
    used to fall back to UDP once the connection was forgotten)."""
    ua = UserAgent("127.0.0.1", 5060, "bot", rng=random.Random(1))
    server = ("127.0.0.1", 5090)
    registration = ua.register(
        "sip:bot@127.0.0.1:5090", 0.0, registrar="sip:127.0.0.1:5090;transport=tcp"
    )
    _tcp_registered(ua, server, 0.1)
    assert registration.state is RegistrationState.REGISTERED
    assert registration.deadline is not None and registration.deadline > 3000
    while (due := ua.next_deadline()) is not None and due < 100.0:  # transactions end
        ua.handle_deadline(due)
    ua.flow_failed(server, 100.0)
    assert ua.next_deadline() == 100.0
    ua.handle_deadline(100.0)
    assert ua.datagrams_to_send(100.0) == []
    _tcp_registered(ua, server, 100.2)  # the new REGISTER, on a (new) connection
    assert registration.state is RegistrationState.REGISTERED
    ua.forget_stream_peer(server)  # the registrar closed the connection
    refresh = registration.deadline
    assert refresh is not None
    ua.handle_deadline(refresh)
    assert ua.datagrams_to_send(refresh) == []
    _tcp_registered(ua, server, refresh)


def test_registrars_over_udp_are_the_ones_keepalives_go_to() -> None:
    ua = UserAgent("127.0.0.1", 5060, "bot", rng=random.Random(1))
    assert ua.udp_registrars() == []
    over_udp = ua.register("sip:bot@127.0.0.1:5080", 0.0)
    ua.register("sip:bot@127.0.0.1:5090", 0.0, registrar="sip:127.0.0.1:5090;transport=tcp")
    assert ua.udp_registrars() == [("127.0.0.1", 5080)]  # TCP has its own keep-alives
    ua.unregister(over_udp, 0.1)
    assert ua.udp_registrars() == []


def test_out_of_dialog_requests_from_outside_the_allowlist_get_403() -> None:
    """Sans-I/O: the check is on the source address of requests that start something; the
    allowlist takes IPv4, IPv6 and IPv4-mapped IPv6 sources, and refuses names."""
    allow = SourceAllowlist(["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"])
    assert allow("10.1.2.3") and allow("192.0.2.7") and not allow("192.0.2.8")
    assert allow("2001:db8::1") and allow("::ffff:10.0.0.1") and allow("fe80::1%eth0") is False
    assert not allow("pbx.example.com")
    with pytest.raises(ValueError, match=r"'10\.0\.0\.300' is not a network"):
        SourceAllowlist(["10.0.0.300"])
    with pytest.raises(ValueError, match="no networks"):
        SourceAllowlist([])
    ua = UserAgent("127.0.0.1", 5060, "bot", rng=random.Random(1))
    ua.allow_source = allow
    options = _message().replace(b"Via: SIP/2.0/TCP", b"Via: SIP/2.0/UDP")
    ua.receive_datagram(options, ("203.0.113.9", 5060), 0.0)
    other = options.replace(b"branch=z9hG4bKx", b"branch=z9hG4bKy")  # another transaction
    ua.receive_datagram(other, ("10.9.9.9", 5060), 0.0)
    answers = [parse_message(d) for d, _ in ua.datagrams_to_send(0.0)]
    assert [a.status for a in answers if isinstance(a, SipResponse)] == [403, 200]
    assert ua.counters.forbidden == 1
