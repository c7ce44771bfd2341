"""RTP packet and telephone-event codecs against hand-built bytes (RFC 3550 5.1, RFC 4733 2.3)."""

from __future__ import annotations

import pytest

from dtmfgraph.rtp import RtpError, RtpPacket, TelephoneEvent

# V=2 P=0 X=0 CC=0 | M=0 PT=0 | seq 0x1234 | ts 0x00000001 | SSRC 0xDEADBEEF
MINIMAL = bytes.fromhex("80 00 1234 00000001 deadbeef")


def test_parse_minimal_header() -> None:
    p = RtpPacket.parse(MINIMAL + b"\xff\xfe")
    assert p == RtpPacket(0, 0x1234, 1, 0xDEADBEEF, b"\xff\xfe")
    assert (p.marker, p.csrcs, p.extension, p.padding) == (False, (), None, 0)


def test_marker_and_payload_type_share_the_second_byte() -> None:
    p = RtpPacket.parse(bytes.fromhex("80 e5 ffff ffffffff 00000000"))
    assert p.marker and p.payload_type == 101
    assert p.sequence == 0xFFFF and p.timestamp == 0xFFFFFFFF and p.ssrc == 0
    assert p.payload == b""


def test_csrcs() -> None:
    data = bytes.fromhex("82 08 0001 00000002 00000003 11111111 22222222") + b"\xd5" * 4
    p = RtpPacket.parse(data)
    assert p.csrcs == (0x11111111, 0x22222222)
    assert p.payload_type == 8 and p.payload == b"\xd5" * 4
    assert p.serialize() == data


def test_header_extension() -> None:
    data = bytes.fromhex("90 00 0001 00000002 00000003 bede 0002 0102030405060708") + b"ab"
    p = RtpPacket.parse(data)
    assert p.extension == (0xBEDE, bytes(range(1, 9)))
    assert p.payload == b"ab"
    assert p.serialize() == data


def test_empty_header_extension() -> None:
    data = bytes.fromhex("90 00 0001 00000002 00000003 1000 0000") + b"xy"
    p = RtpPacket.parse(data)
    assert p.extension == (0x1000, b"")
    assert p.payload == b"xy"
    assert p.serialize() == data


def test_padding_is_removed_and_restored() -> None:
    data = bytes.fromhex("a0 00 0001 00000002 00000003") + b"pay" + b"\x00\x00\x03"
    p = RtpPacket.parse(data)
    assert p.payload == b"pay" and p.padding == 3
    assert p.serialize() == data


def test_padding_may_take_the_whole_payload() -> None:
    p = RtpPacket.parse(bytes.fromhex("a0 00 0001 00000002 00000003 00000004"))
    assert p.payload == b"" and p.padding == 4


def test_everything_at_once() -> None:
    p = RtpPacket(
        payload_type=101,
        sequence=65535,
        timestamp=0xFFFFFFFF,
        ssrc=0x01020304,
        payload=b"\x05\x8a\x03\x20",
        marker=True,
        csrcs=(1, 2, 3),
        extension=(0xBEDE, b"\x10\xaa\x00\x00"),
        padding=4,
    )
    data = p.serialize()
    assert data[0] == 0x80 | 0x20 | 0x10 | 3
    assert data[1] == 0x80 | 101
    assert len(data) == 12 + 12 + 4 + 4 + 4 + 4
    assert data[-1] == 4
    assert RtpPacket.parse(data) == p


def test_parse_accepts_bytearray_and_memoryview() -> None:
    data = MINIMAL + b"x"
    assert RtpPacket.parse(bytearray(data)) == RtpPacket.parse(memoryview(data))


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "too short"),
        (MINIMAL[:11], "too short"),
        (bytes([0x00]) + MINIMAL[1:], "version 0"),
        (bytes([0x40]) + MINIMAL[1:], "version 1"),
        (bytes([0xC0]) + MINIMAL[1:], "version 3"),
        (bytes([0x81]) + MINIMAL[1:], "CSRC count 1 without the CSRC"),
        (bytes([0x8F]) + MINIMAL[1:] + bytes(56), "15 CSRCs, one missing"),
        (bytes([0x90]) + MINIMAL[1:] + b"\xbe\xde", "extension header cut"),
        (bytes([0x90]) + MINIMAL[1:] + bytes.fromhex("bede0001"), "extension data missing"),
        (bytes([0x90]) + MINIMAL[1:] + bytes.fromhex("bede0002") + bytes(7), "ext data short"),
        (bytes([0xA0]) + MINIMAL[1:] + b"ab\x00", "padding count 0"),
        (bytes([0xA0]) + MINIMAL[1:] + b"ab\x04", "padding longer than the payload"),
        (bytes([0xA0]) + MINIMAL[1:], "padding bit, no byte to hold the count"),
        (bytes([0xB0]) + MINIMAL[1:] + bytes.fromhex("bede0000") + b"\x05", "padding into ext"),
        (bytes([0xA1]) + MINIMAL[1:] + bytes(3) + b"\x05", "padding into the CSRC list"),
    ],
)
def test_malformed_packets_raise_rtp_error(data: bytes, why: str) -> None:
    with pytest.raises(RtpError):
        RtpPacket.parse(data)


