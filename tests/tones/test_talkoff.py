"""Talk-off: no digit in >= 30 minutes of espeak-ng speech and 8 minutes of chords."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from dtmfgraph.tones import detect

from . import talkoff


@pytest.fixture(scope="module")
def speech() -> list[np.ndarray]:
    if shutil.which("espeak-ng") is None:
        pytest.fail(
            "espeak-ng is NOT installed: the talk-off test cannot run "
            "(apt-get install -y --no-install-recommends espeak-ng)",
            pytrace=False,
        )
    return talkoff.speech()


@pytest.mark.slow
def test_speech_is_long_and_varied(speech: list[np.ndarray]) -> None:
    minutes = sum(len(u) for u in speech) / talkoff.RATE / 60
    assert minutes >= 30, minutes
    voices = {str(item["voice"]).split("+")[0] for item in talkoff.speech_recipe()}
    assert len(voices) >= 8
    assert all(np.abs(u).max() > 3000 for u in speech)  # really speech, not silence


@pytest.mark.slow
def test_no_digit_in_speech(speech: list[np.ndarray]) -> None:
    events = detect(np.concatenate(speech))
    assert events == [], [(e.key, round(e.start, 2)) for e in events]


@pytest.mark.slow
def test_no_digit_in_chords() -> None:
    chords = talkoff.chords()
    assert len(chords) >= talkoff.CHORD_MINUTES * 60 * talkoff.RATE
    events = detect(chords)
    assert events == [], [(e.key, round(e.start, 2)) for e in events]


def test_speech_mixed_with_digits_still_gives_the_digits(speech: list[np.ndarray]) -> None:
    """Digits between utterances are found, and nothing else."""
    from dtmfgraph.tones import synthesize

    parts = []
    for i, u in enumerate(speech[:6]):
        parts += [u[: 8000 * 5], synthesize("0123456789*#ABCD"[i * 2 : i * 2 + 2], gap_ms=80)]
    keys = "".join(e.key for e in detect(np.concatenate(parts)))
    assert keys == "0123456789*#"
