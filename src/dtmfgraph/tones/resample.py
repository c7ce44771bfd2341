"""Audio for a call from a WAV file: mono, resampled to the call's rate, faded in and out.

Resampling is soxr's (libsoxr, "HQ": a linear-phase polyphase filter with ~ -125 dB stop-band
rejection, passband to 95 % of the lower Nyquist): a 16 kHz prompt comes down to 8 kHz without
the aliasing that dropping every other sample would fold into the telephone band. The edges get
a short raised-cosine ramp so that a prompt that starts or ends mid-waveform makes no click.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import soxr  # type: ignore[import-untyped]

from .wav import Wav

EDGE_FADE_MS = 5.0
"""Raised-cosine ramp at the start and at the end of a prepared prompt."""
MIN_RATE = 4000
MAX_RATE = 384_000


class PromptAudioError(ValueError):
    """Audio that cannot be played in a call (a rate out of range, no samples, too long)."""


def resample(samples: npt.ArrayLike, rate_in: int, rate_out: int) -> npt.NDArray[np.float64]:
    """``samples`` (1-D, any numeric type, int16 scale kept) at ``rate_out``; soxr HQ."""
    x = np.asarray(samples, dtype=np.float64)
    if rate_in == rate_out:
        return x.copy()
    return np.asarray(soxr.resample(x, rate_in, rate_out, quality="HQ"), dtype=np.float64)


def edge_fade(x: npt.NDArray[np.float64], rate: int, ms: float = EDGE_FADE_MS) -> None:
    """Ramp the first and last ``ms`` of ``x`` in place (raised cosine from/to zero)."""
    n = min(round(rate * ms / 1000), len(x) // 2)
    if n <= 0:
        return
    ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)
    x[:n] *= ramp
    x[-n:] *= ramp[::-1]


def prepare(
    wav: Wav, rate: int = 8000, *, max_seconds: float | None = None
) -> npt.NDArray[np.int16]:
    """``wav`` as int16 mono samples at ``rate``: channels averaged, resampled, edges faded.

    Raises :class:`PromptAudioError` for a rate outside 4 kHz..384 kHz, a file without samples,
    or (with ``max_seconds``) audio longer than that."""
    if not MIN_RATE <= wav.rate <= MAX_RATE:
        raise PromptAudioError(
            f"the WAV's sample rate {wav.rate} Hz is outside {MIN_RATE}..{MAX_RATE} Hz"
        )
    if wav.samples.shape[1] == 0:
        raise PromptAudioError("the WAV file has no audio samples")
    if max_seconds is not None and wav.duration > max_seconds:
        raise PromptAudioError(
            f"the WAV file is {wav.duration:.1f} s long; prompts are at most {max_seconds:g} s"
        )
    mono = wav.samples.astype(np.float64).mean(axis=0)
    out = resample(mono, wav.rate, rate)
    edge_fade(out, rate)
    return np.clip(np.rint(out), -32768, 32767).astype(np.int16)


def beep(
    rate: int = 8000, *, hz: float = 1000.0, ms: float = 400.0, dbfs: float = -12.0
) -> npt.NDArray[np.int16]:
    """A sine ``hz`` for ``ms`` at ``dbfs`` (peak) with faded edges: recordResponse's beep."""
    n = round(rate * ms / 1000)
    x = 32767.0 * 10 ** (dbfs / 20) * np.sin(2 * np.pi * hz * np.arange(n) / rate)
    edge_fade(x, rate)
    return np.rint(x).astype(np.int16)


__all__ = ["EDGE_FADE_MS", "PromptAudioError", "beep", "edge_fade", "prepare", "resample"]
