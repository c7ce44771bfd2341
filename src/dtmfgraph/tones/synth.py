"""Q.23 DTMF synthesis: exact frequencies, levels in dBm0, twist, short raised-cosine fades."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from .keypad import Key, NoTonePairError, parse_keys

DBM0_PEAK = 22786.0
"""Peak int16 amplitude of a 0 dBm0 sine (a full-scale sine is +3.14 dBm0)."""
FADE_IN_MS = 1.0
FADE_OUT_MS = 2.0
MIN_RATE = 4000
FULL_SCALE = 32767


class SynthesisError(ValueError):
    """Parameters that cannot produce valid DTMF audio."""


def dbm0_to_peak(level_dbm0: float) -> float:
    """Peak int16 amplitude of a sine at ``level_dbm0``."""
    return float(DBM0_PEAK * 10.0 ** (level_dbm0 / 20.0))


def _check(rate: int, tone_ms: float, gap_ms: float, level_dbm0: float, twist_db: float) -> None:
    if not isinstance(rate, int | np.integer) or rate < MIN_RATE:
        raise SynthesisError(f"rate must be an integer >= {MIN_RATE} Hz, got {rate!r}")
    if not tone_ms > 0:
        raise SynthesisError(f"tone_ms must be > 0, got {tone_ms!r}")
    if not gap_ms >= 0:
        raise SynthesisError(f"gap_ms must be >= 0, got {gap_ms!r}")
    # low tone at level_dbm0, high at level + twist; their peaks add up in the worst sample
    combined = dbm0_to_peak(level_dbm0) + dbm0_to_peak(level_dbm0 + twist_db)
    if combined > FULL_SCALE:
        raise SynthesisError(
            f"level {level_dbm0} dBm0 with twist {twist_db} dB is too loud: the two tones' combined"
            f" peak {combined:.0f} exceeds int16 full scale {FULL_SCALE}"
        )


def _tone_pair(
    key: Key, rate: int, n: int, level_dbm0: float, twist_db: float
) -> npt.NDArray[np.float64]:
    """One key's tone, ``n`` samples, float, with fades; no rounding."""
    if key.low_hz is None or key.high_hz is None:
        raise NoTonePairError(f"{key.tone} ({key.key}) has no tone pair and cannot be sent in-band")
    t = np.arange(n, dtype=np.float64) / rate
    low = dbm0_to_peak(level_dbm0) * np.sin(2 * np.pi * key.low_hz * t)
    high = dbm0_to_peak(level_dbm0 + twist_db) * np.sin(2 * np.pi * key.high_hz * t)
    return (low + high) * _envelope(n, rate)


def _envelope(n: int, rate: int) -> npt.NDArray[np.float64]:
    env = np.ones(n)
    fade_in = min(round(rate * FADE_IN_MS / 1000), n // 2)
    fade_out = min(round(rate * FADE_OUT_MS / 1000), n - fade_in)
    if fade_in:
        env[:fade_in] = 0.5 - 0.5 * np.cos(np.pi * (np.arange(fade_in) + 0.5) / fade_in)
    if fade_out:
        env[n - fade_out :] = 0.5 + 0.5 * np.cos(np.pi * (np.arange(fade_out) + 0.5) / fade_out)
    return env


def _to_int16(x: npt.NDArray[np.float64]) -> npt.NDArray[np.int16]:
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


def synthesize(
    keys: str,
    rate: int = 8000,
    tone_ms: float = 100.0,
    gap_ms: float = 100.0,
    level_dbm0: float = -10.0,
    twist_db: float = 2.0,
) -> npt.NDArray[np.int16]:
    """Synthesise ``keys`` as 1-D int16 PCM: tone, gap, tone, ..., tone (no leading/trailing gap).

    ``level_dbm0`` is the low tone's level; the high tone is ``twist_db`` louder (negative twist:
    quieter). Raises :class:`~dtmfgraph.tones.keypad.UnknownKeyError` for a key not on the keypad,
    :class:`~dtmfgraph.tones.keypad.NoTonePairError` for flash, :class:`SynthesisError` for bad
    parameters.
    """
    _check(rate, tone_ms, gap_ms, level_dbm0, twist_db)
    entries = parse_keys(keys)
    n_tone = max(1, round(rate * tone_ms / 1000))
    n_gap = round(rate * gap_ms / 1000)
    unique = sorted({e.key for e in entries})
    table = {k: i for i, k in enumerate(unique)}
    by_key = {e.key: e for e in entries}
    tones = np.stack([_tone_pair(by_key[k], rate, n_tone, level_dbm0, twist_db) for k in unique])
    cycle = n_tone + n_gap
    out = np.zeros(len(entries) * cycle, dtype=np.float64)
    out.reshape(len(entries), cycle)[:, :n_tone] = tones[[table[e.key] for e in entries]]
    return _to_int16(out[: len(out) - n_gap])


def synthesize_frames(
    keys: str,
    frame: int = 160,
    rate: int = 8000,
    tone_ms: float = 100.0,
    gap_ms: float = 100.0,
    level_dbm0: float = -10.0,
    twist_db: float = 2.0,
    trailing_gap: bool = True,
) -> Iterator[npt.NDArray[np.int16]]:
    """Stream the same audio as :func:`synthesize` in frames of exactly ``frame`` samples.

    With ``trailing_gap`` the last key is followed by its gap too (what a sender puts on the wire
    before the next job); the last frame is padded with silence. Each tone is generated when its
    first frame is asked for, so memory stays at one key whatever the sequence length.
    """
    if frame < 1:
        raise SynthesisError(f"frame must be >= 1 sample, got {frame!r}")
    _check(rate, tone_ms, gap_ms, level_dbm0, twist_db)
    entries = parse_keys(keys)
    for e in entries:  # fail before the first frame, not halfway through a sequence
        if not e.has_tones:
            raise NoTonePairError(f"{e.tone} ({e.key}) has no tone pair and cannot be sent in-band")
    n_tone = max(1, round(rate * tone_ms / 1000))
    n_gap = round(rate * gap_ms / 1000)
    pending = np.zeros(0, dtype=np.int16)
    for i, e in enumerate(entries):
        gap = n_gap if (trailing_gap or i < len(entries) - 1) else 0
        seg = np.concatenate(
            [_to_int16(_tone_pair(e, rate, n_tone, level_dbm0, twist_db)), np.zeros(gap, np.int16)]
        )
        pending = np.concatenate([pending, seg])
        whole = len(pending) // frame * frame
        yield from pending[:whole].reshape(-1, frame)
        pending = pending[whole:]
    if len(pending):
        yield np.concatenate([pending, np.zeros(frame - len(pending), np.int16)])
