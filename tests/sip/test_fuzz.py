"""Fuzz: whatever arrives, the parsers raise SipParseError and nothing else."""

from __future__ import annotations

import contextlib
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dtmfgraph.sip import SessionDescription, SipParseError, UserAgent, parse_message
from dtmfgraph.sip.uri import NameAddr, parse_uri

from .test_message import INVITE

FAST = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_PIECES = [
    b"INVITE ",
    b"SIP/2.0",
    b"sip:",
    b"@",
    b"[::1]",
    b":",
    b";",
    b"=",
    b",",
    b"<",
    b">",
    b'"',
    b"\\",
    b"\r\n",
    b"\n",
    b" ",
    b"\t",
    b"Via: ",
    b"v: ",
    b"SIP/2.0/UDP ",
    b"branch=z9hG4bK",
    b"CSeq: ",
    b"1 ",
    b"Call-ID: ",
    b"From: ",
    b"To: ",
    b"Content-Length: ",
    b"l: ",
    b"tag=",
    b"\x00",
    b"\xff",
    b"999999999999",
    b"0",
    b"\r\n\r\n",
    b"v=0\r\n",
    b"m=audio ",
    b"o=",
]


def _parse_only_sip_errors(data: bytes) -> None:
    try:
        message = parse_message(data)
    except SipParseError:
        return
    # What parses must serialize and parse again to the same thing.
    assert parse_message(bytes(message)) == message


@FAST
@given(st.binary(max_size=600))
def test_random_bytes(data: bytes) -> None:
    _parse_only_sip_errors(data)


@FAST
@given(st.lists(st.sampled_from(_PIECES), max_size=60))
def test_grammar_shaped_noise(pieces: list[bytes]) -> None:
    _parse_only_sip_errors(b"".join(pieces))


@FAST
@given(st.integers(min_value=0, max_value=len(INVITE) - 1), st.binary(min_size=1, max_size=8))
def test_mutated_valid_invite(position: int, patch: bytes) -> None:
    _parse_only_sip_errors(INVITE[:position] + patch + INVITE[position + 1 :])


@FAST
@given(st.integers(min_value=0, max_value=len(INVITE)))
def test_truncated_valid_invite(cut: int) -> None:
    _parse_only_sip_errors(INVITE[:cut])


@FAST
@given(st.text(max_size=80))
def test_uri_and_name_addr_text(text: str) -> None:
    for parse in (parse_uri, NameAddr.parse):
        with contextlib.suppress(SipParseError):
            parse(text)


@FAST
@given(
    st.lists(
        st.sampled_from(
            [
                "v=0",
                "o=- 1 1 IN IP4 1.2.3.4",
                "m=audio 5 RTP/AVP 0",
                "c=IN IP4 x",
                "a=rtpmap:0 PCMU/8000",
                "a=sendonly",
                "t=0 0",
                "m=audio x",
                "c=IN",
                "o=a b c d e f",
                "a=fmtp:101",
                "\xff",
                "b=AS:64",
                "m=video 0 RTP/AVP 31",
            ]
        ),
        max_size=20,
    )
)
def test_sdp_lines(lines: list[str]) -> None:
    with contextlib.suppress(SipParseError):
        SessionDescription.parse("\r\n".join(lines))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_user_agent_survives_garbage(data: bytes) -> None:
    ua = UserAgent("127.0.0.1", 5060, "fuzz", rng=random.Random(0))
    ua.receive_datagram(data, ("127.0.0.1", 9999), 0.0)
    ua.receive_datagram(INVITE[:200] + data, ("127.0.0.1", 9999), 0.0)
    for out, _ in ua.datagrams_to_send(0.0):
        assert out.startswith(b"SIP/2.0 ")
