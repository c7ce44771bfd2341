"""ReapGuard: a node ends other nodes' calls only once it has itself beaten steadily for a
lease, so a storage outage longer than the lease (every node's heartbeat stopped) does not
make the first node back declare all the others dead."""

from __future__ import annotations

from dtmfgraph.service.lease import ReapGuard


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _beat_every(guard: ReapGuard, clock: Clock, step: float, times: int) -> list[bool]:
    """Beat ``times`` times, ``step`` s apart; whether reaping was allowed after each."""
    allowed = []
    for _ in range(times):
        clock.t += step
        guard.beat_ok()
        allowed.append(guard.may_reap())
    return allowed


def test_reaps_from_the_start_while_beats_go_through() -> None:
    clock = Clock()
    guard = ReapGuard(5.0, clock)
    assert guard.may_reap()
    assert _beat_every(guard, clock, 1.0, 10) == [True] * 10


def test_after_failed_beats_waits_a_lease_of_good_beats() -> None:
    clock = Clock()
    guard = ReapGuard(5.0, clock)
    for _ in range(20):  # a 20 s outage
        clock.t += 1.0
        guard.beat_failed()
        assert not guard.may_reap()
    # back: the first good beat starts the count; a lease later, reaping again
    assert _beat_every(guard, clock, 1.0, 7) == [False] * 5 + [True] * 2


def test_a_beat_that_took_a_lease_counts_as_an_outage() -> None:
    """No beat failed, but none went through for a lease (the store hung): same as an outage."""
    clock = Clock()
    guard = ReapGuard(5.0, clock)
    _beat_every(guard, clock, 1.0, 3)
    clock.t += 6.0
    guard.beat_ok()
    assert not guard.may_reap()
    assert _beat_every(guard, clock, 1.0, 5) == [False] * 4 + [True]
