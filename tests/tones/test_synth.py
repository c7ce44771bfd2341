"""DTMF synthesis: exact frequencies, dBm0 levels, twist, fades, rates, streaming frames."""

import numpy as np
import pytest

from dtmfgraph.tones import (
    KEYS,
    NoTonePairError,
    SynthesisError,
    UnknownKeyError,
    dbm0_to_peak,
    synthesize,
    synthesize_frames,
)

RATES = [8000, 16000, 44100, 48000]


def amplitudes(x: np.ndarray, freqs: tuple[float, float], rate: int) -> tuple[float, float]:
    """Peak amplitudes of the sinusoids at ``freqs``, fitted jointly by least squares."""
    coef = _coefficients(x, freqs, rate)
    return float(np.hypot(*coef[:2])), float(np.hypot(*coef[2:]))


def _basis(n: int, freqs: tuple[float, ...], rate: int) -> np.ndarray:
    t = np.arange(n) / rate
    return np.concatenate(
        [np.stack([np.sin(2 * np.pi * f * t), np.cos(2 * np.pi * f * t)], 1) for f in freqs], 1
    )


def _coefficients(x: np.ndarray, freqs: tuple[float, ...], rate: int) -> np.ndarray:
    coef, *_ = np.linalg.lstsq(_basis(len(x), freqs, rate), x.astype(float), rcond=None)
    return coef


def steady(x: np.ndarray, rate: int) -> np.ndarray:
    """The tone without its 1 ms fade-in and 2 ms fade-out."""
    return x[rate * 3 // 1000 : len(x) - rate * 3 // 1000]


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("key", list(KEYS))
def test_each_key_is_exactly_its_two_q23_tones(key: str, rate: int) -> None:
    x = steady(synthesize(key, rate=rate, tone_ms=200, level_dbm0=-10, twist_db=0), rate)
    entry = KEYS[key]
    peak = dbm0_to_peak(-10)
    low, high = amplitudes(x, (entry.low_hz, entry.high_hz), rate)
    assert low == pytest.approx(peak, rel=1e-3) and high == pytest.approx(peak, rel=1e-3)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    top2 = sorted(freqs[np.argsort(spectrum)[-2:]])
    bin_hz = rate / len(x)
    assert abs(top2[0] - entry.low_hz) <= bin_hz and abs(top2[1] - entry.high_hz) <= bin_hz
    residual = x - _fit(x, (entry.low_hz, entry.high_hz), rate)
    assert np.sqrt(np.mean(residual**2)) < 1.0  # nothing but the two tones (and rounding)


def _fit(x: np.ndarray, freqs: tuple[float, ...], rate: int) -> np.ndarray:
    return _basis(len(x), freqs, rate) @ _coefficients(x, freqs, rate)


@pytest.mark.parametrize(
    ("level", "twist"), [(-3.5, 0.0), (-4.0, 2.0), (-10.0, 2.0), (-36.0, -4.0), (-20, 3.0)]
)
def test_levels_in_dbm0_and_twist(level: float, twist: float) -> None:
    x = steady(synthesize("5", tone_ms=300, level_dbm0=level, twist_db=twist), 8000)
    low, high = amplitudes(x, (770, 1336), 8000)
    assert 20 * np.log10(low / 22786) == pytest.approx(level, abs=0.05)
    assert 20 * np.log10(high / low) == pytest.approx(twist, abs=0.05)


def test_zero_dbm0_sine_peak_is_22786() -> None:
    assert dbm0_to_peak(0) == 22786
    assert dbm0_to_peak(3.14) == pytest.approx(32767, rel=3e-3)


@pytest.mark.parametrize("rate", RATES)
def test_layout_tone_gap_tone_and_lengths(rate: int) -> None:
    x = synthesize("159#*D", rate=rate, tone_ms=70, gap_ms=60)
    n_tone, n_gap = round(rate * 0.07), round(rate * 0.06)
    assert x.dtype == np.int16 and x.ndim == 1
    assert len(x) == 6 * n_tone + 5 * n_gap
    for i in range(5):
        gap = x[(i + 1) * n_tone + i * n_gap : (i + 1) * (n_tone + n_gap)]
        assert not gap.any()
    tone = x[:n_tone]
    assert np.abs(tone).max() > 10000


def test_fades_are_1ms_in_and_2ms_out() -> None:
    x = synthesize("1", tone_ms=50, level_dbm0=-4, twist_db=0).astype(float)
    env = np.abs(x)
    assert env[0] < 0.1 * env.max()  # starts near silence
    assert np.abs(x[:8]).max() <= np.abs(x[8:40]).max()  # ramping for 1 ms (8 samples)
    tail = np.abs(x[-16:])  # 2 ms
    assert tail[-1] < 0.02 * env.max()
    assert tail[:4].max() > tail[-4:].max()


def test_all_sixteen_keys_and_lowercase() -> None:
    assert np.array_equal(synthesize("abcd"), synthesize("ABCD"))
    assert len(synthesize("0123456789*#ABCD", tone_ms=50, gap_ms=50)) == 16 * 400 + 15 * 400


def test_flash_cannot_be_synthesised() -> None:
    with pytest.raises(NoTonePairError, match="flash"):
        synthesize("1F2")
    with pytest.raises(NoTonePairError, match="flash"):
        next(synthesize_frames("F"))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rate": 3000}, "rate"),
        ({"rate": 8000.5}, "rate"),
        ({"tone_ms": 0}, "tone_ms"),
        ({"gap_ms": -1}, "gap_ms"),
        ({"level_dbm0": -2.5, "twist_db": 0.0}, "full scale"),
        ({"level_dbm0": -4.0, "twist_db": 2.5}, "full scale"),
    ],
)
def test_bad_parameters_raise_synthesis_error(kwargs: dict, match: str) -> None:
    with pytest.raises(SynthesisError, match=match):
        synthesize("1", **kwargs)


def test_bad_keys_raise() -> None:
    with pytest.raises(UnknownKeyError):
        synthesize("12x")
    with pytest.raises(UnknownKeyError):
        synthesize("")


@pytest.mark.parametrize("frame", [160, 320, 7, 1])
def test_frames_stream_the_same_audio(frame: int) -> None:
    kwargs = {"tone_ms": 90, "gap_ms": 65, "level_dbm0": -7.0, "twist_db": 1.5}
    whole = synthesize("1#9D", **kwargs)
    frames = list(synthesize_frames("1#9D", frame=frame, **kwargs))
    assert all(len(f) == frame and f.dtype == np.int16 for f in frames)
    joined = np.concatenate(frames)
    expected = np.concatenate([whole, np.zeros(round(8000 * 0.065), np.int16)])
    assert np.array_equal(joined[: len(expected)], expected)
    assert not joined[len(expected) :].any() and len(joined) - len(expected) < frame


def test_frames_without_trailing_gap() -> None:
    whole = synthesize("12", tone_ms=100, gap_ms=100)
    joined = np.concatenate(list(synthesize_frames("12", trailing_gap=False)))
    assert np.array_equal(joined, whole)  # 2 * 800 + 800 samples = 15 frames exactly
