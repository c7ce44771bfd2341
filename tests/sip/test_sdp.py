"""SDP parse/serialize and the offer/answer choices (RFC 3264, RFC 4566)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from dtmfgraph.sip import (
    PCMA,
    PCMU,
    CryptoAttribute,
    Direction,
    SdpNegotiationError,
    SdpParseError,
    SessionDescription,
    audio_media,
    build_answer,
    build_offer,
)
from dtmfgraph.sip.sdp import Codec, next_local_version, with_direction


def sdp(text: str) -> SessionDescription:
    return SessionDescription.parse(text.strip().replace("\n", "\r\n") + "\r\n")


def test_offer_on_the_wire() -> None:
    offer = build_offer("192.0.2.10", 40000, session_id="4711", version=1)
    assert bytes(offer) == (
        b"v=0\r\n"
        b"o=- 4711 1 IN IP4 192.0.2.10\r\n"
        b"s=-\r\n"
        b"c=IN IP4 192.0.2.10\r\n"
        b"t=0 0\r\n"
        b"m=audio 40000 RTP/AVP 0 8 101\r\n"
        b"a=rtpmap:0 PCMU/8000\r\n"
        b"a=rtpmap:8 PCMA/8000\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\n"
        b"a=fmtp:101 0-16\r\n"
        b"a=ptime:20\r\n"
        b"a=sendrecv\r\n"
    )
    assert SessionDescription.parse(bytes(offer)) == offer


def test_ipv6_offer() -> None:
    offer = build_offer("::1", 40000, session_id="1")
    text = bytes(offer).decode()
    assert "o=- 1 1 IN IP6 ::1\r\n" in text and "c=IN IP6 ::1\r\n" in text
    media = audio_media(SessionDescription.parse(text))
    assert media is not None and media.address == "::1"


def test_answer_picks_first_common_codec_in_offerer_order() -> None:
    offer = sdp(
        """
v=0
o=bob 1 1 IN IP4 198.51.100.1
s=call
c=IN IP4 198.51.100.1
t=0 0
m=audio 30000 RTP/AVP 18 8 0 96
a=rtpmap:18 G729/8000
a=rtpmap:96 telephone-event/8000
a=fmtp:96 0-15
"""
    )
    answer = build_answer(offer, "192.0.2.10", 40000, session_id="9")
    m = audio_media(answer)
    assert m is not None
    assert m.codec == PCMA  # G729 unsupported; PCMA before PCMU in the offer
    assert m.telephone_event_pt == 96  # the offerer's PT is kept
    assert answer.media[0].formats == ("8", "96")
    assert "a=rtpmap:96 telephone-event/8000\r\n" in answer.serialize()


def test_answer_without_telephone_event_when_not_offered() -> None:
    offer = build_offer("198.51.100.1", 30000, session_id="1", codecs=[PCMU], telephone_event=None)
    answer = build_answer(offer, "192.0.2.10", 40000, session_id="9")
    m = audio_media(answer)
    assert m is not None and m.codec == PCMU and m.telephone_event_pt is None
    assert "telephone-event" not in answer.serialize()


def test_answer_honours_our_codec_list_and_dynamic_names() -> None:
    offer = build_offer("198.51.100.1", 30000, session_id="1", codecs=[PCMU, PCMA])
    answer = build_answer(offer, "192.0.2.10", 40000, session_id="9", codecs=[PCMA])
    m = audio_media(answer)
    assert m is not None and m.codec == PCMA


def test_no_common_codec() -> None:
    offer = build_offer("198.51.100.1", 30000, session_id="1", codecs=[Codec(18, "G729")])
    with pytest.raises(SdpNegotiationError):
        build_answer(offer, "192.0.2.10", 40000, session_id="9")


def test_other_streams_are_refused_with_port_zero() -> None:
    offer = sdp(
        """
