"""An adaptive jitter buffer for one incoming audio stream (sans-I/O).

:class:`JitterBuffer` takes audio packets as they arrive (:meth:`JitterBuffer.put`) and plays
them out in timestamp order (:meth:`JitterBuffer.pop`), each at ``base + timestamp + delay`` on
the arrival clock: ``base`` is the earliest transit time (arrival less media time) of the last
:data:`WINDOW` packets, and ``delay`` the spread of their transit times (the largest less the
smallest) plus 5 ms, held within ``min_delay``..``max_delay`` (defaults :data:`MIN_DELAY`,
:data:`MAX_DELAY`; first :data:`INITIAL_DELAY`). The delay grows at once when a packet needs it
and shrinks by at most 1 ms per 16 packets, so audio is neither cut nor crowded: the delay only
changes *when* frames are released, never which samples follow which.

What comes out is a list of :class:`Played` stretches: a packet's payload, or a gap. A gap
whose sequence numbers are missing is **lost** (to be concealed; the packet after it is given
as ``after`` when held, for concealment from both sides); a gap in timestamps only (a sender
that paused its audio, as during RFC 4733 events, whose packets take the audio's sequence
numbers: :meth:`JitterBuffer.skip`) is not. Nothing is released while nothing is
held: a silent sender, or a burst being lost, holds the play-out until the next packet comes.

Counts (:class:`JitterStats`): packets ``late`` (came after their place was played),
``reordered`` (came after a later sequence number), ``duplicate``, and ``concealed`` (packets'
worth of audio played as a gap that was lost).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Final, NamedTuple

import numpy as np

from .codec import CLOCK_RATE

MIN_DELAY: Final = 0.02
"""Least play-out delay, seconds (one 20 ms packet: the next packet is there for concealment)."""
MAX_DELAY: Final = 0.12
"""Greatest play-out delay, seconds: covers 60 ms of jitter with reordering twice over."""
INITIAL_DELAY: Final = 0.04
"""Play-out delay before the jitter has been measured."""
WINDOW: Final = 128
"""Packets whose transit times set the delay (about 2.5 s at 20 ms)."""
MAX_HELD: Final = 64
"""Packets held at most; a flood beyond it drops the oldest (counted as late)."""
MAX_GAP: Final = CLOCK_RATE
"""A timestamp jump beyond this (1 s) restarts the play-out instead of filling a gap."""
MAX_SKIPPED: Final = 256
"""Sequence numbers of non-audio packets remembered ahead of the play-out."""
_MARGIN: Final = 0.005
_SHRINK: Final = 0.001
_ADAPT_EVERY: Final = 16


class Played(NamedTuple):
    """A stretch of audio due for play-out: a packet's ``payload``, or a gap of ``samples``."""

    samples: int
    payload: bytes | None
    lost: bool = False
    """A gap of missing packets (conceal it); else a gap the sender left (silence)."""
    after: bytes | None = None
    """For a gap: the payload that follows it, when held."""
    at: float = 0.0
    """When it would have arrived with no jitter (``base`` + its media time)."""


