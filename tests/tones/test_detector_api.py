"""Detector API: streaming, many channels, rates, input checks, flush."""

from __future__ import annotations

import numpy as np
import pytest

from dtmfgraph.tones import DigitEvent, synthesize
from dtmfgraph.tones.detector import Detector, DetectorError, DetectorTypeError, detect

from . import q24_rows as q
from . import signals as sg

KEYS = "0123456789*#ABCD"


def _signal(seed: int, rate: int = 8000) -> np.ndarray:
    """Digits of varied length and gap at random offsets, in light noise (int16)."""
    rng = np.random.default_rng(seed)
    tones = [
        q.Tone(k, float(rng.uniform(40, 150)), gap_ms=float(rng.uniform(45, 120)))
        for k in rng.permutation(list(KEYS))
    ]
    x, _ = q.build(tones, seed, rate)
    return sg.to_int16(x + sg.white_noise(len(x), 30.0, seed))


def _stream(det: Detector, x: np.ndarray, chunk: int) -> list[DigitEvent]:
    events: list[DigitEvent] = []
    for i in range(0, x.shape[-1], chunk):
        events += det.feed(x[..., i : i + chunk])
    return events + det.flush()


@pytest.mark.parametrize("chunk", [1, 7, 51, 102, 160, 1000, 4093])
def test_streaming_gives_the_same_events_as_one_feed(chunk: int) -> None:
    x = _signal(1)
    if chunk == 1:
        x = x[: 8000 * 2]  # one sample per call is slow: two seconds are enough
    whole = detect(x)
    assert whole, "no digits in the test signal"
    assert _stream(Detector(), x, chunk) == whole


def test_random_chunk_sizes_including_empty() -> None:
    x = _signal(2)
    rng = np.random.default_rng(0)
    det = Detector()
    events: list[DigitEvent] = []
    i = 0
    while i < len(x):
        n = int(rng.choice([0, 1, 3, 50, 51, 52, 160, 333]))
        events += det.feed(x[i : i + n])
        i += n
    assert events + det.flush() == detect(x)


def test_keys_and_tones_at_many_offsets() -> None:
    """Every key, tone starting at 51 different offsets within a half-block."""
    det_keys = []
    expect = ""
    for offset in range(51):
        k = KEYS[offset % 16]
        x = np.concatenate([np.zeros(offset, np.int16), synthesize(k * 2, tone_ms=45, gap_ms=45)])
        det_keys.append("".join(e.key for e in detect(x)))
        expect = k * 2
        assert det_keys[-1] == expect, offset


def test_many_channels_match_single_channel_runs() -> None:
    channels = 24
    length = 8000 * 4
    rows = [_signal(10 + c)[:length] for c in range(channels)]
    rows = [np.pad(r, (0, length - len(r))) for r in rows]
    block = np.stack(rows)
    block[5] = 0  # a silent channel
    multi = _stream(Detector(channels=channels), block, 160)
    single: list[DigitEvent] = []
    for c in range(channels):
        for e in _stream(Detector(), block[c], 160):
            single.append(DigitEvent(e.key, e.start, e.end, e.level_dbm0, c))
    single.sort(key=lambda e: (e.end, e.channel))
    assert multi == single
    assert not [e for e in multi if e.channel == 5]
    assert [(e.end, e.channel) for e in multi] == sorted((e.end, e.channel) for e in multi)


def test_thousand_channels() -> None:
    x = synthesize("159#", tone_ms=60, gap_ms=60)
    block = np.tile(x, (1000, 1))
    det = Detector(channels=1000)
    events = _stream(det, block, 160)
    assert len(events) == 4000
    assert {e.channel for e in events} == set(range(1000))
    assert "".join(e.key for e in events if e.channel == 999) == "159#"


@pytest.mark.parametrize("rate", [16000, 44100, 48000, 11025])
def test_other_rates(rate: int) -> None:
    x = synthesize(KEYS, rate=rate, tone_ms=50, gap_ms=50)
    events = detect(x, rate=rate)
    assert "".join(e.key for e in events) == KEYS
    for i, e in enumerate(events):
        assert abs(e.start - i * 0.1) <= 0.015
        assert abs(e.end - (i * 0.1 + 0.05)) <= 0.015


@pytest.mark.parametrize("rate", [16000, 48000])
def test_other_rates_reject_off_frequency_and_short(rate: int) -> None:
    off = [q.Tone(k, 100, dev_low=0.035) for k in KEYS] + [q.Tone(k, 20) for k in KEYS]
    x, _ = q.build(off, 3, rate)
    assert detect(sg.to_int16(x), rate=rate) == []
    ok = [q.Tone(k, 45, dev_high=-0.015) for k in KEYS]
    x, _ = q.build(ok, 4, rate)
    assert "".join(e.key for e in detect(sg.to_int16(x), rate=rate)) == KEYS


def test_float_input_is_int16_scale() -> None:
    x = synthesize("73")
    assert detect(x.astype(np.float64)) == detect(x)
    assert detect(x.astype(np.float32) / 32768.0) == []  # [-1, 1] floats are far too quiet


