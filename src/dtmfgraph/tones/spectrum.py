"""A spectrogram on the detector's own grid, and the keys the detector finds in the same audio.

The detector (:mod:`.filterbank`) cuts audio into half-blocks of 51 samples at 8 kHz and looks
at blocks of two half-blocks (102 samples, 12.75 ms, Hann-windowed) with a hop of one
half-block. :func:`spectrogram` does the same framing and evaluates the windowed DFT on a grid
of frequencies (one matrix product for all blocks), so each column is one block the detector
judged, and :func:`analyse` adds the detector's own events on that audio: what the picture shows
is what the detector saw. Levels are per tone in dBm0 (a sine whose peak is ``DBM0_PEAK`` reads
0 dBm0).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Final

import numpy as np
import numpy.typing as npt

from .detector import detect
from .filterbank import half_block
from .keypad import ALL_KEYS
from .synth import DBM0_PEAK

F32 = npt.NDArray[np.float32]
FLOOR_DBM0: Final = -80.0
"""Levels below this are drawn as this (silence)."""
MAX_SAMPLES: Final = 8000 * 600
"""The longest audio one analysis takes (10 minutes at 8 kHz): longer is an error."""
MAX_BINS: Final = 512


@dataclass(frozen=True, slots=True)
class Spectrogram:
    """``level[i, j]``: dBm0 at ``freqs[j]`` in the block starting ``times[i]`` seconds in."""

    times: npt.NDArray[np.float64]
    freqs: npt.NDArray[np.float64]
    level: F32
    block_s: float
    """How long each block lasts (its columns overlap by half)."""


@dataclass(frozen=True, slots=True)
class KeyMark:
    """A key the detector found: when (seconds from the start), its level, its two tones."""

    key: str
    start: float
    end: float
    level_dbm0: float
    low_hz: float
    high_hz: float


@cache
def _basis(rate: int, bins: int, fmax: float) -> tuple[npt.NDArray[np.complex64], float]:
    n = 2 * half_block(rate)
    window = np.hanning(n + 2)[1:-1]  # no zero ends: every sample counts
    freqs = np.linspace(0.0, fmax, bins)
    t = np.arange(n) / rate
    basis = (window[:, None] * np.exp(-2j * np.pi * t[:, None] * freqs[None, :])).astype(
        np.complex64
    )
    return basis, float(window.sum())


def spectrogram(
    samples: npt.ArrayLike, rate: int = 8000, *, fmax: float = 2000.0, bins: int = 160
) -> Spectrogram:
    """The spectrogram of 1-D ``samples`` on the detector's block grid, ``bins`` frequencies
    from 0 to ``fmax`` Hz. ``ValueError`` for audio that is not 1-D, too long, or a bad grid."""
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError("samples must be 1-D")
    if len(x) > MAX_SAMPLES:
        raise ValueError(f"at most {MAX_SAMPLES} samples per analysis, got {len(x)}")
    if not 2 <= bins <= MAX_BINS or not 0 < fmax <= rate / 2:
        raise ValueError(f"need 2 <= bins <= {MAX_BINS} and 0 < fmax <= {rate / 2}")
    half = half_block(rate)
    basis, gain = _basis(rate, bins, float(fmax))
    freqs = np.linspace(0.0, fmax, bins)
    if len(x) < 2 * half:
        empty = np.zeros((0, bins), dtype=np.float32)
        return Spectrogram(np.zeros(0), freqs, empty, 2 * half / rate)
    frames = np.lib.stride_tricks.sliding_window_view(x, 2 * half)[::half]
    spectrum = frames @ basis  # (blocks, bins): one product for every block
    amplitude = 2.0 * np.abs(spectrum) / gain
    with np.errstate(divide="ignore"):
        level = 20.0 * np.log10(amplitude / DBM0_PEAK)
    level = np.maximum(level, FLOOR_DBM0).astype(np.float32)
    times = np.arange(len(frames)) * half / rate
    return Spectrogram(times, freqs, level, 2 * half / rate)


def key_marks(samples: npt.ArrayLike, rate: int = 8000) -> list[KeyMark]:
    """The keys :func:`~dtmfgraph.tones.detect` finds in ``samples``, with their tone pairs."""
    marks = []
    for event in detect(np.asarray(samples), rate=rate):
        info = ALL_KEYS[event.key]
        assert info.low_hz is not None and info.high_hz is not None  # detected keys have tones
        marks.append(
            KeyMark(event.key, event.start, event.end, event.level_dbm0, info.low_hz, info.high_hz)
        )
    return marks


__all__ = ["FLOOR_DBM0", "KeyMark", "Spectrogram", "key_marks", "spectrogram"]
