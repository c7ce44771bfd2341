"""InboundStream: real captures, loss, duplication, reordering, in-band audio, garbage."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dtmfgraph.rtp import (
    Codec,
    InboundStream,
    KeyHeard,
    OutboundStream,
    RtpPacket,
    TelephoneEvent,
)
from dtmfgraph.tones import synthesize

from .drive import PTIME, feed, run
from .pcap import read_udp

SIPP = Path("/usr/share/sip-tester")
SIPP_KEYS = {**{str(d): str(d) for d in range(10)}, "pound": "#", "star": "*"}
ALL = "0123456789*#ABCD"


def sipp_capture(name: str) -> Path:
    path = SIPP / f"dtmf_2833_{name}.pcap"
    if not path.exists():
        pytest.fail(
            f"{path} is missing: the sipp RFC 2833 captures come with Debian's sip-tester. Run "
            "`apt-get update && apt-get install -y --no-install-recommends sip-tester` "
            "and then the test command again."
        )
    return path


def datagrams_of(out: OutboundStream, until: float) -> list[tuple[float, bytes]]:
    sent, _ = run(out, until=until)
    return [(s.at, s.data) for s in sent]


def sender(keys: str = ALL, seed: int = 3, **kw: object) -> list[tuple[float, bytes]]:
    out = OutboundStream(start=0.0, rng=random.Random(seed))
    out.send_dtmf(keys, now=0.0, **kw)  # type: ignore[arg-type]
    tone = int(kw.get("tone_ms", 100))  # type: ignore[call-overload]
    gap = int(kw.get("gap_ms", 100))  # type: ignore[call-overload]
    return datagrams_of(out, len(keys) * (tone + max(gap, 40)) / 1000 + 0.2)


def keys_of(heard: list[KeyHeard]) -> str:
    return "".join(h.key for h in heard)


# -- sipp's RFC 2833 captures ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SIPP_KEYS))
def test_sipp_capture_gives_its_key(name: str) -> None:
    udp = read_udp(sipp_capture(name))
    assert len(udp) == 10
    t0 = udp[0].time
    inbound = InboundStream(codec=Codec.PCMU, event_pt=101)
    heard = feed(inbound, [(d.time - t0, d.payload) for d in udp])
    assert len(heard) == 1
    (h,) = heard
    assert (h.key, h.method, h.ssrc) == (SIPP_KEYS[name], "rfc4733", 0x0E05384E)
    assert h.start == pytest.approx(0.0)  # its first packet says duration 0
    assert h.duration == pytest.approx(0.28)  # 2240 timestamp units
    s = inbound.stats
    assert (s.events, s.duplicate, s.event_timeouts, s.dropped) == (8, 2, 0, 2)


def test_all_sipp_captures_in_one_stream() -> None:
    """The twelve captures back to back, renumbered as one sender would have sent them."""
    datagrams: list[tuple[float, bytes]] = []
    seq, ts, t = 100, 5000, 0.0
    expected = ""
    for name in ["1", "2", "3", "4", "5", "6", "7", "8", "9", "0", "star", "pound"]:
        udp = read_udp(sipp_capture(name))
        expected += SIPP_KEYS[name]
        last_seq = None
        for d in udp:
            p = RtpPacket.parse(d.payload)
            if p.sequence != last_seq:
                seq += 1
                last_seq = p.sequence
            q = RtpPacket(p.payload_type, seq & 0xFFFF, ts, p.ssrc, p.payload, p.marker)
            datagrams.append((t + d.time - udp[0].time, q.serialize()))
        ts += 8000
        t += 1.0
    heard = feed(InboundStream(), datagrams)
    assert keys_of(heard) == expected


# -- our own sender, through a bad network ------------------------------------------------------


def test_clean_stream_gives_every_key_once_with_true_timing() -> None:
    heard = feed(InboundStream(inband=False), sender())
    assert keys_of(heard) == ALL
    for i, h in enumerate(heard):
        assert h.method == "rfc4733"
        assert h.start == pytest.approx(i * 0.2 - PTIME)  # first packet already carries 20 ms
        assert h.duration == pytest.approx(0.1)


def test_duplicated_packets_give_each_key_once() -> None:
    datagrams = sender()
    doubled = [(t + dt, d) for t, d in datagrams for dt in (0.0, 0.001)]
    inbound = InboundStream(inband=False)
    assert keys_of(feed(inbound, doubled)) == ALL
    assert inbound.stats.duplicate == len(datagrams)


def test_reordered_packets_give_each_key_once() -> None:
    datagrams = sender()
    swapped = []
    for i in range(0, len(datagrams) - 1, 2):  # every pair swapped: b arrives 5 ms before a
        (_, a), (tb, b) = datagrams[i], datagrams[i + 1]
        swapped += [(tb, b), (tb + 0.005, a)]
    inbound = InboundStream(inband=False)
    assert keys_of(feed(inbound, swapped)) == ALL
    assert inbound.stats.reordered > 0 and inbound.stats.lost == 0


def test_lost_first_packets_still_give_the_key() -> None:
    datagrams = sender("159")
    firsts = {i for i, (_, d) in enumerate(datagrams) if RtpPacket.parse(d).marker}
    kept = [x for i, x in enumerate(datagrams) if i not in firsts]
    inbound = InboundStream(inband=False)
    heard = feed(inbound, kept)
    assert keys_of(heard) == "159"
    assert inbound.stats.lost == 2  # the very first packet lost is no gap: nothing came before
    assert all(h.duration == pytest.approx(0.1) for h in heard)


def test_all_end_packets_lost_ends_the_key_on_timeout() -> None:
    datagrams = sender("12", tone_ms=100, gap_ms=400)
    kept = []
    for t, d in datagrams:
        p = RtpPacket.parse(d)
        if (
            p.payload_type == 101
            and TelephoneEvent.parse(p.payload).end
            and p.timestamp == (RtpPacket.parse(datagrams[0][1]).timestamp)
        ):
            continue  # every end packet of '1'
        kept.append((t, d))
    inbound = InboundStream(inband=False, event_timeout=0.25)
    heard = feed(inbound, kept, flush=False)
    assert keys_of(heard) == "12"
    assert inbound.stats.event_timeouts == 1
    assert heard[0].duration == pytest.approx(0.08)  # the last update seen: 640 units
    assert heard[0].end < heard[1].start


def test_timeout_is_reported_through_the_deadline() -> None:
    inbound = InboundStream(inband=False, event_timeout=0.25)
    update = RtpPacket(101, 1, 1000, 5, TelephoneEvent(3, False, 10, 160).serialize(), True)
    inbound.receive(update.serialize(), 10.0)
    assert inbound.next_event() is None
    assert inbound.next_deadline() == pytest.approx(10.25)
    inbound.handle_deadline(10.2)
    assert inbound.next_event() is None
    inbound.handle_deadline(10.25)
    (h,) = [inbound.next_event()]
    assert h is not None and h.key == "3" and h.duration == pytest.approx(0.02)
    assert inbound.next_deadline() is None


def test_keys_waiting_make_the_deadline_due() -> None:
    inbound = InboundStream(inband=False)
    end = RtpPacket(101, 1, 1000, 5, TelephoneEvent(3, True, 10, 800).serialize(), True)
    inbound.receive(end.serialize(), 10.0)
    deadline = inbound.next_deadline()
    assert deadline is not None and deadline <= 10.0
    assert inbound.next_event() is not None
    assert inbound.next_deadline() is None


def test_a_new_event_ends_one_whose_end_was_lost() -> None:
    inbound = InboundStream(inband=False, event_timeout=5.0)
    a = RtpPacket(101, 1, 1000, 5, TelephoneEvent(1, False, 10, 320).serialize(), True)
    b = RtpPacket(101, 2, 3000, 5, TelephoneEvent(2, True, 10, 800).serialize(), True)
    heard = feed(inbound, [(0.0, a.serialize()), (0.3, b.serialize())], tail=0.1)
    assert keys_of(heard) == "12"
    assert inbound.stats.events_superseded == 1


def test_long_segmented_event_is_one_key() -> None:
    out = OutboundStream(start=0.0, rng=random.Random(1))
    out.send_dtmf("8", tone_ms=20_000, now=0.0)
    heard = feed(InboundStream(inband=False), datagrams_of(out, 21.0))
    assert keys_of(heard) == "8"
    assert heard[0].duration == pytest.approx(20.0)


def test_same_key_twice_is_two_keys() -> None:
    heard = feed(InboundStream(inband=False), sender("55", gap_ms=40))
    assert keys_of(heard) == "55"


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(0.0, 0.5), st.floats(0.0, 0.3), st.floats(0.0, 0.3))
def test_bad_network_property(seed: int, loss: float, dup: float, swap: float) -> None:
    """Random loss (>= 1 packet per key kept), duplication, local reordering: each key once."""
    rng = random.Random(seed)
    keys = "".join(rng.choice(ALL + "F") for _ in range(6))
    datagrams = sender(keys, seed=seed, tone_ms=rng.choice([40, 60, 100]), gap_ms=60)
    groups: dict[int, list[int]] = {}
    for i, (_, d) in enumerate(datagrams):
        p = RtpPacket.parse(d)
        if p.payload_type == 101:
            groups.setdefault(p.timestamp, []).append(i)
    keep_one = {rng.choice(g) for g in groups.values()}
    out: list[tuple[float, bytes]] = []
    for i, (t, d) in enumerate(datagrams):
        if i not in keep_one and rng.random() < loss:
            continue
        at = t + (rng.random() * 0.03 if rng.random() < swap else 0.0)  # <= 1.5 slots late
        out.append((at, d))
        if rng.random() < dup:
            out.append((at + rng.random() * 0.01, d))
    inbound = InboundStream(inband=False)
    heard = feed(inbound, out)
    assert keys_of(heard) == keys
    s = inbound.stats
    assert s.received == s.audio + s.events + s.dropped


# -- garbage ------------------------------------------------------------------------------------


def test_malformed_and_unknown_datagrams_are_counted_never_raised() -> None:
    inbound = InboundStream(codec=Codec.PCMU, event_pt=101)
    bad = [
        b"",
        b"hello",
        bytes(12),  # version 0
        bytes.fromhex("80 60 0001 00000000 00000001") + bytes(160),  # PT 96: unknown
        bytes.fromhex("80 08 0002 00000000 00000001") + bytes(160),  # PCMA on a PCMU stream
        bytes.fromhex("80 65 0003 00000000 00000001 0102"),  # event payload of 2 bytes
        bytes.fromhex("80 e5 0004 00000000 00000001 288a0320"),  # event 40: not a key
        bytes.fromhex("a0 00 0005 00000000 00000001 00"),  # padding count 0
    ]
    for i, d in enumerate(bad):
        inbound.receive(d, i * 0.02)
    inbound.flush(1.0)
    assert inbound.next_event() is None
    s = inbound.stats
    assert (s.received, s.malformed, s.unknown_pt, s.unknown_event) == (8, 5, 2, 1)
    assert s.dropped == 8


def test_no_codec_means_audio_is_an_unknown_payload_type() -> None:
    inbound = InboundStream(codec=None, event_pt=101)
    inbound.receive(bytes.fromhex("80 00 0001 00000000 00000001") + bytes(160), 0.0)
    assert inbound.stats.unknown_pt == 1


def test_gap_never_filled_is_given_up_after_the_window() -> None:
    inbound = InboundStream(inband=False, reorder_window=0.06)
    pk = [RtpPacket(0, s, s * 160, 7, b"\xff" * 160).serialize() for s in range(5)]
    inbound.receive(pk[0], 0.0)
    inbound.receive(pk[2], 0.04)
    inbound.receive(pk[3], 0.06)
    assert inbound.stats.audio == 1
    assert inbound.next_deadline() == pytest.approx(0.1)
    inbound.handle_deadline(0.1)
    assert (inbound.stats.audio, inbound.stats.lost) == (3, 1)
    inbound.receive(pk[1], 0.11)  # after the gap was given up: the jitter buffer judges it
    inbound.receive(pk[4], 0.12)
    assert (inbound.stats.reordered, inbound.stats.too_late, inbound.stats.audio) == (1, 0, 5)


def test_late_event_packet_is_still_used() -> None:
    inbound = InboundStream(inband=False)
    a = RtpPacket(0, 10, 0, 7, b"\xff" * 160).serialize()
    ev = RtpPacket(101, 11, 160, 7, TelephoneEvent(4, True, 10, 400).serialize(), True)
    c = RtpPacket(0, 12, 560, 7, b"\xff" * 160).serialize()
    inbound.receive(a, 0.0)
    inbound.receive(c, 0.02)
    inbound.handle_deadline(0.2)  # gives up on 11
    inbound.receive(ev.serialize(), 0.25)
    heard = inbound.next_event()
    assert heard is not None and heard.key == "4"


def test_two_ssrcs_are_ordered_separately() -> None:
    heard = feed(
        InboundStream(inband=False),
        sender("12", seed=1) + [(t + 2.0, d) for t, d in sender("34", seed=2)],
    )
    assert keys_of(heard) == "1234"


# -- in-band ------------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", [Codec.PCMU, Codec.PCMA])
def test_inband_audio_from_our_sender_gives_the_keys(codec: Codec) -> None:
    out = OutboundStream(start=0.0, codec=codec, rng=random.Random(5))
    out.send_dtmf(ALL, method="inband", tone_ms=80, gap_ms=80, now=0.0)
    inbound = InboundStream(codec=codec, event_pt=101, inband=True)
    heard = feed(inbound, datagrams_of(out, 3.0))
    assert keys_of(heard) == ALL
    assert {h.method for h in heard} == {"inband"}
    for i, h in enumerate(heard):
        assert h.start == pytest.approx(i * 0.16, abs=0.03)
        assert h.duration == pytest.approx(0.08, abs=0.02)
        assert h.ssrc == out.ssrc


def test_inband_survives_a_lost_audio_packet() -> None:
    out = OutboundStream(start=0.0, rng=random.Random(5))
    out.send_dtmf("73", method="inband", tone_ms=200, gap_ms=100, now=0.0)
    datagrams = datagrams_of(out, 1.0)
    del datagrams[4]  # mid-tone of '7'
    assert keys_of(feed(InboundStream(), datagrams)) == "73"


def test_inband_off_hears_no_audio_keys() -> None:
    out = OutboundStream(start=0.0, rng=random.Random(5))
    out.send_dtmf("73", method="inband", now=0.0)
    inbound = InboundStream(inband=False)
    assert feed(inbound, datagrams_of(out, 1.0)) == []
    assert inbound.stats.audio == 51


def _both_ways(keys: str, seed: int = 9) -> list[tuple[float, bytes]]:
    """What many phones send: the tone in the audio *and* telephone-events, one SSRC."""
    rng = random.Random(seed)
    ssrc, seq, ts0 = rng.getrandbits(32), rng.getrandbits(16), rng.getrandbits(32)
    audio = synthesize(keys, tone_ms=100, gap_ms=100)
    audio = list(audio) + [0] * 1600
    out: list[tuple[float, bytes]] = []
    import numpy as np

    pcm = np.asarray(audio, dtype=np.int16)
    for k in range(len(pcm) // 160):
        t = k * PTIME
        ts = (ts0 + 160 * k) & 0xFFFFFFFF
        frame = Codec.PCMU.encode(pcm[k * 160 : (k + 1) * 160])
        out.append((t, RtpPacket(0, seq & 0xFFFF, ts, ssrc, frame).serialize()))
        seq += 1
        i, slot = divmod(k, 10)
        if i < len(keys) and slot < 7:
            start_ts = (ts0 + 1600 * i) & 0xFFFFFFFF
            dur = min(160 * (slot + 1), 800)
            ev = TelephoneEvent(int(keys[i]), slot >= 4, 10, dur)
            p = RtpPacket(101, seq & 0xFFFF, start_ts, ssrc, ev.serialize(), slot == 0)
            out.append((t + 0.001, p.serialize()))
            seq += 1
    return out


def test_key_sent_both_ways_is_reported_once() -> None:
    inbound = InboundStream(codec=Codec.PCMU, event_pt=101, inband=True)
    heard = feed(inbound, _both_ways("2580"))
    assert keys_of(heard) == "2580"
    assert {h.method for h in heard} == {"rfc4733"}
    assert inbound.stats.inband_suppressed == 4


def test_talk_off_on_sipp_g711a_capture() -> None:
    """7 s of A-law audio (30 ms frames) that sipp ships: no keys in it, every packet used."""
    path = SIPP / "g711a.pcap"
    if not path.exists():
        sipp_capture("1")  # fails loudly with the install hint
    udp = read_udp(path)
    inbound = InboundStream(codec=Codec.PCMA, event_pt=101, inband=True)
    heard = feed(inbound, [(d.time - udp[0].time, d.payload) for d in udp])
    assert heard == []
    assert inbound.stats.audio == 236 and inbound.stats.dropped == 0


def test_the_echo_of_keys_we_send_is_not_taken_for_the_far_ends() -> None:
    """While we send "13" (and a moment after), in-band 1s and 3s coming back are our echo;
    a 7 the far end presses meanwhile, and a 1 it presses well after, are its own."""
    out = OutboundStream(start=0.0, rng=random.Random(5))
    out.send_dtmf("1737", method="inband", tone_ms=80, gap_ms=80, now=0.0)
    out.send_dtmf("1", method="inband", tone_ms=80, gap_ms=80, now=2.0)
    inbound = InboundStream()
    inbound.sending(42, "13", 0.0)  # what our own send (another stream) looks like from here
    inbound.sent(42, 0.6)
    heard = feed(inbound, datagrams_of(out, 3.0))
    assert keys_of(heard) == "771"  # the last 1 is past the echo tail
    assert inbound.stats.inband_echo == 2
    assert heard[-1].start > 1.9


def test_interarrival_jitter_follows_rfc_3550() -> None:
    """J += (|D| - J) / 16 over consecutive audio packets: arrivals on time give 0; arrivals
    alternately 2 ms late and on time (each spacing 2 ms off the timestamps') tend to 2 ms."""
    out = OutboundStream(start=0.0, rng=random.Random(5))
    datagrams = datagrams_of(out, 4.0)  # silence, 20 ms apart
    steady = InboundStream()
    feed(steady, datagrams)
    assert steady.stats.jitter_ms == pytest.approx(0.0, abs=1e-9)
    wobbly = InboundStream()
    feed(wobbly, [(t + (0.002 if i % 2 else 0.0), d) for i, (t, d) in enumerate(datagrams)])
    assert wobbly.stats.jitter_ms == pytest.approx(2.0, abs=0.05)


def test_events_between_audio_are_no_lost_audio() -> None:
    """RFC 4733 events take sequence numbers from the audio's: the audio's gap over them is
    played as silence, not concealed, and nothing counts as lost."""
    inbound = InboundStream(inband=True)
    assert keys_of(feed(inbound, sender("12"))) == "12"
    assert inbound.stats.events > 0 and inbound.stats.audio > 0
    assert (inbound.stats.lost, inbound.stats.concealed, inbound.stats.late) == (0, 0, 0)


def test_lost_audio_around_events_is_concealed_and_counted() -> None:
    datagrams = sender("12")
    audio = [i for i, (_, d) in enumerate(datagrams) if RtpPacket.parse(d).payload_type == 0]
    lost = {audio[3], audio[-5]}
    inbound = InboundStream(inband=True)
    assert keys_of(feed(inbound, [d for i, d in enumerate(datagrams) if i not in lost])) == "12"
    assert (inbound.stats.lost, inbound.stats.concealed) == (2, 2)