v=0
o=- 1 1 IN IP4 198.51.100.1
s=-
c=IN IP4 198.51.100.1
t=0 0
m=video 5000 RTP/AVP 31
m=audio 30000 RTP/AVP 0
"""
    )
    answer = build_answer(offer, "192.0.2.10", 40000, session_id="9")
    assert [(m.media, m.port) for m in answer.media] == [("video", 0), ("audio", 40000)]


@pytest.mark.parametrize(
    ("offered", "address", "answered"),
    [
        ("sendrecv", "198.51.100.1", Direction.SENDRECV),
        ("sendonly", "198.51.100.1", Direction.RECVONLY),
        ("recvonly", "198.51.100.1", Direction.SENDONLY),
        ("inactive", "198.51.100.1", Direction.INACTIVE),
        ("sendrecv", "0.0.0.0", Direction.RECVONLY),
        ("sendonly", "0.0.0.0", Direction.RECVONLY),
    ],
)
def test_answer_direction(offered: str, address: str, answered: Direction) -> None:
    offer = with_direction(build_offer(address, 30000, session_id="1"), Direction(offered))
    answer = build_answer(offer, "192.0.2.10", 40000, session_id="9")
    m = audio_media(answer)
    assert m is not None and m.direction is answered
    offered_media = audio_media(offer)
    assert offered_media is not None
    assert offered_media.on_hold is (offered in ("sendonly", "inactive") or address == "0.0.0.0")


def test_session_version_increments_only_on_change() -> None:
    first = build_offer("192.0.2.10", 40000, session_id="77", version=3)
    same = build_offer("192.0.2.10", 40000, session_id="other", version=1)
    assert next_local_version(first, same).origin.version == 3
    assert next_local_version(first, same).origin.session_id == "77"
    held = with_direction(same, Direction.SENDONLY)
    assert next_local_version(first, held).origin.version == 4


def test_media_level_connection_and_session_direction() -> None:
    desc = sdp(
        """
v=0
o=- 1 1 IN IP4 198.51.100.1
s=-
t=0 0
a=recvonly
m=audio 30000/2 RTP/AVP 0 101
c=IN IP4 198.51.100.7/127
a=rtpmap:101 telephone-event/8000
"""
    )
    m = audio_media(desc)
    assert m is not None
    assert (m.address, m.port, m.direction, m.telephone_event_pt) == (
        "198.51.100.7",
        30000,
        Direction.RECVONLY,
        101,
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "o=- 1 1 IN IP4 1.2.3.4",
        "v=0\r\ns=-",  # no o=
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 5 RTP/AVP 0",  # no c= for an active stream
        "v=0\r\no=- 1 x IN IP4 1.2.3.4",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4 1.2.3.4\r\nm=audio 70000 RTP/AVP 0",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nbogus",
    ],
)
def test_bad_sdp(text: str) -> None:
    with pytest.raises(SdpParseError):
        SessionDescription.parse(text)


KEY = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz"  # 30 bytes of base64 (RFC 4568's example)


def test_crypto_lines_are_read_and_the_ones_we_cannot_use_marked() -> None:
    offer = sdp(f"""
