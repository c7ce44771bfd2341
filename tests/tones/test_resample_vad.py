"""Prompt audio preparation (soxr resampling, channels, fades) and the frame-energy speech
detector."""

from __future__ import annotations

import numpy as np
import pytest

from dtmfgraph.tones.resample import PromptAudioError, beep, prepare, resample
from dtmfgraph.tones.vad import SpeechDetector, frame_levels
from dtmfgraph.tones.wav import Wav, parse_wav
from dtmfgraph.tones.wav import encode_wav as wav16


def sine(hz: float, rate: int, seconds: float, amp: float = 10000.0) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return amp * np.sin(2 * np.pi * hz * t)


def band_power(x: np.ndarray, rate: int, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    f = np.fft.rfftfreq(len(x), 1 / rate)
    return float(spec[(f >= lo) & (f <= hi)].sum())


def test_16k_to_8k_keeps_the_band_and_does_not_fold_what_is_above_it() -> None:
    # 1 kHz stays; 6 kHz (above the 4 kHz Nyquist of 8 kHz) must vanish, not alias to 2 kHz
    x = sine(1000, 16000, 1.0) + sine(6000, 16000, 1.0)
    y = resample(x, 16000, 8000)
    assert len(y) == 8000
    inband = band_power(y, 8000, 950, 1050)
    alias = band_power(y, 8000, 1950, 2050)
    assert alias < inband * 1e-6  # > 60 dB down
    naive = x[::2]  # what decimation would have given: a loud 2 kHz alias
    assert band_power(naive, 8000, 1950, 2050) > band_power(naive, 8000, 950, 1050) * 0.5


@pytest.mark.parametrize("rate", [8000, 11025, 16000, 22050, 44100, 48000])
def test_prepare_any_rate_stereo_to_8k_mono_with_faded_edges(rate: int) -> None:
    left = sine(500, rate, 0.5)
    right = sine(500, rate, 0.5)
    wav = parse_wav(wav16(np.rint(np.stack([left, right])).astype(np.int16), rate))
    out = prepare(wav)
    assert out.dtype == np.int16 and len(out) == pytest.approx(4000, abs=2)
    assert abs(int(out[0])) < 200 and abs(int(out[-1])) < 200  # faded: no click
    mid = out[1000:3000].astype(float)
    assert np.sqrt(np.mean(mid**2)) == pytest.approx(10000 / np.sqrt(2), rel=0.02)


def test_prepare_refuses_what_cannot_play() -> None:
    with pytest.raises(PromptAudioError, match="no audio samples"):
        prepare(Wav(16000, np.zeros((1, 0), np.int16)))
    with pytest.raises(PromptAudioError, match="sample rate 1000 Hz"):
        prepare(Wav(1000, np.zeros((1, 100), np.int16)))
    with pytest.raises(PromptAudioError, match="prompts are at most 1 s"):
        prepare(Wav(8000, np.zeros((1, 16000), np.int16)), max_seconds=1)


def test_beep_is_a_faded_1k_sine() -> None:
    b = beep()
    assert len(b) == 3200 and abs(int(b[0])) < 100 and abs(int(b[-1])) < 100
    assert band_power(b.astype(float), 8000, 950, 1050) > 0.99 * band_power(
        b.astype(float), 8000, 0, 4000
    )


def test_frame_levels_in_dbfs() -> None:
    full = np.full(160, 32767.0)
    quiet = sine(1000, 8000, 0.02, amp=32768 * 10 ** (-50 / 20) * np.sqrt(2))
    levels = frame_levels(np.concatenate([full, quiet, np.zeros(160), np.zeros(10)]))
    assert len(levels) == 3
    assert levels[0] == pytest.approx(0.0, abs=0.01)
    assert levels[1] == pytest.approx(-50.0, abs=0.5)
    assert levels[2] == -120.0


def test_speech_detector_onset_hangover_and_silence_time() -> None:
    vad = SpeechDetector()
    vad.push(np.zeros(8000))  # a second of silence
    vad.push(sine(300, 8000, 0.04, amp=3000))  # 40 ms: a click, not speech
    vad.push(np.zeros(800))
    assert not vad.started and vad.silent_for == 0.0
    vad.push(sine(300, 8000, 0.5, amp=3000))  # speech
    assert vad.started and vad.speaking
    assert vad.started_at_frame == 8000 // 160 + 2 + 5
    vad.push(np.zeros(160 * 5))
    assert vad.speaking and vad.silent_for == pytest.approx(0.1)
    vad.push(np.zeros(160 * 50))
    assert not vad.speaking and vad.silent_for == pytest.approx(1.1)
    vad.push(sine(300, 8000, 0.001, amp=3000))  # not a whole frame yet
    assert vad.silent_for == pytest.approx(1.1)
