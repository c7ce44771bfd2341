"""How loaded the media is, measured where it hurts: how late the media clock runs (sans-I/O).

The pacer (:mod:`dtmfgraph.media.pacer`) wakes up at grid points; how long after its grid
point a wake-up runs is the event loop's lag as the media sees it: packets leave that late.
:class:`MediaLoad` keeps a time-weighted moving average of that lateness (time in as
arguments, no clock of its own), and :class:`Overload` turns a level into "over / not over"
with hysteresis, noting when an episode starts and ends. The service refuses new work while
it is over (see ``dtmfgraph.service.admission``).

Why lateness rather than CPU: it is what breaks calls (a key's packets bunched up, a far end's
jitter buffer overrun), it includes every cause (CPU, garbage collection, a blocking call,
another process on the core), and it costs nothing to measure (the pacer wakes up anyway).
"""

from __future__ import annotations

from dataclasses import dataclass

TAU_S = 1.0
"""Time constant of the moving average: a stall of ``x`` seconds moves the level by about
``x / (TAU_S + x)`` of the way to ``x``; a steady lateness shows fully after a few seconds."""
FRESH_S = 0.1
"""A level not refreshed for this long decays toward zero (nothing runs on the media clock:
nothing is late). The pacer wakes at least every 20 ms while any stream is up."""
SLOT_S = 0.02
"""One packet slot: a wake-up stands for at most its own lateness plus one slot of time (after
a pause with nothing to pace, the quiet time before it says nothing about lateness)."""


class MediaLoad:
    """Time-weighted moving average of the media clock's lateness, in seconds.

    :meth:`observe` each wake-up's lateness at ``now``; :meth:`level` reads it. A sample weighs
    the time it stands for (since the previous one, at most its lateness plus a slot), so a
    long stall counts for its length, not as one wake-up among thousands.
    """

    __slots__ = ("_at", "_level", "samples", "tau_s")

    def __init__(self, *, tau_s: float = TAU_S) -> None:
        if tau_s <= 0:
            raise ValueError(f"tau_s must be > 0, got {tau_s!r}")
        self.tau_s = tau_s
        self._level = 0.0
        self._at: float | None = None
        self.samples = 0

    def observe(self, lateness: float, now: float) -> None:
        """A wake-up due at ``now - lateness`` ran at ``now``."""
        at = self._at
        self._at = now
        self.samples += 1
        span = lateness + SLOT_S
        if at is not None and now - at < span:
            span = max(now - at, 0.0)
        weight = span / (self.tau_s + span)  # ~ 1 - exp(-span / tau), without the exp
        self._level += weight * (lateness - self._level)

    def level(self, now: float) -> float:
        """The average lateness at ``now`` (seconds), decayed if nothing ran for a while."""
        at = self._at
        if at is None:
            return 0.0
        quiet = now - at - FRESH_S
        if quiet <= 0:
            return self._level
        return self._level * self.tau_s / (self.tau_s + quiet)


@dataclass(slots=True)
class Episode:
    """One stretch of overload: when it began, its peak level and the work it refused."""

    started: float
    peak: float
    refused: int = 0


class Overload:
    """Hysteresis over a level: over from ``high`` up, back under only below ``low``.

    :meth:`check` returns whether the level at ``now`` is over; :attr:`episode` is the episode
    going on (``None`` when under). It tells the caller of each change, so each episode can be
    logged once at its start and once at its end.
    """

    __slots__ = ("episode", "high", "low")

    def __init__(self, high: float, low: float | None = None) -> None:
        if high <= 0:
            raise ValueError(f"high must be > 0, got {high!r}")
        self.high = high
        self.low = high / 2 if low is None else low
        if not 0 <= self.low <= high:
            raise ValueError(f"need 0 <= low <= high, got low={self.low!r} high={high!r}")
        self.episode: Episode | None = None

    def check(self, level: float, now: float) -> tuple[bool, Episode | None]:
        """Whether ``level`` is over, and the episode that started or ended with this check
        (``None`` when nothing changed)."""
        episode = self.episode
        if episode is None:
            if level < self.high:
                return False, None
            self.episode = Episode(now, level)
            return True, self.episode
        if level >= self.low:
            episode.peak = max(episode.peak, level)
            return True, None
        self.episode = None
        return False, episode


__all__ = ["FRESH_S", "SLOT_S", "TAU_S", "Episode", "MediaLoad", "Overload"]
