"""The Q.24 conformance rows, defined once for the tests and ``bench/detector_conformance.py``.

Each row builds 8 kHz int16 cases with the keys a conforming detector must report (``""``: none)
and, for the timing row, the true start/end of each tone. Signals are deterministic (seeded):
random lead-in silence moves every tone to a random offset against block boundaries, and every
tone starts with random phases.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from dtmfgraph.tones import KEYS, DigitEvent, detect

from . import signals as sg

ALL = "".join(KEYS)  # 0-9 * # A-D
I16 = npt.NDArray[np.int16]


@dataclass(frozen=True)
class Case:
    name: str
    signal: I16
    expect: str
    truth: list[tuple[str, float, float]] = field(default_factory=list)


@dataclass(frozen=True)
class Tone:
    """One tone of a test sequence (``dev_*`` relative; ``high_dbm0`` None: same as low)."""

    key: str
    ms: float
    low_dbm0: float = -10.0
    high_dbm0: float | None = -8.0
    dev_low: float = 0.0
    dev_high: float = 0.0
    gap_ms: float = 60.0
    dropout: tuple[float, float] | None = None  # (at_ms, ms) of silence inside the tone


def build(tones: list[Tone], seed: int, rate: int = 8000) -> tuple[npt.NDArray[np.float64], list]:
    """Float signal (int16 scale) and truth [(key, start_s, end_s)] for a tone sequence."""
    rng = np.random.default_rng(seed)
    parts = [sg.silence(rng.uniform(20, 80), rate)]
    t = len(parts[0])
    truth = []
    for tone in tones:
        x = sg.key_tone(
            tone.key, tone.ms, tone.low_dbm0, tone.high_dbm0, tone.dev_low, tone.dev_high,
            rate, (rng.uniform(0, 2 * np.pi), rng.uniform(0, 2 * np.pi)),
        )  # fmt: skip
        if tone.dropout is not None:
            a = round(tone.dropout[0] * rate / 1000)
            x[a : a + round(tone.dropout[1] * rate / 1000)] = 0.0
        truth.append((tone.key, t / rate, (t + len(x)) / rate))
        gap = sg.silence(tone.gap_ms + rng.uniform(0, 13), rate)
        parts += [x, gap]
        t += len(x) + len(gap)
    parts.append(sg.silence(100, rate))
    return sg.join(parts), truth


def case(name: str, tones: list[Tone], seed: int, expect: str | None = None) -> Case:
    x, truth = build(tones, seed)
    keys = "".join(t.key for t in tones) if expect is None else expect
    return Case(name, sg.to_int16(x), keys, truth)


def keys_x10(seed: int) -> str:
    rng = np.random.default_rng(seed)
    return "".join(rng.permutation(list(ALL * 10)))


# ---- the rows ---------------------------------------------------------------------------------


def row_keys() -> list[Case]:
    """All 16 keys x 10, 50 ms on / 50 ms off, -4 and -10 dBm0, linear / u-law / A-law."""
    out = []
    for level in (-4.0, -10.0):
        keys = keys_x10(int(-level))
        tones = [Tone(k, 50, level, level + 2, gap_ms=50) for k in keys]
        base = case(f"{level:g} dBm0", tones, seed=int(-level))
        out.append(base)
        out.append(Case(f"{level:g} dBm0 u-law", sg.ulaw_trip(base.signal), keys, base.truth))
        out.append(Case(f"{level:g} dBm0 A-law", sg.alaw_trip(base.signal), keys, base.truth))
    return out


def row_freq_accept() -> list[Case]:
    """Each tone, and both, off by +/-1.5 %: all 16 keys, every sign combination."""
    out = []
    for dev in (0.015, -0.015):
        out.append(
            case(f"low {dev:+.1%}", [Tone(k, 50, dev_low=dev, gap_ms=50) for k in ALL * 2], 11)
        )
        out.append(
            case(f"high {dev:+.1%}", [Tone(k, 50, dev_high=dev, gap_ms=50) for k in ALL * 2], 12)
        )
        for dev2 in (0.015, -0.015):
            tones = [Tone(k, 50, dev_low=dev, dev_high=dev2, gap_ms=50) for k in ALL * 2]
            out.append(case(f"both {dev:+.1%}/{dev2:+.1%}", tones, 13))
    return out


def row_freq_reject() -> list[Case]:
    """Either tone off by 3.5 %, 4.5 % or 6 % (both signs), or both by 3.5 %: never a digit."""
    out = []
    for dev in (0.035, -0.035, 0.045, -0.045, 0.06, -0.06):
        out.append(case(f"low {dev:+.1%}", [Tone(k, 100, dev_low=dev) for k in ALL], 21, ""))
        out.append(case(f"high {dev:+.1%}", [Tone(k, 100, dev_high=dev) for k in ALL], 22, ""))
    for dev, dev2 in ((0.035, 0.035), (0.035, -0.035), (-0.035, 0.035), (-0.035, -0.035)):
        tones = [Tone(k, 100, dev_low=dev, dev_high=dev2) for k in ALL]
        out.append(case(f"both {dev:+.1%}/{dev2:+.1%}", tones, 23, ""))
    return out


def row_twist_accept() -> list[Case]:
    """Low tone louder by 8 dB, high tone louder by 4 dB (two base levels): detected."""
    return [
        case("low +8 dB", [Tone(k, 50, -10, -18, gap_ms=50) for k in ALL * 2], 31),
        case("low +8 dB, loud", [Tone(k, 50, -3, -11, gap_ms=50) for k in ALL * 2], 32),
        case("high +4 dB", [Tone(k, 50, -14, -10, gap_ms=50) for k in ALL * 2], 33),
        case("high +4 dB, quiet", [Tone(k, 50, -24, -20, gap_ms=50) for k in ALL * 2], 34),
    ]


def row_twist_reject() -> list[Case]:
    """Low or high tone louder by 10 dB (and 12 dB): rejected."""
    return [
        case("low +10 dB", [Tone(k, 100, -10, -20) for k in ALL * 2], 35, ""),
        case("high +10 dB", [Tone(k, 100, -20, -10) for k in ALL * 2], 36, ""),
        case("low +12 dB", [Tone(k, 100, -6, -18) for k in ALL], 37, ""),
        case("high +12 dB", [Tone(k, 100, -18, -6) for k in ALL], 38, ""),
    ]


ACCEPT_LEVELS = (0.0, -6.0, -12.0, -20.0, -25.0, -30.0, -33.0, -36.0)
REJECT_LEVELS = (-55.0, -58.0, -65.0)


def row_level_accept() -> list[Case]:
    """Both tones at 0 .. -36 dBm0 each: detected."""
    return [
        case(f"{lv:g} dBm0", [Tone(k, 50, lv, lv, gap_ms=50) for k in ALL], 40 + i)
        for i, lv in enumerate(ACCEPT_LEVELS)
    ]


def row_level_reject() -> list[Case]:
    """Both tones at -55 dBm0 and below: never."""
    return [
        case(f"{lv:g} dBm0", [Tone(k, 100, lv, lv) for k in ALL * 2], 50 + i, "")
        for i, lv in enumerate(REJECT_LEVELS)
    ]


def row_duration_accept() -> list[Case]:
    """Tones of 40, 42 and 45 ms, all keys, 4 random offsets each: detected."""
    return [
        case(f"{ms:g} ms #{rep}", [Tone(k, ms, gap_ms=60) for k in ALL], 60 + 10 * rep + i)
        for i, ms in enumerate((40.0, 42.0, 45.0))
        for rep in range(4)
    ]


def row_duration_reject() -> list[Case]:
    """Tones of 23, 20, 15 and 10 ms, all keys, 4 random offsets each: never."""
    return [
        case(f"{ms:g} ms #{rep}", [Tone(k, ms, gap_ms=80) for k in ALL], 70 + 10 * rep + i, "")
        for i, ms in enumerate((23.0, 20.0, 15.0, 10.0))
        for rep in range(4)
    ]


def row_pause() -> list[Case]:
    """Two equal keys exactly 40 ms (and 45 ms) apart: two digits, every key, several offsets."""
    return [
        _exact_pairs(f"{pause:g} ms pause #{rep}", pause, 80 + rep)
        for rep in range(4)
        for pause in (40.0, 45.0)
    ]


def _exact_pairs(name: str, pause_ms: float, seed: int) -> Case:
    rng = np.random.default_rng(seed)
    parts = [sg.silence(rng.uniform(20, 80))]
    keys = ""
    for k in ALL:
        for _ in range(2):
            ph = (rng.uniform(0, 2 * np.pi), rng.uniform(0, 2 * np.pi))
            parts.append(sg.key_tone(k, 60, -10, -8, phases=ph))
            parts.append(sg.silence(pause_ms))
            keys += k
        parts.append(sg.silence(rng.uniform(60, 100)))
    return Case(name, sg.to_int16(sg.join(parts)), keys)


def row_dropout() -> list[Case]:
    """A 10 ms dropout inside a 100 ms tone, at 20 .. 70 ms: one digit, for every key."""
    return [
        case(f"dropout at {at:g} ms", [Tone(k, 100, dropout=(at, 10.0)) for k in ALL], 90 + i)
        for i, at in enumerate((20.0, 33.0, 45.0, 58.0, 70.0))
    ]


def noisy(snr_db: float, seed: int = 5) -> Case:
    """160 digits (-10/-8 dBm0, 50/50 ms) in white noise; S/N = both tones' power / noise power."""
    keys = keys_x10(seed)
    x, truth = build([Tone(k, 50, gap_ms=50) for k in keys], seed)
    power = sg.tone_power(-10.0) + sg.tone_power(-8.0)
    noise = sg.white_noise(len(x), power / 10 ** (snr_db / 10), seed)
    return Case(f"S/N {snr_db:g} dB", sg.to_int16(x + noise), keys, truth)


