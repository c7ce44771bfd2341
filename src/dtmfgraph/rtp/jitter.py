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

Cost. This runs once per audio packet of every call, so the usual case is kept cheap: a packet
in order costs a few dictionary operations and comparisons (no numpy: the transit window is a
plain list, its minimum and maximum re-read every :data:`_ADAPT_EVERY` packets), and the next
play-out time is kept in :attr:`JitterBuffer.due` for the caller's clock to read.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from math import inf
from typing import Final, NamedTuple

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
_BLOCKS: Final = WINDOW // _ADAPT_EVERY
_played = tuple.__new__
"""``Played(...)`` without its Python-level ``__new__`` (half the cost, once per packet)."""


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
        self.due = inf
        """When the next stretch is due (:meth:`next_deadline`; ``inf``: nothing held)."""
        self.stats = JitterStats()
        self._held: dict[int, tuple[int, bytes]] = {}
        """Extended timestamp -> (extended sequence number, payload)."""
        self._next = 0
        """Extended timestamp of the next sample to play (once started)."""
        self._next_seq = 0
        self._top_seq: int | None = None
        """Highest extended sequence number seen (``None``: not started)."""
        self._other: set[int] = set()
        """Extended sequence numbers ahead of the play-out that carried no audio (RFC 4733)."""
        self._transits = [0.0] * WINDOW
        self._lows = [0.0] * _BLOCKS
        self._highs = [0.0] * _BLOCKS
        """Least and greatest transit time of each :data:`_ADAPT_EVERY` packets of the window."""
        self._count = 0
        self._base = 0.0

    def restart(self) -> None:
        """Forget the stream (a new source follows); the delay and the counts stay."""
        self._held.clear()
        self._top_seq = None
        self.due = inf

    # -- input ------------------------------------------------------------------------------
    def put(self, seq: int, ts: int, payload: bytes, arrival: float) -> None:
        """Take one audio packet (16-bit ``seq``, 32-bit ``ts``) that arrived at ``arrival``."""
        stats = self.stats
        stats.packets += 1
        if not payload:
            return
        top = self._top_seq
        if top is None:
            self._start(seq, ts, arrival)
            top = seq
        nxt = self._next
        xseq = top + (((seq - top + 0x8000) & 0xFFFF) - 0x8000)
        xts = nxt + (((ts - nxt + 0x80000000) & 0xFFFFFFFF) - 0x80000000)
        if not -MAX_GAP <= xts - nxt <= MAX_GAP + CLOCK_RATE:  # the sender restarted
            stats.restarts += 1
            self._held.clear()
            self._start(seq, ts, arrival)
            xseq, xts, top = seq, ts, seq
        held = self._held
        if xts in held:
            stats.duplicate += 1
            return
        if xseq < top:
            stats.reordered += 1
        else:
            self._top_seq = xseq
        # the transit time: move the base and the delay
        transit = arrival - xts / CLOCK_RATE
        count = self._count
        self._count = count + 1
        if count:
            self._transits[count % WINDOW] = transit
            base = self._base
            if transit < base:  # a faster packet: everything is due earlier
                self._base = transit
            need = transit - self._base + _MARGIN
            if need > self.delay:  # grow at once
                self.delay = min(need, self.max_delay)
                if (count + 1) % _ADAPT_EVERY == 0:
                    self._summarise()
            elif (count + 1) % _ADAPT_EVERY == 0:
                self._summarise()
                self._adapt(base)
        else:
            self._transits[:] = [transit] * WINDOW
            self._base = transit
        if xts < self._next:
            stats.late += 1
        else:
            held[xts] = (xseq, payload)
            if len(held) > MAX_HELD:
                del held[min(held)]
                stats.late += 1
        self.due = self._base + self._next / CLOCK_RATE + self.delay if held else inf

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

    def _summarise(self) -> None:
        """The last :data:`_ADAPT_EVERY` transit times are in: note their least and greatest."""
        i = (self._count - _ADAPT_EVERY) % WINDOW
        block = self._transits[i : i + _ADAPT_EVERY]
        self._lows[i // _ADAPT_EVERY] = min(block)
        self._highs[i // _ADAPT_EVERY] = max(block)

    def _adapt(self, base: float) -> None:
        """Every :data:`_ADAPT_EVERY` packets: shrink the delay towards the window's spread, move
        the base up slowly (``base``: before this packet)."""
        blocks = min(self._count, WINDOW) // _ADAPT_EVERY  # (the window is whole blocks)
        low = min(self._lows[:blocks])
        target = max(self._highs[:blocks]) - low + _MARGIN
        target = min(max(target, self.min_delay), self.max_delay)
        if target < self.delay:
            self.delay = max(target, self.delay - _SHRINK)
        # a path that got slower, never past the fastest seen
        self._base = min(low, base + _SHRINK)

    # -- output -----------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        """When the next stretch is due (``None``: nothing held)."""
        due = self.due
        return None if due == inf else due

    def pop(self, now: float) -> list[Played]:
        """The stretches due by ``now``, in order."""
        out: list[Played] = []
        held = self._held
        if not held or self.due > now + 1e-9:
            return out
        limit = now + 1e-9
        base, delay, stats = self._base, self.delay, self.stats
        while held:
            nxt = self._next
            at = base + nxt / CLOCK_RATE
            if at + delay > limit:
                break
            item = held.pop(nxt, None)
            if item is None:
                out.append(self._gap(nxt, at))
                continue
            seq, payload = item  # the usual case, inline
            n = len(payload)
            self._next = nxt + n
            self._next_seq = seq + 1
            stats.played += 1
            out.append(_played(Played, (n, payload, False, None, at)))
        self.due = base + self._next / CLOCK_RATE + delay if held else inf
        return out

    def pop_ahead(self, samples: int) -> list[Played]:
        """Up to ``samples`` (rounded up to whole packets) of the packets held in order at the
        head, before they are due: for a consumer on its own clock that is running short (a
        detector bank). A gap is never released early: its packets may still come."""
        out: list[Played] = []
        held = self._held
        while samples > 0 and self._next in held:
            item = self._take()
            samples -= item.samples
            out.append(item)
        if out:
            self._redue()
        return out

    def flush(self) -> list[Played]:
        """Everything held, gaps and all (the stream ended)."""
        out: list[Played] = []
        while self._held:
            out.append(self._take())
        self.due = inf
        return out

    def _redue(self) -> None:
        self.due = self._base + self._next / CLOCK_RATE + self.delay if self._held else inf

    def _take(self) -> Played:
        nxt = self._next
        at = self._base + nxt / CLOCK_RATE
        held = self._held.pop(nxt, None)
        if held is not None:
            seq, payload = held
            self._next = nxt + len(payload)
            self._next_seq = seq + 1
            self.stats.played += 1
            return _played(Played, (len(payload), payload, False, None, at))
        return self._gap(nxt, at)

    def _gap(self, nxt: int, at: float) -> Played:
        """The gap at ``nxt`` (nothing held there) up to the next packet held."""
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
        self.stats.concealed += missing
        return Played(gap, None, lost=True, after=payload, at=at)
