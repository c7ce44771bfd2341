"""Packet-loss concealment: tones carried through gaps, pauses kept, no keys made of speech."""

from __future__ import annotations

import numpy as np

from dtmfgraph.tones import KEYS, detect, synthesize, ulaw_decode, ulaw_encode
from dtmfgraph.tones.plc import Concealer, pitch, tonal

from . import talkoff

FRAME = 160


def _frames(keys: str, lead: int, tone_ms: float = 50, gap_ms: float = 50) -> np.ndarray:
    x = np.concatenate(
        [
            np.zeros(800 + lead, np.int16),
            synthesize(keys, tone_ms=tone_ms, gap_ms=gap_ms),
            np.zeros(1600, np.int16),
        ]
    )
    x = ulaw_decode(ulaw_encode(x[: len(x) // FRAME * FRAME]))
    return x.reshape(-1, FRAME).astype(np.float32)


def _play(frames: np.ndarray, lost: set[int], ahead: bool = True) -> np.ndarray:
    """What a receiver plays: good frames as they are, each run of lost ones concealed."""
    plc = Concealer()
    out = []
    i = 0
    while i < len(frames):
        if i not in lost:
            plc.good(frames[i])
            out.append(frames[i])
            i += 1
            continue
        j = i
        while j in lost:
            j += 1
        after = frames[j] if ahead and j < len(frames) else None
        out.append(plc.conceal((j - i) * FRAME, after))
        i = j
    return np.concatenate(out)


def _keys(x: np.ndarray) -> str:
    return "".join(e.key for e in detect(np.clip(x, -32768, 32767).astype(np.int16)))


def test_a_dtmf_pair_is_fitted_exactly() -> None:
    x = synthesize("5", tone_ms=100).astype(np.float64)[200:320]
    freqs, _, resid = tonal(x)
    assert sorted(np.round(freqs * 8000)) == [770, 1336]
    assert resid < 0.01


def test_pitch_of_a_periodic_signal() -> None:
    t = np.arange(390)
    x = 8000 * (np.sin(2 * np.pi * t / 73) + 0.5 * np.sin(4 * np.pi * t / 73))
    assert pitch(x)[0] == 73


def test_a_lost_packet_of_a_tone_mostly_keeps_the_key() -> None:
    """50 ms tones losing one packet that overlaps the tone, at every alignment: silence in its
    place loses most of those keys; concealed, at least 98.5 % are heard (measured: 99.2 %)."""
    total = heard = silent = 0
    for key in KEYS:
        for lead in range(0, FRAME, 16):
            frames = _frames(key * 3, lead)
            for lost in range(5, 8):  # the packets the first key overlaps
                total += 1
                heard += _keys(_play(frames, {lost})) == key * 3
                x = frames.copy()
                x[lost] = 0
                silent += _keys(x.ravel()) == key * 3
    assert heard >= 0.985 * total
    assert silent < 0.8 * total


def test_merging_is_never_the_outcome() -> None:
    """Sharper: a gap lost inside the pause (tones untouched) always leaves three keys."""
    for key in "159D":
        for lead in range(0, FRAME, 20):
            frames = _frames(key * 3, lead)
            tone_end = 800 + lead + 400
            pause_end = tone_end + 400
            for first in range(len(frames)):
                for run in (1, 2, 3):
                    a, b = first * FRAME, (first + run) * FRAME
                    if a >= tone_end and b <= pause_end:
                        got = _keys(_play(frames, set(range(first, first + run))))
                        assert got == key * 3, (key, lead, first, run, got)


def test_concealment_without_the_next_packet_fades() -> None:
    frames = _frames("8", 0, tone_ms=200)
    plc = Concealer()
    for f in frames[:8]:
        plc.good(f)
    out = plc.conceal(3 * FRAME)
    assert np.abs(out[:60]).max() > 1000  # the tone goes on a little
    assert not out[80:].any()  # then silence: the next packet is unknown
    assert plc.concealed == 3 * FRAME


def test_concealed_speech_makes_no_key() -> None:
    """Speech through 10 % loss (and 2-packet bursts) with concealment: no key appears."""
    talkoff.require_espeak()
    items = talkoff.speech_recipe()[:4]
    speech = np.concatenate([talkoff._speak(item) for item in items])
    frames = speech[: len(speech) // FRAME * FRAME].reshape(-1, FRAME).astype(np.float32)
    rng = np.random.default_rng(19)
    lost = set(np.flatnonzero(rng.random(len(frames)) < 0.1).tolist())
    lost |= {i + 1 for i in list(lost)[::3]}
    assert _keys(frames.ravel()) == ""
    assert _keys(_play(frames, lost)) == ""
    assert _keys(_play(frames, lost, ahead=False)) == ""