def row_noise() -> list[Case]:
    """White noise at S/N 15 dB (three noise seeds): every digit."""
    return [noisy(15.0, seed) for seed in (5, 6, 7)]


def row_dial_tone() -> list[Case]:
    """Dial tone 350 + 440 Hz, each 10 dB below the digit's tones, under 160 digits: every digit."""
    out = []
    for level in (-10.0, -25.0):
        keys = keys_x10(9)
        x, truth = build([Tone(k, 50, level, level, gap_ms=50) for k in keys], 9)
        x = x + sg.dial_tone(len(x), level - 10.0)
        out.append(Case(f"digits at {level:g} dBm0", sg.to_int16(x), keys, truth))
    return out


def row_timing() -> list[Case]:
    """Tones of 40, 60, 100 and 250 ms, all keys, random offsets: start/end within +/-15 ms."""
    return [
        case(f"{ms:g} ms", [Tone(k, ms, gap_ms=70) for k in ALL * 2], 100 + i)
        for i, ms in enumerate((40.0, 60.0, 100.0, 250.0))
    ]


def row_talkoff() -> list[Case]:
    """>= 30 minutes of espeak-ng speech and 8 minutes of instrument-like chords: no digit."""
    from . import talkoff

    speech = np.concatenate(talkoff.speech())
    return [Case("speech", speech, ""), Case("chords", talkoff.chords(), "")]


