"""The media load gauge and the admission it drives (sans-I/O: every time is an argument)."""

from __future__ import annotations

import logging

import pytest

from dtmfgraph.media_load import MediaLoad, Overload
from dtmfgraph.refusals import MEDIA_LOAD, Refusals
from dtmfgraph.service.admission import OVERLOAD_RETRY_AFTER_S, Admission, AdmissionConfig


def _run(load: MediaLoad, start: float, seconds: float, lateness: float, tick: float = 0.001):
    """A pacer waking every ``tick`` for ``seconds``, each wake-up ``lateness`` late."""
    n = round(seconds / tick)
    for k in range(1, n + 1):
        load.observe(lateness, start + k * tick)
    return start + n * tick


def test_steady_lateness_shows_fully_and_on_time_shows_zero() -> None:
    load = MediaLoad()
    assert load.level(0.0) == 0.0  # nothing observed yet
    t = _run(load, 0.0, 10.0, 0.0)
    assert load.level(t) == 0.0
    t = _run(load, t, 10.0, 0.008)
    assert load.level(t) == pytest.approx(0.008, rel=0.01)
    t = _run(load, t, 10.0, 0.0005)
    assert load.level(t) == pytest.approx(0.0005, rel=0.05)


def test_a_stall_weighs_its_length_not_one_wake_up() -> None:
    load = MediaLoad()
    t = _run(load, 0.0, 5.0, 0.0)
    load.observe(0.05, t + 0.05)  # one 50 ms pause: a small bump
    small = load.level(t + 0.05)
    assert 0.001 < small < 0.005
    load = MediaLoad()
    t = _run(load, 0.0, 5.0, 0.0)
    load.observe(0.3, t + 0.3)  # one 300 ms stall: well past a few ms
    assert load.level(t + 0.3) > 0.05


def test_a_wake_up_after_a_quiet_pause_says_nothing_about_the_pause() -> None:
    load = MediaLoad()
    t = _run(load, 0.0, 5.0, 0.02)  # loaded, then nothing to pace for 60 s
    assert load.level(t) == pytest.approx(0.02, rel=0.01)
    assert load.level(t + 60.0) < 0.001  # nothing runs: nothing is late
    load.observe(0.0005, t + 60.0)  # the next call's first wake-up, on time
    assert load.level(t + 60.0) < 0.02  # decays rather than jumping back


def test_overload_has_hysteresis_and_reports_each_episode_once() -> None:
    gate = Overload(0.010)
    assert gate.low == 0.005
    assert gate.check(0.009, 1.0) == (False, None)
    over, started = gate.check(0.011, 2.0)
    assert over and started is not None and started.started == 2.0
    assert gate.check(0.020, 3.0) == (True, None)
    assert gate.check(0.006, 4.0) == (True, None)  # under high, not yet under low
    over, ended = gate.check(0.004, 5.0)
    assert not over and ended is started and ended.peak == 0.020
    assert gate.check(0.009, 6.0) == (False, None)
    with pytest.raises(ValueError):
        Overload(0.0)
    with pytest.raises(ValueError):
        Overload(0.01, 0.02)


def test_admission_refuses_new_calls_first_then_media_operations(
    caplog: pytest.LogCaptureFixture,
) -> None:
    load = MediaLoad()
    refusals = Refusals(logging.getLogger("test.admission"))
    admission = Admission(
        AdmissionConfig(new_calls_ms=5, media_ops_ms=20),
        refusals,
        lambda: load,
        logging.getLogger("test.admission"),
    )
    with caplog.at_level(logging.WARNING, "test.admission"):
        t = _run(load, 0.0, 5.0, 0.001)
        assert admission.new_call(t) is None and admission.media_operation(t) is None
        t = _run(load, t, 5.0, 0.010)  # 10 ms late: new calls refused, operations served
        refused = admission.new_call(t)
        assert refused is not None and refused.retry_after_s == OVERLOAD_RETRY_AFTER_S
        assert "ms late on average (overload_new_calls_ms=5 ms)" in str(refused)
        assert admission.new_call(t) is not None
        assert admission.media_operation(t) is None
        t = _run(load, t, 5.0, 0.030)  # 30 ms: operations refused too
        assert admission.media_operation(t) is not None
        assert admission.new_call(t) is not None
        t = _run(load, t, 10.0, 0.0005)  # back to normal
        assert admission.new_call(t) is None and admission.media_operation(t) is None
    assert refusals.counts[MEDIA_LOAD] == 4
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 4, messages  # two episodes, each logged at its start and its end
    assert messages[0].startswith("media overloaded") and "refusing new calls" in messages[0]
    assert messages[1].startswith("media overloaded") and "new media operations" in messages[1]
    assert "3 new calls refused" in messages[2] or "3 new calls refused" in messages[3]


def test_no_media_clock_or_a_zero_level_refuses_nothing() -> None:
    refusals = Refusals(logging.getLogger("test.admission"))
    log = logging.getLogger("test.admission")
    assert Admission(AdmissionConfig(), refusals, lambda: None, log).new_call(1.0) is None
    load = MediaLoad()
    _run(load, 0.0, 5.0, 0.5)
    off = Admission(AdmissionConfig(new_calls_ms=0, media_ops_ms=0), refusals, lambda: load, log)
    assert off.new_call(5.0) is None and off.media_operation(5.0) is None
    assert off.level(5.0) == pytest.approx(0.5, rel=0.01)
