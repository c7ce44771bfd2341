"""RTCP, sans-I/O: the packet codec, RFC 3550 A.1/A.3 loss figures, reports, round-trip time."""

from __future__ import annotations

import random
import struct

import pytest

from dtmfgraph.rtp.rtcp import (
    MIN_INTERVAL,
    Goodbye,
    OtherPacket,
    ReceptionStats,
    Report,
    ReportBlock,
    RtcpError,
    RtcpSession,
    SenderInfo,
    SourceDescription,
    build_compound,
    compact,
    ntp_timestamp,
    parse_compound,
)

WALL = 1_780_000_000.0


def test_compound_round_trip() -> None:
    block = ReportBlock(0x1234, 25, -3, 0x1_0005, 40, 0xABCD0000, 65536)
    packets = [
        Report(0xDEADBEEF, SenderInfo(ntp_timestamp(WALL), 99, 50, 8000), (block,)),
        SourceDescription(((0xDEADBEEF, "abc@host"),)),
        Goodbye((0xDEADBEEF,), "call ended"),
    ]
    data = build_compound(packets)
    assert len(data) % 4 == 0
    assert parse_compound(data) == packets
    rr = [Report(7), SourceDescription(((7, "x" * 3),))]  # CNAME lengths that pad 1-4 bytes
    assert parse_compound(build_compound(rr)) == rr
    for n in range(0, 9):
        sdes = [Report(7), SourceDescription(((7, "c" * n), (8, "d" * (n + 1))))]
        assert parse_compound(build_compound(sdes)) == sdes


def test_a_known_packet_decodes() -> None:
    """An RR with one block and SDES, written out by hand from RFC 3550 6.4.2 and 6.5."""
    rr = bytes.fromhex("81c9000700000001000000020a0000030001001000000020")
    rr += bytes.fromhex("0000000000000000")
    sdes = bytes.fromhex("81ca00030000000101046d616c650000")
    packets = parse_compound(rr + sdes)
    assert packets[0] == Report(1, None, (ReportBlock(2, 10, 3, 0x10010, 0x20, 0, 0),))
    assert packets[1] == SourceDescription(((1, "male"),))


def test_negative_cumulative_loss_and_other_types() -> None:
    block = ReportBlock(1, 0, -5, 10, 0)
    app = struct.pack("!BBH", 0x80, 204, 2) + b"\0" * 8
    packets = parse_compound(build_compound([Report(9, None, (block,))]) + app)
    assert packets[0] == Report(9, None, (block,))
    assert packets[1] == OtherPacket(204)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "at least 8"),
        (b"\x80\xc9\x00\x01\x00\x00\x00\x01\x00", "multiple of 4"),
        (build_compound([Report(1)])[:4] + b"\0" * 4 + b"\x80", "multiple of 4"),
        (b"\x81\xca\x00\x01\x00\x00\x00\x01", "starts with an SR or RR"),
        (b"\x40\xc9\x00\x01\x00\x00\x00\x01", "version 1"),
        (b"\x80\xc9\x00\x05\x00\x00\x00\x01", "runs past"),
        (b"\x81\xc9\x00\x01\x00\x00\x00\x01", "too short for 1 report blocks"),
        (b"\xa0\xc9\x00\x01\x00\x00\x00\x01", "starts with an SR or RR, unpadded"),
        (build_compound([Report(1)]) + b"\x81\xcb\x00\x00", "too short for 1 sources"),
        (build_compound([Report(1)]) + b"\x81\xca\x00\x01\x00\x00\x00\x01", "null item"),
        (build_compound([Report(1)]) + b"\xa0\xcc\x00\x01\x00\x00\x00\x09", "padding length"),
    ],
)
def test_malformed_is_refused_with_a_reason(data: bytes, why: str) -> None:
    with pytest.raises(RtcpError, match=why):
        parse_compound(data)


def test_ntp_and_compact() -> None:
    ntp = ntp_timestamp(WALL + 0.5)
    assert ntp >> 32 == int(WALL) + 2_208_988_800
    assert ntp & 0xFFFFFFFF == 1 << 31
    assert compact(ntp) == ((int(WALL) + 2_208_988_800) & 0xFFFF) << 16 | 0x8000


def test_reception_counts_loss_wrap_and_fraction() -> None:
    r = ReceptionStats.first(5, 65530)
    for seq in [65531, 65532, 65534, 65535, 0, 1, 3, 4]:  # 65533 and 2 lost, across the wrap
        r.update(seq)
    assert r.highest == 65536 + 4
    assert r.expected == 11 and r.received == 9 and r.lost == 2
    assert r.interval_fraction() == (2 << 8) // 11
    for seq in range(5, 15):  # a clean interval
        r.update(seq)
    assert r.interval_fraction() == 0
    r.update(14)  # a duplicate: counted as received, so loss can go down (RFC 3550 6.4.1)
    assert r.lost == 1


def test_reception_restarts_after_a_confirmed_jump() -> None:
    r = ReceptionStats.first(5, 100)
    r.update(101)
    r.update(20000)  # a jump: not counted until confirmed
    assert r.received == 2 and r.highest == 101
    r.update(20001)  # confirmed: the sender restarted its numbering
    assert r.base_seq == 20001 and r.received == 1 and r.lost == 0


