"""Packet-loss concealment for 8 kHz audio, for the ear and for the DTMF detector.

:class:`Concealer` keeps the last 48.75 ms of audio played (as ITU-T G.711 Appendix I does) and
fills a gap of lost samples from both of its sides: the audio before it, and the packet after it
when the jitter buffer already holds that one (it usually does: the gap is played out a buffer's
delay after it happened). Each side is extended into the gap in one of two ways:

- **A steady tone** (the 15 ms next to the gap is two sinusoids to within -10 dB: FFT peaks
  refined by parabolic interpolation, amplitudes and phases by least squares) is carried on as
  those sinusoids, phase-continuous. Appendix I's pitch repetition cannot do this for DTMF: a
  tone pair rarely repeats within the 5-15 ms pitch range, and a repeated period of the wrong
  length moves both tones' frequencies by up to 4 % (past what Q.24 lets a detector accept).
- **Anything else** (speech, noise) is Appendix I: the pitch period (5-15 ms, normalised
  cross-correlation over 20 ms, coarse search at 2:1 then the neighbours) is repeated.

Both get Appendix I's level schedule: full for 10 ms, then 20 % less per 10 ms, silent after
60 ms (mirrored for the backward side).

What each side may fill (the Q.24 guard): a concealed key must not merge two equal keys whose
pause was partly lost, nor a key be made of concealed speech. So the whole gap is filled only
when it is shorter than a Q.24 pause (:data:`BRIDGE_MS`, so no 40 ms pause can hide in it) and
the same steady tone is heard on both sides of it (both sides fit the same two frequencies, or
one side's tone carried across the gap is what the first 5 ms of the other side hold).
Otherwise each side goes at most :data:`EDGE_MS` into the gap (at most half of it) and fades
out, and the middle stays silent: a concealed pause shrinks by at most 10 ms a side, and what
continues a non-tone (speech) is a 10 ms copy of what was heard, never a new tone.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

RATE: Final = 8000
HISTORY: Final = 390
"""Samples of past audio kept (48.75 ms, as Appendix I)."""
PITCH_MIN: Final = 40
PITCH_MAX: Final = 120
CORR_LEN: Final = 160
"""Samples correlated in the pitch search (20 ms)."""
ATTEN_START: Final = 80
"""Samples at full level before the attenuation starts (10 ms)."""
ATTEN_PER_SAMPLE: Final = 0.2 / 80
"""Appendix I: 20 % less per 10 ms."""
TONAL: Final = 0.1
"""Most energy a two-sine fit may leave for a side to count as a steady tone (-10 dB)."""
FIT_LEN: Final = 120
"""Samples next to the gap fitted (15 ms)."""
EDGE_MS: Final = 10.0
"""How far a side is extended when the gap is not bridged."""
BRIDGE_MS: Final = 40.0
"""Gaps this long or longer are never bridged whole: they could hide a Q.24 pause (>= 40 ms)."""
_EDGE_CHECK: Final = 40
"""The last 5 ms before the gap (first after it) must be as loud as the 20 ms they end."""
_MEET: Final = 24
"""The 3 ms on the far side of the gap that a tone carried across it must explain."""
_NFFT: Final = 4096
_FADE: Final = 20
"""Cross-fade where the two fills meet (2.5 ms)."""
_QUIET: Final = 1e3
"""Mean square below this (about -58 dBm0) is silence: nothing to extend."""

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


def pitch(
    x: npt.NDArray[np.floating], corr_len: int = CORR_LEN, longest: int = PITCH_MAX
) -> tuple[int, float]:
    """The lag (``PITCH_MIN``..``longest``) at which the last ``corr_len`` samples of ``x``
    best repeat, and their normalised correlation there (0 for silence)."""
    n = len(x)
    corr_len = min(corr_len, n - PITCH_MIN)
    hi = min(longest, n - corr_len)
    if corr_len < PITCH_MIN or hi < PITCH_MIN:
        return PITCH_MIN, 0.0
    x = np.asarray(x, dtype=np.float64)
    tail = x[n - corr_len :]
    energy = float(tail @ tail)
    if energy < _QUIET * corr_len:
        return PITCH_MIN, 0.0
    # Every lagged window at once: row ``k`` is x[n - corr_len - lag_k : n - lag_k].
    windows = np.lib.stride_tricks.sliding_window_view(
        x[n - corr_len - hi : n - PITCH_MIN], corr_len
    )
    lags = np.arange(hi, PITCH_MIN - 1, -1)  # windows[i] is lagged by lags[i]

    def score(rows: npt.NDArray[np.intp]) -> npt.NDArray[np.float64]:
        w = windows[rows]
        cross = w @ tail
        power = np.einsum("ij,ij->i", w, w)
        return np.where(cross > 0, cross * cross / np.maximum(power * energy, 1e-9), 0.0)

    coarse = np.arange(0, len(lags), 2)
    best = int(coarse[np.argmax(score(coarse))])
    fine = np.arange(max(best - 1, 0), min(best + 2, len(lags)))
    scores = score(fine)
    i = int(fine[np.argmax(scores)])
    return int(lags[i]), float(np.sqrt(scores.max()))


def _gain(n: int) -> npt.NDArray[np.float32]:
    """Appendix I's level over ``n`` concealed samples: 1 for 10 ms, then -20 % per 10 ms."""
    i = np.arange(n, dtype=np.float32)
    return np.clip(1.0 - np.maximum(i - ATTEN_START + 1, 0) * ATTEN_PER_SAMPLE, 0.0, 1.0)


