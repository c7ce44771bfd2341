"""JitterBuffer: play-out order, delay, loss, lateness, reordering (sans-I/O, simulated time)."""

from __future__ import annotations

import random

import pytest

from dtmfgraph.rtp.jitter import INITIAL_DELAY, MAX_DELAY, JitterBuffer, Played

FRAME = 160


def _payload(k: int) -> bytes:
    return bytes([k % 256]) * FRAME


def _drain(jb: JitterBuffer, until: float, step: float = 0.005) -> list[Played]:
    out: list[Played] = []
    t = 0.0
    while t <= until:
        out += jb.pop(t)
        t += step
    return out


def test_in_order_audio_is_played_after_the_delay() -> None:
    jb = JitterBuffer()
    jb.put(1000, 8000, _payload(0), 1.0)
    assert jb.pop(1.0 + INITIAL_DELAY - 0.001) == []
    assert jb.next_deadline() == pytest.approx(1.0 + INITIAL_DELAY)
    (first,) = jb.pop(1.0 + INITIAL_DELAY)
    assert (first.samples, first.payload, first.lost, first.at) == (FRAME, _payload(0), False, 1.0)
    assert jb.next_deadline() is None  # nothing held


def test_reordered_packets_come_out_in_order() -> None:
    jb = JitterBuffer()
    order = [0, 2, 1, 3, 5, 4, 6]
    for i, k in enumerate(order):
        jb.put(k, k * FRAME, _payload(k), 0.02 * i + 0.001 * (k != i))
    played = jb.flush()
    assert [p.payload for p in played] == [_payload(k) for k in range(7)]
    assert jb.stats.reordered == 2 and jb.stats.concealed == 0


def test_a_lost_packet_is_a_lost_gap_with_the_next_payload() -> None:
    jb = JitterBuffer()
    for k in (0, 1, 3, 4):
        jb.put(k, k * FRAME, _payload(k), 0.02 * k)
    played = _drain(jb, 0.3)
    assert [(p.samples, p.lost) for p in played] == [
        (FRAME, False),
        (FRAME, False),
        (FRAME, True),
        (FRAME, False),
        (FRAME, False),
    ]
    assert played[2].after == _payload(3)
    assert jb.stats.concealed == 1
    jb.put(2, 2 * FRAME, _payload(2), 0.31)  # the lost one, much too late
    assert jb.stats.late == 1


def test_a_timestamp_gap_without_missing_sequence_numbers_is_not_a_loss() -> None:
    """A sender that stops its audio (RFC 4733 events in its place) loses nothing."""
    jb = JitterBuffer()
    jb.put(0, 0, _payload(0), 0.0)
    jb.put(1, 10 * FRAME, _payload(1), 0.2)
    played = jb.flush()
    assert [(p.samples, p.payload is None, p.lost) for p in played] == [
        (FRAME, False, False),
        (9 * FRAME, True, False),
        (FRAME, False, False),
    ]
    assert jb.stats.concealed == 0


def test_duplicates_are_counted_once() -> None:
    jb = JitterBuffer()
    jb.put(0, 0, _payload(0), 0.0)
    jb.put(0, 0, _payload(0), 0.001)
    assert jb.stats.duplicate == 1
    assert len(jb.flush()) == 1


def test_the_delay_follows_the_jitter_within_its_bounds() -> None:
    rng = random.Random(19)
    jb = JitterBuffer(min_delay=0.02, max_delay=0.1)
    for k in range(400):
        jb.put(k, k * FRAME, _payload(k), 0.02 * k + rng.uniform(0, 0.05))
        jb.pop(0.02 * k)
    assert 0.05 <= jb.delay <= 0.1
    calm = JitterBuffer(min_delay=0.02, max_delay=0.1)
    for k in range(400):
        calm.put(k, k * FRAME, _payload(k), 0.02 * k + rng.uniform(0, 0.002))
        calm.pop(0.02 * k)
    assert calm.delay < 0.03
    wild = JitterBuffer()
    for k in range(50):
        wild.put(k, k * FRAME, _payload(k), 0.02 * k + (0.5 if k % 7 == 3 else 0.0))
    assert wild.delay == MAX_DELAY


def test_with_enough_delay_jitter_loses_nothing() -> None:
    rng = random.Random(7)
    jb = JitterBuffer()
    arrivals = sorted((0.02 * k + rng.uniform(0, 0.06), k) for k in range(500))
    played: list[Played] = []
    for t, k in arrivals:
        played += jb.pop(t)
        jb.put(k, k * FRAME, _payload(k), t)
    played += jb.flush()
    real = [p.payload for p in played if p.payload is not None]
    assert jb.stats.late <= 3  # only while the delay first grows to the jitter
    assert len(real) == 500 - jb.stats.late
    assert real[-400:] == [_payload(k) for k in range(100, 500)]
    assert jb.stats.reordered > 50


def test_a_timestamp_jump_restarts_the_play_out() -> None:
    jb = JitterBuffer()
    jb.put(0, 0, _payload(0), 0.0)
    jb.put(1, 5 * 8000, _payload(1), 0.02)
    assert jb.stats.restarts == 1
    assert [p.payload for p in jb.flush()] == [_payload(1)]


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        JitterBuffer(min_delay=0.2, max_delay=0.1)


def test_pop_ahead_releases_only_what_is_held_in_order() -> None:
    jb = JitterBuffer()
    for k in (0, 1, 3):
        jb.put(k, k * FRAME, _payload(k), 0.0)
    assert [p.payload for p in jb.pop_ahead(2 * FRAME)] == [_payload(0), _payload(1)]
    assert jb.pop_ahead(FRAME) == []  # packet 2 may still come
    assert jb.stats.concealed == 0


def test_sequence_numbers_of_events_are_no_loss() -> None:
    jb = JitterBuffer()
    jb.put(0, 0, _payload(0), 0.0)
    for seq in (1, 2, 3):  # telephone-events in the audio's sequence space
        jb.skip(seq)
    jb.put(5, 5 * FRAME, _payload(5), 0.1)  # 4 was audio, and lost
    played = jb.flush()
    assert [(p.samples, p.lost) for p in played] == [
        (FRAME, False),
        (4 * FRAME, True),
        (FRAME, False),
    ]
    assert jb.stats.concealed == 1