@dataclass(slots=True)
class JitterStats:
    """Counters of a :class:`JitterBuffer`."""

    packets: int = 0
    """Packets given to :meth:`JitterBuffer.put`."""
    played: int = 0
    """Packets played out."""
    late: int = 0
    """Packets that came after their place had been played (or pushed out by a flood)."""
    reordered: int = 0
    """Packets that came after one with a later sequence number."""
    duplicate: int = 0
    """Packets already held (the caller drops those already played: their sequence numbers
    tell)."""
    concealed: int = 0
    """Packets' worth of audio lost and played as a concealed gap."""
    restarts: int = 0
    """Timestamp jumps that restarted the play-out."""

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class JitterBuffer:
    """Adaptive play-out buffer of one audio stream (one SSRC). Times in seconds."""

    def __init__(
        self,
        *,
        min_delay: float = MIN_DELAY,
        max_delay: float = MAX_DELAY,
        initial_delay: float = INITIAL_DELAY,
    ) -> None:
        if not 0 <= min_delay <= max_delay:
            raise ValueError("need 0 <= min_delay <= max_delay")
        self.min_delay = min_delay
        self.max_delay = max_delay
        self.delay = min(max(initial_delay, min_delay), max_delay)
        """The current play-out delay (seconds)."""
        self.stats = JitterStats()
        self._held: dict[int, tuple[int, bytes]] = {}
        """Extended timestamp -> (extended sequence number, payload)."""
        self._next: int | None = None
        """Extended timestamp of the next sample to play."""
        self._next_seq = 0
        self._top_seq: int | None = None
        self._frame = 160
        self._other: set[int] = set()
        """Extended sequence numbers ahead of the play-out that carried no audio (RFC 4733)."""
        self._transits = np.zeros(WINDOW)
        self._count = 0
        self._base = 0.0

    def restart(self) -> None:
        """Forget the stream (a new source follows); the delay and the counts stay."""
        self._held.clear()
        self._next = None
        self._top_seq = None

    # -- input ------------------------------------------------------------------------------
    def put(self, seq: int, ts: int, payload: bytes, arrival: float) -> None:
        """Take one audio packet (16-bit ``seq``, 32-bit ``ts``) that arrived at ``arrival``."""
        stats = self.stats
        stats.packets += 1
        if not payload:
            return
        if self._top_seq is None or self._next is None:
            self._start(seq, ts, arrival)
        assert self._top_seq is not None and self._next is not None
        xseq = self._top_seq + (((seq - self._top_seq + 0x8000) & 0xFFFF) - 0x8000)
        xts = self._next + (((ts - self._next + 0x80000000) & 0xFFFFFFFF) - 0x80000000)
        if not -MAX_GAP <= xts - self._next <= MAX_GAP + CLOCK_RATE:  # the sender restarted
            stats.restarts += 1
            self._held.clear()
            self._start(seq, ts, arrival)
            xseq, xts = seq, ts
        if xts in self._held:
            stats.duplicate += 1
            return
        if xseq < self._top_seq:
            stats.reordered += 1
        else:
            self._top_seq = xseq
        self._measure(arrival - xts / CLOCK_RATE)
        if xts < self._next:
            stats.late += 1
            return
        self._frame = len(payload)
        self._held[xts] = (xseq, payload)
        if len(self._held) > MAX_HELD:
            oldest = min(self._held)
            del self._held[oldest]
            stats.late += 1

    def skip(self, seq: int) -> None:
        """Sequence number ``seq`` of this stream carried something else (a telephone-event):
        a gap over it is no loss."""
        top = self._top_seq
        if top is None:
            return
        xseq = top + (((seq - top + 0x8000) & 0xFFFF) - 0x8000)
        if xseq >= self._next_seq and len(self._other) < MAX_SKIPPED:
            self._other.add(xseq)

    def _start(self, seq: int, ts: int, arrival: float) -> None:
        self._top_seq = seq
        self._next = ts
        self._next_seq = seq
        self._count = 0
        self._base = arrival - ts / CLOCK_RATE
        self._other.clear()

    def _measure(self, transit: float) -> None:
        """Track the transit times; move the base and the delay."""
        i = self._count % WINDOW
        self._count += 1
        if self._count == 1:
            self._transits[:] = transit
            self._base = transit
            return
        self._transits[i] = transit
        base = self._base
        if transit < base:  # a faster packet: everything is due earlier
            self._base = transit
        need = transit - self._base + _MARGIN
        if need > self.delay:  # grow at once
            self.delay = min(need, self.max_delay)
        elif self._count % _ADAPT_EVERY == 0:  # vectorised over the window
            seen = self._transits[: min(self._count, WINDOW)]
            low = float(seen.min())
            target = float(seen.max()) - low + _MARGIN
            target = min(max(target, self.min_delay), self.max_delay)
            if target < self.delay:
                self.delay = max(target, self.delay - _SHRINK)
            # move the base up slowly (a path that got slower), never past the fastest seen
            self._base = min(low, base + _SHRINK)

    # -- output -----------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        """When the next stretch is due (``None``: nothing held)."""
        if not self._held or self._next is None:
            return None
        return self._base + self._next / CLOCK_RATE + self.delay

    def pop(self, now: float) -> list[Played]:
        """The stretches due by ``now``, in order."""
        out: list[Played] = []
        while self._held and self._next is not None:
            due = self._base + self._next / CLOCK_RATE + self.delay
            if due > now + 1e-9:
                break
            out.append(self._take())
        return out

    def pop_ahead(self, samples: int) -> list[Played]:
        """Up to ``samples`` (rounded up to whole packets) of the packets held in order at the
        head, before they are due: for a consumer on its own clock that is running short (a
        detector bank). A gap is never released early: its packets may still come."""
        out: list[Played] = []
        held = self._held
        while samples > 0 and self._next is not None and self._next in held:
            item = self._take()
            samples -= item.samples
            out.append(item)
        return out

    def flush(self) -> list[Played]:
        """Everything held, gaps and all (the stream ended)."""
        out: list[Played] = []
        while self._held:
            out.append(self._take())
        return out

    def _take(self) -> Played:
        assert self._next is not None
        nxt = self._next
        at = self._base + nxt / CLOCK_RATE
        held = self._held.pop(nxt, None)
        stats = self.stats
        if held is not None:
            seq, payload = held
            self._next = nxt + len(payload)
            self._next_seq = seq + 1
            stats.played += 1
            return Played(len(payload), payload, False, None, at)
        later = min(self._held)
        seq, payload = self._held[later]
        gap = later - nxt
        missing = seq - self._next_seq
        self._next = later
        if self._other:
            missing -= sum(1 for s in range(self._next_seq, seq) if s in self._other)
            self._other = {s for s in self._other if s > seq}
        if missing <= 0:  # the sender skipped media time (or sent events): nothing was lost
            return Played(gap, None, at=at)
        stats.concealed += missing
        return Played(gap, None, lost=True, after=payload, at=at)
