"""Our RTP on the wire, judged by tshark: every RFC 4733 rule on the decoded fields, and in-band
audio (PCMU, PCMA) captured off loopback and decoded back to keys by libspandsp and by our detector.

tshark is a required judge: if it is missing these tests FAIL (run the test command to install it).
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from dtmfgraph.media import Pacer, RtpSession
from dtmfgraph.rtp import Codec
from dtmfgraph.tones import detect, key_info

from ..judges.spandsp import spandsp_detect
from .helpers import Row, capture, decode_rtp, open_receiver, percentile

FRAME = 160  # samples (and timestamp units) per 20 ms


async def _send_and_capture(
    tmp_path: Path,
    keys: str,
    *,
    method: str,
    codec: Codec = Codec.PCMU,
    event_pt: int = 101,
    tone_ms: int = 100,
    gap_ms: int = 100,
    volume: int = 10,
    lead: float = 0.1,
    tail: float = 0.1,
) -> tuple[list[Row], int]:
    rx = await open_receiver()
    pcap = tmp_path / "cap.pcapng"
    pacer = Pacer()
    with capture(rx.port, pcap):
        session = await RtpSession.open(
            pacer, remote=rx.address, codec=codec, event_pt=event_pt, receive=False
        )
        await asyncio.sleep(lead)  # some audio before the keys
        await session.send_dtmf(
            keys,
            method=method,
            tone_ms=tone_ms,
            gap_ms=gap_ms,
            volume=volume,  # type: ignore[arg-type]
        )
        await asyncio.sleep(tail)  # and after
        await session.close()
        sent = pacer.stats.packets
        pacer.close()
        await asyncio.sleep(0.05)
    await rx.endpoint.close()
    rows = decode_rtp(pcap, rx.port, event_pt)
    assert len(rows) == sent == len(rx.packets), "tshark saw a different number of packets"
    return rows, sent


@dataclass
class Event:
    rows: list[Row]
    slots: list[int]


def _check_stream(rows: list[Row], *, audio_pt: int) -> tuple[list[int], int, int]:
    """Rules for every packet: one SSRC, consecutive sequence numbers, one packet per 20 ms slot,
    audio on the media clock. Returns the slot index of each row, ts0 and seq0."""
    assert len({r.ssrc for r in rows}) == 1, "SSRC changed"
    seq0 = rows[0].seq
    slots = [(r.seq - seq0) & 0xFFFF for r in rows]
    assert slots == list(range(len(rows))), "sequence numbers not consecutive"
    audio = [(k, r) for k, r in zip(slots, rows, strict=True) if r.pt == audio_pt]
    assert audio, "no audio at all"
    k_a, r_a = audio[0]
    ts0 = (r_a.timestamp - FRAME * k_a) & 0xFFFFFFFF
    for k, r in audio:
        # audio before, between and after events continues the media clock
        assert r.timestamp == (ts0 + FRAME * k) & 0xFFFFFFFF, f"audio slot {k} off the media clock"
        assert not r.marker, f"marker on an audio packet (slot {k})"
    # send times: one packet every 20 ms on an absolute grid, no drift
    t0 = rows[0].time
    err = [(r.time - t0) - 0.020 * k for k, r in zip(slots, rows, strict=True)]
    base = min(err)
    err = [e - base for e in err]
    gaps = [b.time - a.time for a, b in itertools.pairwise(rows)]
    assert 0.019 < percentile(gaps, 50) < 0.021, f"median inter-packet gap {percentile(gaps, 50)}"
    # (how late packets leave is latency: bench/pacing.py measures it, --max-p50-ms/--max-p99-ms
    # bound it on an idle machine; a loaded test box says nothing of the code)
    n = max(5, len(err) // 10)
    assert abs(np.median(err[-n:]) - np.median(err[:n])) < 0.003, "the stream drifted"
    return slots, ts0, seq0


def _check_events(
    rows: list[Row],
    slots: list[int],
    ts0: int,
    *,
    keys: str,
    event_pt: int,
    tone_ms: int,
    volume: int,
) -> None:
    events: list[Event] = []
    for k, r in zip(slots, rows, strict=True):
        if r.pt != event_pt:
            continue
        assert r.event is not None, f"PT {event_pt} not decoded as telephone-event"
        if (
            events
            and events[-1].rows[0].timestamp == r.timestamp
            and events[-1].rows[0].event == r.event
        ):
            events[-1].rows.append(r)
            events[-1].slots.append(k)
        else:
            events.append(Event([r], [k]))
    assert [key_info_event(e.rows[0].event) for e in events] == list(keys)
    total = tone_ms * 8
    prev_end: int | None = None
    for ev in events:
        rs = ev.rows
        first = rs[0]
        assert first.marker, "no marker on the first packet of an event"
        assert not any(r.marker for r in rs[1:]), "marker on a packet after the event's first"
        assert {r.timestamp for r in rs} == {first.timestamp}, "event timestamp changed"
        assert first.timestamp == (ts0 + FRAME * ev.slots[0]) & 0xFFFFFFFF, (
            "event off the media clock"
        )
        assert ev.slots == list(range(ev.slots[0], ev.slots[0] + len(rs))), (
            "event packets not 20 ms apart"
        )
        assert all(r.volume == volume for r in rs), "volume"
        durations = [r.duration for r in rs]
        assert all(d is not None and d > 0 for d in durations), "a zero duration"
        ends = [bool(r.end) for r in rs]
        first_end = ends.index(True)
        assert all(ends[first_end:]), "E bit cleared after it was set"
        assert sum(ends) == 3, f"{sum(ends)} end packets, not 3"
        updates = durations[: first_end + 1]
        assert updates == [min(FRAME * (i + 1), total) for i in range(len(updates))], durations
        assert durations[first_end:] == [total] * 3, "end packets differ"
        assert len({r.payload for r in rs[first_end:]}) == 1, "end packets not identical"
        if prev_end is not None:
            assert first.timestamp >= prev_end, "event starts before the previous one ended"
        prev_end = first.timestamp + total


def key_info_event(event: int | None) -> str:
    assert event is not None
    return "F" if event == 16 else next(k for k in "0123456789*#ABCD" if key_info(k).event == event)


@pytest.mark.parametrize(
    ("keys", "event_pt", "tone_ms", "gap_ms", "volume"),
    [
        ("0123456789*#ABCDF", 101, 100, 100, 10),
        ("95#", 96, 60, 40, 25),
        ("1", 101, 250, 100, 0),
    ],
)
async def test_rfc4733_on_the_wire(
    tmp_path: Path, keys: str, event_pt: int, tone_ms: int, gap_ms: int, volume: int
) -> None:
    rows, _ = await _send_and_capture(
        tmp_path,
        keys,
        method="rfc4733",
        event_pt=event_pt,
        tone_ms=tone_ms,
        gap_ms=gap_ms,
        volume=volume,
    )
    assert {r.pt for r in rows} == {0, event_pt}
    slots, ts0, _ = _check_stream(rows, audio_pt=0)
    _check_events(rows, slots, ts0, keys=keys, event_pt=event_pt, tone_ms=tone_ms, volume=volume)
    assert rows[0].pt == 0 and rows[-1].pt == 0, "audio before and after the keys"


@pytest.mark.parametrize("codec", [Codec.PCMU, Codec.PCMA])
async def test_inband_on_the_wire_decodes_to_the_keys(tmp_path: Path, codec: Codec) -> None:
    keys = "0123456789*#ABCD"
    rows, _ = await _send_and_capture(
        tmp_path, keys, method="inband", codec=codec, tone_ms=70, gap_ms=70
    )
    assert {r.pt for r in rows} == {codec.payload_type}
    _check_stream(rows, audio_pt=codec.payload_type)
    assert all(len(r.payload) == FRAME for r in rows)
    audio = np.concatenate([codec.decode(r.payload) for r in rows])
    assert spandsp_detect(audio) == keys
    assert spandsp_detect(audio, chunk=FRAME) == keys
    assert "".join(e.key for e in detect(audio)) == keys