def _repeat(period: npt.NDArray[np.floating], n: int) -> F32:
    reps = -(-n // len(period))
    return np.tile(np.asarray(period, dtype=np.float32), reps)[:n]


def tonal(x: npt.NDArray[np.floating], sines: int = 2) -> tuple[F64, F64, float]:
    """Fit ``x`` as a sum of ``sines`` steady sinusoids: their frequencies (cycles per sample;
    zero-padded FFT peaks refined by parabolic interpolation), their cosine and sine
    coefficients (least squares, time 0 at ``x[0]``), and the fraction of the energy the fit
    leaves (1.0 for silence)."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    energy = float(x @ x)
    if n < 2 * PITCH_MIN or energy < _QUIET * n:
        return np.zeros(0), np.zeros(0), 1.0
    spec = np.abs(np.fft.rfft(x * np.hanning(n), _NFFT))
    freqs = np.empty(sines)
    guard = _NFFT * 60 // RATE  # peaks at least 60 Hz apart
    for j in range(sines):
        i = int(np.argmax(spec[1:-1])) + 1
        a, b, c = np.log(spec[i - 1 : i + 2] + 1e-9)
        curve = a - 2 * b + c
        freqs[j] = (i + (0.5 * (a - c) / curve if curve < 0 else 0.0)) / _NFFT
        spec[max(i - guard, 0) : i + guard + 1] = 0.0
    basis = _basis(freqs, np.arange(n))
    coef = np.linalg.lstsq(basis, x, rcond=None)[0]
    resid = x - basis @ coef
    return freqs, coef, float(resid @ resid) / energy


def _basis(freqs: F64, t: npt.NDArray[np.integer] | F64) -> F64:
    phase = 2 * np.pi * np.outer(t, freqs)
    return np.stack([np.cos(phase), np.sin(phase)], axis=2).reshape(len(t), 2 * len(freqs))


class _Side:
    """What one side of a gap offers: a fill over the gap and, for a steady tone, its model."""

    __slots__ = ("coef", "fill", "freqs", "origin", "steady")

    def __init__(self, fill: F32, steady: bool, freqs: F64, coef: F64, origin: int) -> None:
        self.fill = fill
        self.steady = steady
        self.freqs = freqs
        self.coef = coef
        self.origin = origin
        """Time of the gap's first sample in the model's time."""

    def explains(self, x: F32, start: int) -> bool:
        """Whether the steady tone, carried on, is what ``x`` (starting ``start`` samples after
        the gap's first) holds."""
        if not self.steady or not len(x):
            return False
        t = np.arange(start, start + len(x)) + self.origin
        resid = x - _basis(self.freqs, t) @ self.coef
        energy = float(x @ x)
        return energy >= _QUIET * len(x) and float(resid @ resid) <= TONAL * energy


def _side(edge: F32, n: int, forward: bool) -> _Side:
    """Extend ``edge`` (the audio next to the gap, in time order) over ``n`` samples: forward
    (``edge`` before the gap) or backward (``edge`` after it)."""
    fit_len = min(len(edge), FIT_LEN)
    near = edge[-fit_len:] if forward else edge[:fit_len]
    freqs, coef, resid = tonal(near)
    loud_end = near[-_EDGE_CHECK:] if forward else near[:_EDGE_CHECK]
    steady = (
        resid <= TONAL
        and float(loud_end @ loud_end) / _EDGE_CHECK >= 0.8 * float(near @ near) / fit_len
    )
    origin = fit_len if forward else -n
    if steady:
        fill = (_basis(freqs, np.arange(origin, origin + n)) @ coef).astype(np.float32)
    else:  # Appendix I pitch repetition (its audio is never a key: see the module)
        lag = pitch(edge if forward else edge[::-1])[0] if len(edge) > CORR_LEN else len(edge)
        fill = _repeat(edge[-lag:], n) if forward else _periodic_left(edge[:lag], n)
    gain = _gain(n)
    return _Side(fill * (gain if forward else gain[::-1]), steady, freqs, coef, origin)


def conceal(before: npt.ArrayLike, n: int, after: npt.ArrayLike | None = None) -> F32:
    """``n`` samples (int16 scale, float32) to play in place of a gap between ``before`` (the
    audio played before it, up to 48.75 ms are used) and ``after`` (the audio after it, if
    known: then the gap is filled from both sides)."""
    out = np.zeros(max(n, 0), dtype=np.float32)
    if n <= 0:
        return out
    past = np.asarray(before, dtype=np.float32).ravel()[-HISTORY:]
    edge = round(EDGE_MS * RATE / 1000)
    fwd = _side(past, n, True) if len(past) >= 2 * PITCH_MIN else None
    nxt = None if after is None else np.asarray(after, dtype=np.float32).ravel()[:HISTORY]
    bwd = _side(nxt, n, False) if nxt is not None and len(nxt) >= 2 * PITCH_MIN else None
    mid = n // 2 if nxt is not None else n
    short = n < BRIDGE_MS * RATE / 1000
    if (
        fwd is not None
        and bwd is not None
        and short
        and fwd.steady
        and bwd.steady
        and (np.allclose(np.sort(fwd.freqs), np.sort(bwd.freqs), rtol=0.01))
    ):  # the same tone on both sides of a gap too short to hide a pause
        out[:] = _crossfade(fwd.fill, bwd.fill, mid)
    elif fwd is not None and short and nxt is not None and fwd.explains(nxt[:_MEET], n):
        out[:] = fwd.fill  # the tone before the gap is still sounding after it
    elif bwd is not None and short and bwd.explains(past[-_MEET:], -_MEET):
        out[:] = bwd.fill  # the tone after the gap was already sounding before it
    else:
        if fwd is not None:
            k = min(edge, mid)
            out[:k] = fwd.fill[:k] * _fade_out(k)
        if bwd is not None:
            k = min(edge, n - mid)
            out[n - k :] = bwd.fill[n - k :] * _fade_out(k)[::-1]
    return out


class Concealer:
    """:func:`conceal` with its history kept: for one 8 kHz channel (sans-I/O, numpy).

    Feed every frame really received to :meth:`good`, in order; ask :meth:`conceal` for the
    samples of a gap before the frame that follows it (pass that frame, or more, as ``after``
    when it is known). :attr:`concealed` counts the samples made up.
    """

    def __init__(self) -> None:
        self._history = np.zeros(HISTORY, dtype=np.float32)
        self._heard = 0
        self.concealed = 0
        """Samples concealed so far."""

    def good(self, pcm: npt.ArrayLike) -> None:
        """Take ``pcm`` (int16-scale samples) as the next audio played."""
        x = np.asarray(pcm, dtype=np.float32).ravel()
        self._push(x)
        self._heard += len(x)

    def _push(self, x: F32) -> None:
        h = self._history
        if len(x) >= HISTORY:
            h[:] = x[-HISTORY:]
        else:
            h[: HISTORY - len(x)] = h[len(x) :]
            h[HISTORY - len(x) :] = x

    def conceal(self, n: int, after: npt.ArrayLike | None = None) -> F32:
        """``n`` samples to play in place of a gap (see :func:`conceal`); they become history."""
        out = conceal(self._history[HISTORY - min(self._heard, HISTORY) :], n, after)
        self._push(out)
        self._heard += len(out)
        self.concealed += len(out)
        return out


def _periodic_left(period: F32, n: int) -> F32:
    """The ``n`` samples before ``period`` repeated periodically to the left."""
    idx = (np.arange(n) - n) % len(period)
    return period[idx]


def _fade_out(k: int) -> F32:
    """Full level, then a raised-cosine fade over the last 2.5 ms of ``k`` samples."""
    g = np.ones(k, dtype=np.float32)
    f = min(_FADE, k)
    if f:
        g[k - f :] = 0.5 + 0.5 * np.cos(np.pi * (np.arange(f, dtype=np.float32) + 0.5) / f)
    return g


def _crossfade(fwd: F32, bwd: F32, mid: int) -> F32:
    n = len(fwd)
    w = np.clip((np.arange(n, dtype=np.float32) - (mid - _FADE / 2) + 0.5) / _FADE, 0.0, 1.0)
    w = 0.5 - 0.5 * np.cos(np.pi * w)
    return (fwd * (1 - w) + bwd * w).astype(np.float32)