def test_flush_ends_a_sounding_digit_and_detector_stays_usable() -> None:
    det = Detector()
    tone = synthesize("5", tone_ms=300)
    assert det.feed(tone) == []  # still sounding
    flushed = det.flush()
    assert [e.key for e in flushed] == ["5"]
    assert flushed[0].end == pytest.approx(0.3, abs=0.015)
    assert det.flush() == []
    later = det.feed(np.concatenate([np.zeros(800, np.int16), synthesize("9")])) + det.flush()
    assert [e.key for e in later] == ["9"]
    assert later[0].start == pytest.approx(0.4, abs=0.015)  # the clock kept running


def test_empty_and_one_sample_feeds() -> None:
    det = Detector(channels=3)
    assert det.feed(np.zeros((3, 0), np.int16)) == []
    assert det.feed(np.zeros((3, 1), np.int16)) == []
    assert Detector().feed(np.zeros(0, np.int16)) == []
    assert detect(np.zeros(0, np.int16)) == []


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"channels": 0}, DetectorError),
        ({"channels": 2.0}, DetectorError),
        ({"channels": True}, DetectorError),
        ({"rate": 4000}, DetectorError),
        ({"rate": 16000.0}, DetectorError),
        ({"rate": 7999}, DetectorError),
    ],
)
def test_bad_parameters(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        Detector(**kwargs)  # type: ignore[arg-type]


def test_bad_blocks() -> None:
    det = Detector(channels=2)
    with pytest.raises(DetectorError, match=r"\(2, n\)"):
        det.feed(np.zeros((3, 10), np.int16))
    with pytest.raises(DetectorError):
        det.feed(np.zeros(10, np.int16))  # 1-D only for one channel
    with pytest.raises(DetectorError):
        det.feed(np.zeros((2, 2, 2), np.int16))
    for bad in (np.zeros((2, 4), bool), np.array([["a", "b"], ["c", "d"]]),
                np.zeros((2, 4), complex)):  # fmt: skip
        with pytest.raises(DetectorTypeError):
            det.feed(bad)
    assert issubclass(DetectorTypeError, TypeError)
    assert issubclass(DetectorError, ValueError)
    with pytest.raises(DetectorError):
        detect(np.zeros((2, 100), np.int16))


def test_detector_still_works_after_a_rejected_block() -> None:
    det = Detector()
    with pytest.raises(DetectorError):
        det.feed(np.zeros((2, 5)))
    assert [e.key for e in det.feed(synthesize("8")) + det.flush()] == ["8"]


def test_equal_keys_back_to_back_and_key_changes_without_gap() -> None:
    a = synthesize("1", tone_ms=80)
    b = synthesize("2", tone_ms=80)
    assert [e.key for e in detect(np.concatenate([a, b, a]))] == ["1", "2", "1"]


def test_long_tone_is_one_digit() -> None:
    events = detect(synthesize("#", tone_ms=5000))
    assert [e.key for e in events] == ["#"]
    assert events[0].duration == pytest.approx(5.0, abs=0.02)


def test_many_channels_with_random_chunk_sizes_match_single_channel_runs() -> None:
    """Feeds of varying length (0 to several half-blocks) switch the detector's buffers and
    carry state between them; every channel must still match a one-channel run."""
    channels = 6
    length = 8000 * 3
    block = np.stack([np.pad(r, (0, max(0, length - len(r))))[:length]
                      for r in (_signal(40 + c) for c in range(channels))])  # fmt: skip
    rng = np.random.default_rng(7)
    det = Detector(channels=channels)
    multi: list[DigitEvent] = []
    i = 0
    while i < length:
        n = int(rng.choice([0, 1, 30, 51, 60, 102, 160, 250, 400, 1000]))
        multi += det.feed(block[:, i : i + n])
        i += n
    multi += det.flush()
    single = sorted(
        (DigitEvent(e.key, e.start, e.end, e.level_dbm0, c)
         for c in range(channels) for e in detect(block[c])),
        key=lambda e: (e.end, e.channel),
    )  # fmt: skip
    assert multi == single
    assert len(multi) >= channels * 10


def test_dense_channels_match_single_channel_runs() -> None:
    """Back-to-back digits in every channel (most blocks are candidates, so the cosine DFTs
    are computed for all half-blocks and the next calls skip finding the needed ones), then
    silence (back to the gathered path): same events as each channel alone."""
    channels = 5
    keys = synthesize(KEYS * 2, tone_ms=60, gap_ms=50)
    silence = np.zeros(8000, dtype=np.int16)
    base = np.concatenate([keys.astype(np.int16), silence, keys.astype(np.int16)])
    block = np.stack([np.roll(base, 37 * c) for c in range(channels)])
    det = Detector(channels=channels)
    multi = _stream(det, block, 160)
    single = sorted(
        (DigitEvent(e.key, e.start, e.end, e.level_dbm0, c)
         for c in range(channels) for e in detect(block[c])),
        key=lambda e: (e.end, e.channel),
    )  # fmt: skip
    assert multi == single
    assert len(multi) == channels * 4 * len(KEYS)


def test_build_events_matches_the_constructor() -> None:
    from dtmfgraph.tones.events import build_events

    made = build_events(["1", "#"], [0.5, 1.0], [0.6, 1.25], [-3.5, -20.0], [0, 7])
    assert made == [DigitEvent("1", 0.5, 0.6, -3.5, 0), DigitEvent("#", 1.0, 1.25, -20.0, 7)]
    assert build_events([], [], [], [], []) == []
    with pytest.raises(ValueError):
        build_events(["1"], [0.5], [0.6], [-3.5], [])
