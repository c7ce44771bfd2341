"""OutboundStream on simulated time: every packet it emits is parsed and checked (RFC 4733)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from dtmfgraph.rtp import (
    BadKeyError,
    Codec,
    DtmfJobError,
    InbandFlashError,
    JobFinished,
    JobStarted,
    OutboundStream,
    RtpPacket,
    TelephoneEvent,
)
from dtmfgraph.tones import KEYS, Detector, NoTonePairError, UnknownKeyError

from .drive import PTIME, Sent, events_by_start, run

ALL = "0123456789*#ABCD"


def stream(**kw: object) -> OutboundStream:
    kw.setdefault("rng", random.Random(7))
    return OutboundStream(start=0.0, **kw)  # type: ignore[arg-type]


def check_stream_invariants(out: OutboundStream, sent: list[Sent]) -> None:
    """One SSRC, consecutive sequence numbers, a packet per 20 ms slot, audio on the media clock."""
    first = sent[0].packet
    for i, s in enumerate(sent):
        p = s.packet
        assert p.ssrc == first.ssrc
        assert p.sequence == (first.sequence + i) & 0xFFFF
        assert s.at == pytest.approx(i * PTIME)
        if p.payload_type == out.codec.payload_type:
            assert p.timestamp == (first.timestamp + 160 * i) & 0xFFFFFFFF
            assert not p.marker
            assert len(p.payload) == 160


def check_event_rules(
    groups: list[list[Sent]], tone_ms: int, gap_ms: int, first_ts: int
) -> list[int]:
    """RFC 4733 rules for each event (no segmentation); returns the event codes in order."""
    codes = []
    prev_end: int | None = None
    for g in groups:
        evs = [TelephoneEvent.parse(s.packet.payload) for s in g]
        codes.append(evs[0].event)
        assert {e.event for e in evs} == {evs[0].event}
        # marker on the first packet only
        assert [s.packet.marker for s in g] == [True] + [False] * (len(g) - 1)
        # duration never 0, growing, 20 ms per update
        durs = [e.duration for e in evs]
        assert min(durs) > 0
        assert durs == sorted(durs)
        n_updates = sum(not e.end for e in evs)
        assert durs[:n_updates] == [160 * (i + 1) for i in range(n_updates)] or (
            n_updates == 1 and durs[0] == tone_ms * 8
        )
        # exactly 3 end packets at the end, identical but for the sequence number
        ends = [s for s, e in zip(g, evs, strict=True) if e.end]
        assert len(ends) == 3 and g[-3:] == ends
        assert len({(s.packet.payload, s.packet.timestamp, s.packet.marker) for s in ends}) == 1
        assert [s.packet.sequence for s in ends] == [
            (ends[0].packet.sequence + i) & 0xFFFF for i in range(3)
        ]
        assert evs[-1].duration == tone_ms * 8
        # packets every 20 ms
        assert [round((s.at - g[0].at) / PTIME) for s in g] == list(range(len(g)))
        # the event's timestamp is the media clock at its first slot
        slot = round(g[0].at / PTIME)
        assert g[0].packet.timestamp == (first_ts + 160 * slot) & 0xFFFFFFFF
        ts = g[0].packet.timestamp
        if prev_end is not None:
            assert (ts - prev_end) & 0xFFFFFFFF < 1 << 31  # next start >= previous start + duration
            assert (ts - prev_end) & 0xFFFFFFFF >= gap_ms * 8
        prev_end = (ts + evs[-1].duration) & 0xFFFFFFFF
    return codes


# -- idle stream -------------------------------------------------------------------------------


@pytest.mark.parametrize(("codec", "byte"), [(Codec.PCMU, 0xFF), (Codec.PCMA, 0xD5)])
def test_idle_stream_sends_encoded_silence(codec: Codec, byte: int) -> None:
    out = stream(codec=codec)
    sent, events = run(out, until=1.0)
    assert len(sent) == 51 and not events
    assert all(s.packet.payload_type == codec.payload_type for s in sent)
    assert all(s.packet.payload == bytes([byte]) * 160 for s in sent)
    check_stream_invariants(out, sent)


def test_random_starts_differ_and_explicit_ones_are_used() -> None:
    a = OutboundStream(start=0.0)
    b = OutboundStream(start=0.0)
    assert (a.ssrc, a.sequence, a.timestamp) != (b.ssrc, b.sequence, b.timestamp)
    c = OutboundStream(start=5.0, ssrc=1, sequence=2, timestamp=3)
    p = RtpPacket.parse(c.packets_due(5.0)[0])
    assert (p.ssrc, p.sequence, p.timestamp) == (1, 2, 3)
    assert (c.sequence, c.timestamp) == (3, 163)


def test_seeded_rng_gives_repeatable_starts() -> None:
    a = OutboundStream(start=0.0, rng=random.Random(42))
    b = OutboundStream(start=0.0, rng=random.Random(42))
    assert (a.ssrc, a.sequence, a.timestamp) == (b.ssrc, b.sequence, b.timestamp)


def test_nothing_before_start_and_each_packet_once() -> None:
    out = OutboundStream(start=10.0)
    assert out.packets_due(9.99) == []
    assert out.next_deadline() == 10.0
    assert len(out.packets_due(10.0)) == 1
    assert out.packets_due(10.0) == []
    assert out.next_deadline() == pytest.approx(10.02)


def test_late_caller_gets_every_due_packet_in_order() -> None:
    out = stream()
    packets = [RtpPacket.parse(d) for d in out.packets_due(1.0)]
    assert len(packets) == 51
    seqs = [p.sequence for p in packets]
    assert seqs == [(seqs[0] + i) & 0xFFFF for i in range(51)]


# -- RFC 4733 ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tone_ms", "gap_ms"), [(100, 100), (40, 40), (50, 0), (250, 60), (10, 30)]
)
def test_rfc4733_rules(tone_ms: int, gap_ms: int) -> None:
    out = stream()
    first_ts = out.timestamp
    job = out.send_dtmf(ALL + "F", tone_ms=tone_ms, gap_ms=gap_ms, now=0.0)
    sent, _ = run(out, until=10.0)
    assert job.done
    check_stream_invariants(out, sent)
    groups = events_by_start(sent)
    codes = check_event_rules(groups, tone_ms, gap_ms, first_ts)
    assert codes == [*range(16), 16]
    assert all(s.packet.payload[1] & 0x3F == 10 for g in groups for s in g)  # volume 10


def test_no_audio_while_an_event_is_on_and_audio_resumes_on_the_clock() -> None:
    out = stream()
    out.send_dtmf("5", tone_ms=100, gap_ms=100, now=0.0)
    sent, _ = run(out, until=0.4)
    kinds = ["E" if s.packet.payload_type == 101 else "a" for s in sent]
    assert "".join(kinds[:8]) == "EEEEEEEa"  # 5 updates (the last with E) + 2 more end packets
    ts0 = sent[0].packet.timestamp
    after = sent[7].packet
    assert after.timestamp == (ts0 + 7 * 160) & 0xFFFFFFFF


def test_volume_is_sent() -> None:
    out = stream()
    out.send_dtmf("1", volume=25, now=0.0)
    sent, _ = run(out, until=0.2)
    assert {TelephoneEvent.parse(s.packet.payload).volume for s in events_by_start(sent)[0]} == {25}


def test_flash_goes_as_event_16() -> None:
    out = stream()
    out.send_dtmf("F", now=0.0)
    sent, _ = run(out, until=0.3)
    (g,) = events_by_start(sent)
    assert {TelephoneEvent.parse(s.packet.payload).event for s in g} == {16}


@pytest.mark.parametrize("tone_ms", [10_000, 20_000, 8_180, 8_200])
def test_long_events_are_segmented(tone_ms: int) -> None:
    out = stream()
    ts0 = out.timestamp
    job = out.send_dtmf("7", tone_ms=tone_ms, now=0.0)
    sent, _ = run(out, until=tone_ms / 1000 + 1)
    assert job.done
    check_stream_invariants(out, sent)
    evs = [
        (s, TelephoneEvent.parse(s.packet.payload)) for s in sent if s.packet.payload_type == 101
    ]
    assert all(0 < e.duration <= 0xFFFF for _, e in evs)
    assert [s.packet.marker for s, _ in evs] == [True] + [False] * (len(evs) - 1)
    segments: dict[int, list[TelephoneEvent]] = {}
    for s, e in evs:
        segments.setdefault(s.packet.timestamp, []).append(e)
    starts = list(segments)
    assert starts[0] == ts0
    total = 0
    for i, ts in enumerate(starts):
        seg = segments[ts]
        last = seg[-1]
        assert (ts - ts0) & 0xFFFFFFFF == total  # each segment starts where the last one ended
        assert [e.duration for e in seg] == sorted(e.duration for e in seg)
        assert seg[-3:] == [last] * 3  # final packet of every segment sent 3 times
        is_last = i == len(starts) - 1
        assert all(e.end == is_last for e in seg[-3:])
        assert not any(e.end for e in seg[:-3])
        total += last.duration
    assert total == tone_ms * 8
    assert len(starts) == -(-tone_ms * 8 // 65440)


def test_sequence_and_timestamp_wrap_around() -> None:
    out = OutboundStream(start=0.0, ssrc=9, sequence=0xFFFE, timestamp=0xFFFFFF00)
    out.send_dtmf("12", tone_ms=100, gap_ms=100, now=0.0)
    sent, _ = run(out, until=1.0)
    check_stream_invariants(out, sent)
    assert [s.packet.sequence for s in sent[:4]] == [0xFFFE, 0xFFFF, 0, 1]
    groups = events_by_start(sent)
    check_event_rules(groups, 100, 100, 0xFFFFFF00)
    assert groups[0][0].packet.timestamp == 0xFFFFFF00
    assert groups[1][0].packet.timestamp == (0xFFFFFF00 + 10 * 160) & 0xFFFFFFFF


def test_rfc4733_without_event_pt_is_refused() -> None:
    out = stream(event_pt=None)
    with pytest.raises(DtmfJobError, match="telephone-event"):
        out.send_dtmf("1", now=0.0)
    out.send_dtmf("1", method="inband", now=0.0)  # in-band still works


def test_other_event_payload_type() -> None:
    out = stream(event_pt=96)
    out.send_dtmf("1", now=0.0)
    sent, _ = run(out, until=0.3)
    assert len(events_by_start(sent, event_pt=96)) == 1


# -- jobs ----------------------------------------------------------------------------------------


def test_job_start_and_finish_times() -> None:
    out = stream()
    job = out.send_dtmf("123", tone_ms=100, gap_ms=100, now=0.0)
    sent, events = run(out, until=2.0)
    assert events == [JobStarted(job, 0.0), JobFinished(job, pytest.approx(0.52))]
    assert job.started_at == 0.0
    last_event = [s for s in sent if s.packet.payload_type == 101][-1]
    assert job.finished_at == pytest.approx(last_event.at)  # the third end packet of '3'
    assert (job.keys_sent, job.keys_left, job.cancelled, job.done) == (3, 0, False, True)


def test_job_starts_on_the_next_slot_after_now() -> None:
    out = stream()
    run(out, until=0.1)  # slots 0..5 sent
    job = out.send_dtmf("1", now=0.105)
    sent, events = run(out, until=0.5, t0=0.12)
    assert events[0] == JobStarted(job, pytest.approx(0.12))
    assert sent[0].packet.marker and sent[0].packet.payload_type == 101


def test_jobs_are_fifo_and_separated_by_the_gap() -> None:
    out = stream()
    a = out.send_dtmf("12", tone_ms=100, gap_ms=200, now=0.0)
    b = out.send_dtmf("3", method="inband", tone_ms=100, gap_ms=50, now=0.0)
    c = out.send_dtmf("4", tone_ms=60, gap_ms=50, now=0.0)
    sent, events = run(out, until=3.0)
    assert [type(e).__name__ + str(e.job.id) for e in events] == [
        "JobStarted1",
        "JobFinished1",
        "JobStarted2",
        "JobFinished2",
        "JobStarted3",
        "JobFinished3",
    ]
    assert a.finished_at is not None and b.started_at is not None and c.started_at is not None
    # '2' ends at 0.3 + 0.1; a's gap (200 ms) runs before b's tone starts
    assert b.started_at == pytest.approx(0.3 + 0.1 + 0.2)
    assert b.finished_at == pytest.approx(b.started_at + 0.08)  # its last tone frame
    assert c.started_at == pytest.approx(b.started_at + 0.1 + 0.05, abs=0.021)
    check_stream_invariants(out, sent)


def test_cancel_mid_key_finishes_that_key_with_its_end_packets() -> None:
    out = stream()
    job = out.send_dtmf("123456", tone_ms=100, gap_ms=100, now=0.0)
    sent, _ = run(out, until=0.24)  # '2' started at 0.2
    out.cancel(job, 0.245)
    more, events = run(out, until=2.0, t0=0.26)
    groups = events_by_start(sent + more)
    assert [TelephoneEvent.parse(g[0].packet.payload).event for g in groups] == [1, 2]
    check_event_rules(groups, 100, 100, sent[0].packet.timestamp)
    assert events == [JobFinished(job, pytest.approx(0.2 + 0.12))]
    assert (job.cancelled, job.keys_sent, job.keys_left) == (True, 2, 4)


def test_cancel_between_keys_finishes_at_the_last_packet() -> None:
    out = stream()
    job = out.send_dtmf("123", tone_ms=100, gap_ms=300, now=0.0)
    run(out, until=0.2)
    out.cancel(job, 0.2)
    assert job.done and job.finished_at == pytest.approx(0.12)
    assert out.next_event() == JobFinished(job, pytest.approx(0.12))
    assert job.keys_left == 2
    sent, _ = run(out, until=1.0, t0=0.22)
    assert all(s.packet.payload_type == 0 for s in sent)


def test_cancel_a_queued_job_drops_it_at_once() -> None:
    out = stream()
    a = out.send_dtmf("11", now=0.0)
    b = out.send_dtmf("22", now=0.0)
    out.cancel(b, 0.01)
    assert b.done and b.finished_at == 0.01 and b.started_at is None and b.keys_left == 2
    sent, events = run(out, until=2.0)
    assert {TelephoneEvent.parse(g[0].packet.payload).event for g in events_by_start(sent)} == {1}
    assert [e.job for e in events] == [b, a, a]
    out.cancel(a, 3.0)  # done: nothing happens
    assert not a.cancelled and out.next_event() is None


def test_cancel_before_the_first_slot_of_the_head_job() -> None:
    out = stream()
    job = out.send_dtmf("9", now=0.0)
    out.cancel(job, 0.0)
    sent, events = run(out, until=0.5)
    assert events == [JobFinished(job, 0.0)] and not events_by_start(sent)


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("keys", ["", "X", "12E", "1 2", "**9G"])
def test_bad_keys(keys: str) -> None:
    with pytest.raises(BadKeyError) as info:
        stream().send_dtmf(keys, now=0.0)
    assert isinstance(info.value, UnknownKeyError) and isinstance(info.value, ValueError)


def test_lower_case_keys_are_accepted() -> None:
    job = stream().send_dtmf("abcdf", now=0.0)
    assert job.keys == "ABCDF"


def test_flash_in_band_is_a_clear_error() -> None:
    out = stream()
    with pytest.raises(InbandFlashError, match="flash") as info:
        out.send_dtmf("12F", method="inband", now=0.0)
    assert isinstance(info.value, NoTonePairError) and isinstance(info.value, DtmfJobError)
    assert out.jobs == ()


@pytest.mark.parametrize(
    "kw",
    [
        {"tone_ms": 0},
        {"tone_ms": -5},
        {"tone_ms": 600_001},
        {"tone_ms": 1.5},
        {"gap_ms": -1},
        {"volume": 64},
        {"volume": -1},
        {"method": "info"},
    ],
)
def test_bad_parameters(kw: dict[str, object]) -> None:
    with pytest.raises(DtmfJobError):
        stream().send_dtmf("1", now=0.0, **kw)  # type: ignore[arg-type]


def test_bad_stream_parameters() -> None:
    with pytest.raises(ValueError):
        OutboundStream(start=0.0, event_pt=0)  # same as PCMU
    with pytest.raises(ValueError):
        OutboundStream(start=0.0, event_pt=128)
    with pytest.raises(ValueError):
        OutboundStream(start=0.0, ptime_ms=0)
    with pytest.raises(ValueError):
        OutboundStream(start=0.0, sequence=70000)


# -- in-band -----------------------------------------------------------------------------------


def _audio(sent: list[Sent], codec: Codec) -> np.ndarray:
    return np.concatenate([codec.decode(s.packet.payload) for s in sent])


def _tone_db(x: np.ndarray, hz: float) -> float:
    n = np.arange(len(x))
    c = np.abs(np.sum(x * np.exp(-2j * np.pi * hz * n / 8000))) / len(x)
    return 20 * np.log10(c + 1e-9)


@pytest.mark.parametrize("codec", [Codec.PCMU, Codec.PCMA])
def test_inband_frames_carry_the_keys_tones(codec: Codec) -> None:
    out = stream(codec=codec)
    job = out.send_dtmf("19#D", method="inband", tone_ms=100, gap_ms=100, now=0.0)
    sent, events = run(out, until=1.5)
    assert all(s.packet.payload_type == codec.payload_type for s in sent)
    check_stream_invariants(out, sent)
    pcm = _audio(sent, codec)
    for i, key in enumerate("19#D"):
        info = KEYS[key]
        tone = pcm[i * 1600 : i * 1600 + 800].astype(float)
        gap = pcm[i * 1600 + 800 : i * 1600 + 1600]
        assert np.abs(gap).max() <= 8  # silence
        assert info.low_hz is not None and info.high_hz is not None
        low, high = _tone_db(tone, info.low_hz), _tone_db(tone, info.high_hz)
        for other in (697, 770, 852, 941, 1209, 1336, 1477, 1633):
            if other not in (info.low_hz, info.high_hz):
                assert _tone_db(tone, other) < min(low, high) - 25
        assert high - low == pytest.approx(2.0, abs=0.5)  # +2 dB twist
    assert job.started_at == 0.0 and job.finished_at == pytest.approx(0.6 + 0.08)
    assert [type(e) for e in events] == [JobStarted, JobFinished]


@pytest.mark.parametrize("codec", [Codec.PCMU, Codec.PCMA])
def test_inband_frames_are_heard_by_our_detector(codec: Codec) -> None:
    out = stream(codec=codec)
    out.send_dtmf(ALL, method="inband", tone_ms=70, gap_ms=70, now=0.0)
    sent, _ = run(out, until=3.0)
    det = Detector(channels=1)
    pcm = _audio(sent, codec).reshape(1, -1)
    digits = det.feed(pcm) + det.flush()
    assert "".join(d.key for d in digits) == ALL
    for i, d in enumerate(digits):
        assert d.start == pytest.approx(i * 0.14, abs=0.015)
        assert d.duration == pytest.approx(0.07, abs=0.015)


def test_inband_frames_are_precomputed_and_shared() -> None:
    a, b = stream(), stream()
    ja = a.send_dtmf("55", method="inband", now=0.0)
    jb = b.send_dtmf("5", method="inband", now=0.0)
    assert ja._frames[0] is ja._frames[1] is jb._frames[0]


# -- cost ---------------------------------------------------------------------------------------


def test_packets_due_is_one_packet_per_stream_per_tick() -> None:
    """2,000 streams x 50 ticks (one second of media), idle and busy: each call returns its one
    packet. (The CPU per call is measured by bench/packet_cost.py, a release check: timing
    thresholds fail on a loaded box and do not belong in tests.)"""
    streams = [OutboundStream(start=0.0) for _ in range(2000)]
    for i, s in enumerate(streams[:1000]):
        s.send_dtmf("1234567890", method="rfc4733" if i % 2 else "inband", now=0.0)
    for k in range(50):
        assert all(len(s.packets_due(k * PTIME)) == 1 for s in streams), k


@pytest.mark.parametrize("ptime_ms", [10, 30, 40])
def test_other_packet_times(ptime_ms: int) -> None:
    out = OutboundStream(start=0.0, ptime_ms=ptime_ms, rng=random.Random(3))
    spf = 8 * ptime_ms
    out.send_dtmf("4", tone_ms=120, now=0.0)
    sent, _ = run(out, until=0.6, step=ptime_ms / 1000)
    ts0 = sent[0].packet.timestamp
    (g,) = events_by_start(sent)
    durs = [TelephoneEvent.parse(s.packet.payload).duration for s in g]
    n = -(-960 // spf)
    assert durs == [min(spf * (i + 1), 960) for i in range(n - 1)] + [960] * 3
    audio = [s for s in sent if s.packet.payload_type == 0]
    assert all(len(s.packet.payload) == spf for s in audio)
    for i, s in enumerate(sent):
        if s.packet.payload_type == 0:
            assert s.packet.timestamp == (ts0 + spf * i) & 0xFFFFFFFF


@pytest.mark.parametrize("method", ["rfc4733", "inband"])
def test_packets_and_octets_sent_count_what_left(method: str) -> None:
    """What an RTCP sender report counts: every packet returned, and their payload bytes
    (4 per telephone-event packet, a frame per audio one)."""
    stream = OutboundStream(start=0.0, rng=random.Random(1))
    stream.send_dtmf("5#", method=method, tone_ms=60, gap_ms=40, now=0.0)  # type: ignore[arg-type]
    packets = stream.packets_due(0.5)
    assert stream.packets_sent == len(packets) == 26
    assert stream.octets_sent == sum(len(p) - 12 for p in packets)
    more = stream.packets_due(0.6)
    assert stream.packets_sent == len(packets) + len(more)
