"""Test signals: two-tone pairs at arbitrary frequencies and levels, noise, dial tone, codecs."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from dtmfgraph.tones import (
    alaw_decode,
    alaw_encode,
    dbm0_to_peak,
    key_info,
    ulaw_decode,
    ulaw_encode,
)

F64 = npt.NDArray[np.float64]
I16 = npt.NDArray[np.int16]


def fades(n: int, rate: int, fade_in_ms: float = 1.0, fade_out_ms: float = 2.0) -> F64:
    """Raised-cosine fade-in/out envelope of ``n`` samples (as the synthesiser uses)."""
    env = np.ones(n)
    a = min(round(rate * fade_in_ms / 1000), n // 2)
    b = min(round(rate * fade_out_ms / 1000), n - a)
    if a:
        env[:a] = 0.5 - 0.5 * np.cos(np.pi * (np.arange(a) + 0.5) / a)
    if b:
        env[n - b :] = 0.5 + 0.5 * np.cos(np.pi * (np.arange(b) + 0.5) / b)
    return env


def two_tone(
    low_hz: float,
    high_hz: float,
    ms: float,
    low_dbm0: float = -10.0,
    high_dbm0: float = -10.0,
    rate: int = 8000,
    phases: tuple[float, float] = (0.0, 0.0),
) -> F64:
    """``ms`` of two sines at any frequencies and levels (dBm0 per tone), float, with fades."""
    n = max(1, round(rate * ms / 1000))
    t = np.arange(n) / rate
    x = dbm0_to_peak(low_dbm0) * np.sin(2 * np.pi * low_hz * t + phases[0])
    x += dbm0_to_peak(high_dbm0) * np.sin(2 * np.pi * high_hz * t + phases[1])
    return x * fades(n, rate)


def key_tone(
    key: str,
    ms: float,
    low_dbm0: float = -10.0,
    high_dbm0: float | None = None,
    dev_low: float = 0.0,
    dev_high: float = 0.0,
    rate: int = 8000,
    phases: tuple[float, float] = (0.0, 0.0),
) -> F64:
    """One key's tone pair, each tone off its nominal frequency by a relative ``dev_*``."""
    info = key_info(key)
    assert info.low_hz is not None and info.high_hz is not None
    high = low_dbm0 if high_dbm0 is None else high_dbm0
    return two_tone(
        info.low_hz * (1 + dev_low), info.high_hz * (1 + dev_high), ms, low_dbm0, high, rate, phases
    )


def silence(ms: float, rate: int = 8000) -> F64:
    return np.zeros(round(rate * ms / 1000))


def join(parts: list[F64]) -> F64:
    return np.concatenate(parts) if parts else np.zeros(0)


def to_int16(x: F64) -> I16:
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


def ulaw_trip(x: I16) -> I16:
    return ulaw_decode(ulaw_encode(x))


def alaw_trip(x: I16) -> I16:
    return alaw_decode(alaw_encode(x))


def tone_power(level_dbm0: float) -> float:
    """Mean power (int16 units squared) of a sine at ``level_dbm0``."""
    return float(dbm0_to_peak(level_dbm0) ** 2 / 2)


def white_noise(n: int, power: float, seed: int) -> F64:
    """Gaussian white noise of mean power ``power`` (int16 units squared)."""
    return np.random.default_rng(seed).normal(0.0, np.sqrt(power), n)


def dial_tone(n: int, level_dbm0: float, rate: int = 8000) -> F64:
    """Continuous North American dial tone, 350 + 440 Hz, ``level_dbm0`` per tone."""
    t = np.arange(n) / rate
    a = dbm0_to_peak(level_dbm0)
    return a * (np.sin(2 * np.pi * 350 * t) + np.sin(2 * np.pi * 440 * t + 1.0))