v=0
o=- 1 1 IN IP4 192.0.2.1
s=-
c=IN IP4 192.0.2.1
t=0 0
m=audio 5004 RTP/SAVP 0 101
a=rtpmap:101 telephone-event/8000
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20|1:4
a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{KEY}|2^20
a=crypto:3 AES_CM_128_HMAC_SHA1_80 inline:{KEY} UNENCRYPTED_SRTP
a=crypto:x broken
""")
    media = audio_media(offer)
    assert media is not None and media.secure and media.proto == "RTP/SAVP"
    assert [(c.tag, c.suite, c.inline, c.extra) for c in media.crypto] == [
        (1, "AES_CM_128_HMAC_SHA1_80", KEY, True),  # an MKI
        (2, "AES_CM_128_HMAC_SHA1_32", KEY, False),  # a lifetime alone is fine
        (3, "AES_CM_128_HMAC_SHA1_80", KEY, True),  # a session parameter
    ]
    ours = CryptoAttribute(2, "AES_CM_128_HMAC_SHA1_32", KEY)
    seen: list[list[int]] = []

    def choose(lines: Sequence[CryptoAttribute]) -> CryptoAttribute | None:
        seen.append([c.tag for c in lines])
        return ours

    answer = build_answer(offer, "192.0.2.2", 6000, session_id="9", crypto=choose)
    assert seen == [[2]]  # only the usable lines are offered to the chooser
    answered = audio_media(answer)
    assert answered is not None and answered.proto == "RTP/SAVP" and answered.crypto == (ours,)
    assert f"a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{KEY}" in bytes(answer).decode()
    with pytest.raises(SdpNegotiationError, match="no SRTP crypto suite"):
        build_answer(offer, "192.0.2.2", 6000, session_id="9")  # we take no SRTP
    with pytest.raises(SdpNegotiationError, match="no SRTP crypto suite"):
        build_answer(offer, "192.0.2.2", 6000, session_id="9", crypto=lambda lines: None)


def test_srtp_offer_and_best_effort_srtp_in_rtp_avp() -> None:
    line = CryptoAttribute(1, "AES_CM_128_HMAC_SHA1_80", KEY)
    offer = build_offer("192.0.2.1", 5004, session_id="1", crypto=[line])
    text = bytes(offer).decode()
    assert "m=audio 5004 RTP/SAVP 0 8 101\r\n" in text
    assert f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}\r\n" in text
    # crypto lines in RTP/AVP: SRTP if we take a line, else plain RTP (the stream is kept)
    best_effort = sdp(text.replace("RTP/SAVP", "RTP/AVP"))
    plain = audio_media(build_answer(best_effort, "192.0.2.2", 6000, session_id="2"))
    assert plain is not None and not plain.secure and plain.proto == "RTP/AVP"
    srtp = audio_media(
        build_answer(best_effort, "192.0.2.2", 6000, session_id="2", crypto=lambda lines: line)
    )
    assert srtp is not None and srtp.secure and srtp.crypto == (line,)


@pytest.mark.parametrize(
    ("line", "where"),
    [
        (None, ("192.0.2.5", 49171)),  # no a=rtcp: the RTP port + 1
        ("a=rtcp:53020", ("192.0.2.5", 53020)),
        ("a=rtcp:53020 IN IP4 198.51.100.9", ("198.51.100.9", 53020)),
        ("a=rtcp:53020 IN IP6 2001:db8::7", ("2001:db8::7", 53020)),
        ("a=rtcp:0", ("192.0.2.5", 49171)),  # unreadable: ignored
        ("a=rtcp:port", ("192.0.2.5", 49171)),
    ],
)
def test_rtcp_attribute(line: str | None, where: tuple[str, int]) -> None:
    """Where the far end takes RTCP (RFC 3605's ``a=rtcp``, else RTP port + 1)."""
    text = (
        "v=0\r\no=- 1 1 IN IP4 192.0.2.5\r\ns=-\r\nc=IN IP4 192.0.2.5\r\nt=0 0\r\n"
        "m=audio 49170 RTP/AVP 0\r\n" + (line + "\r\n" if line else "")
    )
    media = audio_media(SessionDescription.parse(text))
    assert media is not None and media.rtcp_address == where


def test_rtcp_mux_offer_and_answer() -> None:
    """RFC 5761: we offer ``a=rtcp-mux`` when asked; an answer echoes it only when it was
    offered and we take it."""
    offer = build_offer("192.0.2.1", 4000, session_id="1", rtcp_mux=True)
    assert "a=rtcp-mux\r\n" in offer.serialize()
    media = audio_media(offer)
    assert media is not None and media.rtcp_mux
    plain = build_offer("192.0.2.1", 4000, session_id="1")
    assert "rtcp-mux" not in plain.serialize()
    taken = build_answer(offer, "192.0.2.2", 5000, session_id="2", rtcp_mux=True)
    assert "a=rtcp-mux\r\n" in taken.serialize()
    refused = build_answer(offer, "192.0.2.2", 5000, session_id="2")
    assert "rtcp-mux" not in refused.serialize()
    not_offered = build_answer(plain, "192.0.2.2", 5000, session_id="2", rtcp_mux=True)
    media = audio_media(not_offered)
    assert media is not None and not media.rtcp_mux