@dataclass(frozen=True)
class Row:
    id: str
    check: str
    must: str
    cases: Callable[[], list[Case]]
    timing: bool = False


ROWS: tuple[Row, ...] = (
    Row("keys", "16 keys x 10, 50/50 ms, -4 and -10 dBm0, linear/u-law/A-law",
        "160/160, no extras", row_keys),
    Row("freq_accept", "each tone and both off by +/-1.5 %", "detected every time",
        row_freq_accept),
    Row("freq_reject", "either tone off by +/-3.5, 4.5, 6 %, or both by 3.5 %", "never detected",
        row_freq_reject),
    Row("twist_accept", "low louder by 8 dB, high louder by 4 dB", "detected", row_twist_accept),
    Row("twist_reject", "low or high louder by 10 and 12 dB", "rejected", row_twist_reject),
    Row("level_accept", "0 to -36 dBm0 per tone", "detected", row_level_accept),
    Row("level_reject", "-55, -58, -65 dBm0 per tone", "never", row_level_reject),
    Row("duration_accept", "40, 42, 45 ms tones", "detected", row_duration_accept),
    Row("duration_reject", "23, 20, 15, 10 ms tones", "never", row_duration_reject),
    Row("pause", "40 and 45 ms pause between equal keys", "two digits", row_pause),
    Row("dropout", "10 ms dropout inside a 100 ms tone", "one digit", row_dropout),
    Row("noise", "white noise, S/N 15 dB", "every digit", row_noise),
    Row("dial_tone", "dial tone 350+440 Hz 10 dB below the digits", "every digit", row_dial_tone),
    Row("talkoff", ">= 30 min espeak-ng speech + 8 min instrument-like chords",
        "0 false digits", row_talkoff),
    Row("timing", "start and end of 40..250 ms tones", "within +/-15 ms", row_timing,
        timing=True),
)  # fmt: skip