def test_rtp_error_is_a_value_error() -> None:
    assert issubclass(RtpError, ValueError)


@pytest.mark.parametrize(
    "fields",
    [
        {"payload_type": 128},
        {"payload_type": -1},
        {"sequence": 65536},
        {"sequence": -1},
        {"timestamp": 1 << 32},
        {"ssrc": 1 << 32},
        {"ssrc": -1},
        {"csrcs": tuple(range(16))},
        {"csrcs": (1 << 32,)},
        {"extension": (0x10000, b"")},
        {"extension": (1, b"abc")},
        {"padding": 256},
        {"padding": -1},
    ],
)
def test_serialize_rejects_fields_out_of_range(fields: dict[str, object]) -> None:
    base: dict[str, object] = {
        "payload_type": 0,
        "sequence": 0,
        "timestamp": 0,
        "ssrc": 0,
        "payload": b"",
    }
    packet = RtpPacket(**{**base, **fields})  # type: ignore[arg-type]
    with pytest.raises(RtpError):
        packet.serialize()


# -- RFC 4733 telephone-event payload --------------------------------------------------------


def test_event_parse_hand_built() -> None:
    # event 1, E=1, R=0, volume 10, duration 800
    ev = TelephoneEvent.parse(bytes.fromhex("01 8a 0320"))
    assert ev == TelephoneEvent(event=1, end=True, volume=10, duration=800)
    assert ev.key == "1"
    assert ev.serialize() == bytes.fromhex("01 8a 0320")


def test_event_fields_at_their_limits() -> None:
    ev = TelephoneEvent.parse(bytes.fromhex("ff 3f ffff"))
    assert ev == TelephoneEvent(255, False, 63, 0xFFFF)
    assert ev.key is None
    assert ev.serialize() == bytes.fromhex("ff 3f ffff")


def test_event_reserved_bit_is_ignored_and_sent_as_zero() -> None:
    ev = TelephoneEvent.parse(bytes.fromhex("0b ca 00a0"))  # E=1, R=1, volume 10
    assert ev == TelephoneEvent(11, True, 10, 160)
    assert ev.key == "#"
    assert ev.serialize() == bytes.fromhex("0b 8a 00a0")


@pytest.mark.parametrize(
    ("code", "key"),
    [
        (0, "0"),
        (9, "9"),
        (10, "*"),
        (11, "#"),
        (12, "A"),
        (15, "D"),
        (16, "F"),
        (17, None),
        (32, None),
    ],
)
def test_event_keys(code: int, key: str | None) -> None:
    assert TelephoneEvent(code, False, 10, 160).key == key


@pytest.mark.parametrize("size", [0, 1, 3, 5, 8, 12])
def test_event_payload_must_be_4_bytes(size: int) -> None:
    with pytest.raises(RtpError):
        TelephoneEvent.parse(bytes(size))


@pytest.mark.parametrize(
    "ev",
    [
        TelephoneEvent(256, False, 0, 0),
        TelephoneEvent(-1, False, 0, 0),
        TelephoneEvent(1, False, 64, 0),
        TelephoneEvent(1, False, -1, 0),
        TelephoneEvent(1, False, 0, 0x10000),
        TelephoneEvent(1, False, 0, -1),
    ],
)
def test_event_serialize_rejects_fields_out_of_range(ev: TelephoneEvent) -> None:
    with pytest.raises(RtpError):
        ev.serialize()


def test_sipp_capture_packet_bytes() -> None:
    """The first packet of sipp's dtmf_2833_1.pcap, byte for byte."""
    data = bytes.fromhex("80e51f30000033e00e05384e010a0000")
    p = RtpPacket.parse(data)
    assert (p.marker, p.payload_type, p.sequence, p.timestamp, p.ssrc) == (
        True,
        101,
        0x1F30,
        0x33E0,
        0x0E05384E,
    )
    assert TelephoneEvent.parse(p.payload) == TelephoneEvent(1, False, 10, 0)
    assert p.serialize() == data
