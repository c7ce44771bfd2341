"""The Q.24 conformance rows (tests/tones/q24_rows.py) against our detector."""

from __future__ import annotations

import pytest

from . import q24_rows as q

FAST_ROWS = [r for r in q.ROWS if r.id not in ("talkoff", "timing")]


@pytest.mark.parametrize("row", FAST_ROWS, ids=[r.id for r in FAST_ROWS])
def test_row(row: q.Row) -> None:
    outcome = q.judge(row, row.cases(), lambda x: "".join(e.key for e in q.ours(x)))
    assert outcome.passed, f"{row.check}: must be {row.must}; got {outcome.detail}"


def test_timing_within_15_ms() -> None:
    outcome = q.judge_timing(q.row_timing())
    assert outcome.passed, outcome.detail


def test_timing_of_every_row_with_truth() -> None:
    """Start/end within +/-15 ms wherever a row knows the truth and the keys came out right."""
    worst = 0.0
    for row in (
        q.ROW_BY_ID[i] for i in ("keys", "freq_accept", "twist_accept", "noise", "dial_tone")
    ):
        for case in row.cases():
            if not case.truth:
                continue
            events = q.ours(case.signal)
            assert "".join(e.key for e in events) == case.expect, case.name
            worst = max([worst, *map(abs, q.timing_errors(events, case.truth))])
    assert worst <= q.TIMING_TOLERANCE, f"worst timing error {worst * 1000:.1f} ms"


def test_noise_margin() -> None:
    """>= 99 % of the digits at 10 dB S/N (Q.24 asks for 15 dB)."""
    assert q.snr_fraction(lambda x: "".join(e.key for e in q.ours(x)), 10.0) >= 0.99


def test_levels_are_reported() -> None:
    """level_dbm0 is the mean per-tone level: -10/-8 dBm0 tones give about -9 dBm0."""
    case = q.row_keys()[3]  # -10 dBm0 low, -8 dBm0 high, linear
    levels = [e.level_dbm0 for e in q.ours(case.signal)]
    assert len(levels) == 160
    assert all(-9.6 <= lv <= -8.4 for lv in levels), (min(levels), max(levels))
