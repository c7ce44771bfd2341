"""Property tests: codecs round-trip, and bad bytes only ever raise RtpError (never crash)."""

from __future__ import annotations

import contextlib
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dtmfgraph.rtp import (
    Codec,
    InboundStream,
    OutboundStream,
    RtpError,
    RtpPacket,
    TelephoneEvent,
)

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)

packets = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127),
    sequence=u16,
    timestamp=u32,
    ssrc=u32,
    payload=st.binary(max_size=64),
    marker=st.booleans(),
    csrcs=st.lists(u32, max_size=15).map(tuple),
    extension=st.none()
    | st.tuples(u16, st.binary(max_size=16).map(lambda b: b[: len(b) // 4 * 4])),
    padding=st.integers(0, 255),
)
events = st.builds(
    TelephoneEvent,
    event=st.integers(0, 255),
    end=st.booleans(),
    volume=st.integers(0, 63),
    duration=u16,
)


@FAST
@given(packets)
def test_packet_round_trip(p: RtpPacket) -> None:
    data = p.serialize()
    assert RtpPacket.parse(data) == p
    assert RtpPacket.parse(data).serialize() == data


@FAST
@given(events)
def test_event_round_trip(ev: TelephoneEvent) -> None:
    data = ev.serialize()
    assert len(data) == 4
    assert TelephoneEvent.parse(data) == ev


@FAST
@given(st.binary(max_size=200))
def test_random_bytes_only_raise_rtp_error(data: bytes) -> None:
    try:
        p = RtpPacket.parse(data)
    except RtpError:
        return
    # whatever parses must serialise and parse back to the same packet
    assert RtpPacket.parse(p.serialize()) == p
    with contextlib.suppress(RtpError):
        TelephoneEvent.parse(p.payload)


@FAST
@given(st.binary(max_size=12))
def test_random_event_payloads_only_raise_rtp_error(data: bytes) -> None:
    try:
        ev = TelephoneEvent.parse(data)
    except RtpError:
        return
    assert TelephoneEvent.parse(ev.serialize()) == ev


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(packets).serialize())
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "cut", "grow"]))
        if kind == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        elif kind == "cut":
            data = data[: draw(st.integers(0, len(data)))]
        else:
            data += draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


@FAST
@given(mutated())
def test_mutated_packets_only_raise_rtp_error(data: bytes) -> None:
    try:
        p = RtpPacket.parse(data)
    except RtpError:
        return
    assert RtpPacket.parse(p.serialize()) == p


@FAST
@given(st.lists(st.one_of(st.binary(max_size=40), mutated()), max_size=30))
def test_inbound_never_raises_on_garbage(datagrams: list[bytes]) -> None:
    inbound = InboundStream(codec=Codec.PCMU, event_pt=101, inband=False)
    for i, data in enumerate(datagrams):
        inbound.receive(data, i * 0.01)
        inbound.handle_deadline(i * 0.01)
        while inbound.next_event() is not None:
            pass
    inbound.flush(1.0)
    s = inbound.stats
    assert s.received == len(datagrams)
    # every datagram is accounted for exactly once: used, or dropped for one reason
    assert s.received == s.audio + s.events + s.dropped


@FAST
@given(st.integers(0, 2**32 - 1), st.lists(st.integers(0, 60), min_size=1, max_size=40))
def test_inbound_never_raises_on_mutated_real_streams(seed: int, flips: list[int]) -> None:
    out = OutboundStream(start=0.0, rng=random.Random(seed))
    out.send_dtmf("1#", tone_ms=60, gap_ms=40, now=0.0)
    inbound = InboundStream(inband=False)
    rng = random.Random(seed)
    for k in range(30):
        for data in out.packets_due(k * 0.02):
            buf = bytearray(data)
            if k in flips:
                buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
            inbound.receive(bytes(buf), k * 0.02)
        inbound.handle_deadline(k * 0.02)
    inbound.flush(1.0)
    s = inbound.stats
    assert s.received == 30
    assert s.received == s.audio + s.events + s.dropped