ROW_BY_ID = {r.id: r for r in ROWS}


# ---- scoring ----------------------------------------------------------------------------------

TIMING_TOLERANCE = 0.015


@dataclass(frozen=True)
class Outcome:
    passed: bool
    detail: str


def ours(signal: I16) -> list[DigitEvent]:
    return detect(signal)


def matched(expect: str, got: str) -> int:
    """Digits of ``expect`` found in order in ``got``: the longest common subsequence."""
    if not expect or not got:
        return 0
    row = [0] * (len(got) + 1)
    for a in expect:
        prev_diag = 0
        for j, b in enumerate(got, 1):
            up = row[j]
            row[j] = prev_diag + 1 if a == b else max(row[j - 1], up)
            prev_diag = up
    return row[-1]


def timing_errors(events: list[DigitEvent], truth: list[tuple[str, float, float]]) -> list[float]:
    """Start and end errors (s) of each event against its truth (same count and keys assumed)."""
    out = []
    for e, (_, start, end) in zip(events, truth, strict=True):
        out += [e.start - start, e.end - end]
    return out


def judge(row: Row, cases: list[Case], run: Callable[[I16], str]) -> Outcome:
    """Run one detector (signal -> keys) on a row's cases; pass only if every case is exact."""
    bad = []
    expected = found = extra = 0
    for c in cases:
        got = run(c.signal)
        m = matched(c.expect, got)
        expected += len(c.expect)
        found += m
        extra += len(got) - m
        if got != c.expect:
            bad.append(c.name)
    detail = f"{found}/{expected} digits, {extra} extra" if expected else f"{extra} false digits"
    if bad:
        detail += f"; failed: {', '.join(bad[:4])}" + (" ..." if len(bad) > 4 else "")
    return Outcome(not bad, detail)


def judge_timing(cases: list[Case]) -> Outcome:
    errors: list[float] = []
    bad = []
    for c in cases:
        events = ours(c.signal)
        if "".join(e.key for e in events) != c.expect:
            bad.append(c.name)
            continue
        errors += timing_errors(events, c.truth)
    worst = max((abs(e) for e in errors), default=0.0)
    ok = not bad and worst <= TIMING_TOLERANCE
    detail = f"worst error {worst * 1000:.1f} ms over {len(errors)} edges"
    if bad:
        detail += f"; wrong keys: {', '.join(bad)}"
    return Outcome(ok, detail)


def snr_fraction(
    run: Callable[[I16], str], snr_db: float, seeds: tuple[int, ...] = (5, 6)
) -> float:
    """Share of digits found, minus extras, at ``snr_db`` (over ``seeds`` x 160 digits)."""
    total = score = 0
    for seed in seeds:
        c = noisy(snr_db, seed)
        got = run(c.signal)
        m = matched(c.expect, got)
        total += len(c.expect)
        score += m - (len(got) - m)
    return score / total


def lowest_snr(run: Callable[[I16], str], start: float = 15.0, step: float = 0.5) -> float:
    """Lowest S/N (dB, on a ``step`` grid going down from ``start``) with >= 99 % of digits."""
    snr = start
    while snr - step > -10 and snr_fraction(run, snr - step) >= 0.99:
        snr -= step
    return snr