def test_report_is_rr_until_we_send_then_sr_and_rtt() -> None:
    ours = RtcpSession(0xAAAA, "us@test", rng=random.Random(1))
    theirs = RtcpSession(0xBBBB, "them@test", rng=random.Random(2))
    for seq in range(100, 150):
        if seq != 120:
            ours.note_rtp(0xBBBB, seq)
    ours.jitter = 12.7
    rr = parse_compound(ours.report(10.0, WALL))
    assert rr[0] == Report(0xAAAA, None, (ReportBlock(0xBBBB, 5, 1, 149, 12, 0, 0),))
    assert rr[1] == SourceDescription(((0xAAAA, "us@test"),))
    # The far end sends an SR; our next report echoes it (LSR) with the time held (DLSR).
    theirs.note_sent(500, 80_000, 123456)
    sr = theirs.report(20.0, WALL + 10.0)
    assert parse_compound(sr)[0].sender == SenderInfo(  # type: ignore[union-attr]
        ntp_timestamp(WALL + 10.0), 123456, 500, 80_000
    )
    ours.receive(sr, 30.0, WALL + 10.05)  # 50 ms one way
    assert ours.stats.peer_cname == "them@test"
    ours.note_sent(10, 1600, 5)
    reply = ours.report(30.25, WALL + 10.3)  # held 250 ms
    block = parse_compound(reply)[0].blocks[0]  # type: ignore[union-attr]
    assert block.lsr == compact(ntp_timestamp(WALL + 10.0))
    assert block.dlsr == pytest.approx(0.25 * 65536, abs=1)
    theirs.receive(reply, 40.0, WALL + 10.35)  # 50 ms back
    assert theirs.stats.rtt == pytest.approx(0.1, abs=0.001)
    assert theirs.stats.rtt_ms == pytest.approx(100.0, abs=1.0)
    assert theirs.stats.received == 1 and ours.stats.sent == 2
    # What they lost of ours, as they report it.
    theirs.note_rtp(0xAAAA, 1)
    theirs.note_rtp(0xAAAA, 4)
    ours.receive(theirs.report(41.0, WALL + 11.0, goodbye="done"), 41.0, WALL + 11.0)
    assert ours.stats.peer_lost == 2
    assert ours.stats.peer_fraction_lost == 0.5  # 2 of the 4 expected
    assert ours.stats.bye == "done"


def test_garbage_is_counted_not_raised() -> None:
    s = RtcpSession(1, "x")
    assert s.receive(b"\x80\x00garbage", 0.0, WALL) == []
    assert s.stats.malformed == 1 and s.stats.received == 0


def test_schedule_is_randomised_around_the_interval() -> None:
    s = RtcpSession(1, "x", rng=random.Random(3))
    first = s.next_report_at(100.0) - 100.0
    assert 0.5 * MIN_INTERVAL / 2 / 1.2183 <= first <= 1.5 * MIN_INTERVAL / 2 / 1.2183
    gaps = []
    for _ in range(200):
        now = s.next_report_at(0.0)
        s.report(now, WALL)
        gaps.append(s.next_report_at(now) - now)
    assert min(gaps) >= 0.5 * MIN_INTERVAL / 1.2183 - 1e-9
    assert max(gaps) <= 1.5 * MIN_INTERVAL / 1.2183 + 1e-9
    assert sum(gaps) / len(gaps) == pytest.approx(MIN_INTERVAL / 1.2183, rel=0.1)


@pytest.mark.parametrize(
    ("late_ms", "rtt"),
    [(-0.4, 0.0), (-30.0, 0.0), (-200.0, None), (3.0, 0.003)],
)
def test_rtt_when_the_far_ends_dlsr_is_coarse(late_ms: float, rtt: float | None) -> None:
    """A far end with millisecond timers may report a DLSR a little longer than the time it
    really held our SR: on loopback the round trip then comes out just below 0 and is 0; far
    below 0 is bogus and ignored."""
    ours = RtcpSession(0xAAAA, "us")
    ours.note_sent(1, 160, 0)
    sr = ours.report(0.0, WALL)
    held = 0.5
    block = ReportBlock(0xAAAA, 0, 0, 1, 0, compact(ntp_timestamp(WALL)), int(held * 65536))
    echo = build_compound([Report(0xBBBB, None, (block,))])
    assert sr
    ours.receive(echo, 1.0, WALL + held + late_ms / 1000.0)
    if rtt is None:
        assert ours.stats.rtt is None
    else:
        assert ours.stats.rtt == pytest.approx(rtt, abs=2e-4)


def test_the_inbound_stream_keeps_rtcps_loss_figures() -> None:
    """``InboundStream.reception`` (kept inline per packet) counts as ``ReceptionStats`` does:
    across the sequence wrap, with a loss, a reordered packet and a new SSRC."""
    from dtmfgraph.rtp import Codec, InboundStream, RtpPacket

    stream = InboundStream(codec=Codec.PCMU, inband=False)

    def packet(seq: int, ssrc: int = 5) -> bytes:
        return RtpPacket(0, seq & 0xFFFF, 160 * seq, ssrc, b"\xff" * 160).serialize()

    for i, seq in enumerate([65533, 65534, 65535, 0, 2, 1, 3]):  # 1 comes late
        stream.receive(packet(seq), i * 0.02)
    r = stream.reception
    assert r is not None and r.ssrc == 5
    assert (r.highest, r.expected, r.received, r.lost) == (65536 + 3, 7, 7, 0)
    stream.receive(packet(10), 1.0)  # 4..9 lost
    assert (r.expected, r.received, r.lost) == (14, 8, 6)
    stream.receive(packet(500, ssrc=6), 1.1)
    assert stream.reception is not None and stream.reception.ssrc == 6
