"""One clock for every RTP stream: a single timer on an absolute grid drives all of them.

The pacer's grid is ``origin + k * tick`` (1 ms by default). Every registered item sits in the
bucket of the grid point of its next deadline; one ``loop.call_at`` timer wakes the pacer at the
earliest non-empty bucket, which runs the items due and files each under its next deadline.
Deadlines are absolute (a stream computes frame ``k`` as ``start + k * ptime``), so nothing
drifts; when the pacer wakes late it runs everything due up to now at once (the streams return
every packet due) and goes on from the next grid point, so lag never accumulates.

New streams should start at :meth:`Pacer.start_time`: a grid point of the coming 20 ms that
already has streams but fewer than ``batch`` (32), else an empty one as far as can be from
those in use, else the least loaded one. A few streams
then share a few wake-ups (64 streams: 2 wake-ups per 20 ms, not 20: every wake-up costs the
event loop a timer, a turn and the kernel a context switch, some 60 µs on a virtual machine,
whatever it sends; and the far ends' answers come back together, read in one turn too), and
many spread evenly over the 20 ms period, each wake-up sending only its share of the packets:
with 1,000 streams, about 50 per millisecond instead of 1,000 at once. A wake-up's burst of 32
packets leaves within a few tenths of a millisecond.

What runs on the clock: outbound streams (``packets_due`` → ``sendto``, then their job events),
clocked helpers such as a shared in-band detector bank (``handle_deadline``), and a sweep every
20 ms over inbound streams (event time-outs, keys waiting). No task per stream, no timer per
stream.
"""

from __future__ import annotations

import asyncio
import gc
import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

from ..media_load import MediaLoad

EventHandler: TypeAlias = Callable[[Any], None]
SendTo: TypeAlias = Callable[[bytes, Any], Any]
_EPS = 1e-9


class PacedStream(Protocol):
    """What the pacer needs from an outbound stream (``dtmfgraph.rtp.OutboundStream`` has it)."""

    def packets_due(self, now: float) -> list[bytes]: ...

    def next_deadline(self) -> float: ...

    def next_event(self) -> object | None: ...


class Clocked(Protocol):
    """Something that needs a call at its deadlines (``dtmfgraph.rtp.InbandBank`` has it)."""

    def next_deadline(self) -> float: ...

    def handle_deadline(self, now: float) -> None: ...


class DeadlineStream(Protocol):
    """What the pacer needs from an inbound stream (``dtmfgraph.rtp.InboundStream`` has it)."""

    def next_deadline(self) -> float | None: ...

    def handle_deadline(self, now: float) -> None: ...

    def next_event(self) -> object | None: ...


class _Item:
    __slots__ = ("active",)

    def __init__(self) -> None:
        self.active = True

    def run(self, now: float) -> float | None:
        """Do what is due by ``now``; return the next deadline (``None``: nothing scheduled)."""
        raise NotImplementedError


class Outbound(_Item):
    """The pacer's record of one outbound stream. ``addr``, ``on_event`` and ``tap`` may change
    live; ``tap``, when set, sees each packet (as the stream made it) before ``sendto``."""

    __slots__ = ("addr", "on_event", "phase", "sendto", "stream", "tap")

    def __init__(
        self,
        stream: PacedStream,
        sendto: SendTo,
        addr: Any,
        on_event: EventHandler | None,
        phase: int,
    ) -> None:
        super().__init__()
        self.stream = stream
        self.sendto = sendto
        self.addr = addr
        self.on_event = on_event
        self.phase = phase
        self.tap: Callable[[bytes], object] | None = None


class _Clock(_Item):
    __slots__ = ("obj",)

    def __init__(self, obj: Clocked) -> None:
        super().__init__()
        self.obj = obj

    def run(self, now: float) -> float | None:
        self.obj.handle_deadline(now)
        return self.obj.next_deadline()


class _Sweep(_Item):
    """Every ``period``, give inbound streams whose deadline has passed their call."""

    __slots__ = ("pacer",)

    def __init__(self, pacer: Pacer) -> None:
        super().__init__()
        self.pacer = pacer

    def run(self, now: float) -> float | None:
        pacer = self.pacer
        for stream, handler in pacer._in_snapshot:
            try:
                deadline = stream.next_deadline()
                if deadline is not None and deadline <= now:
                    stream.handle_deadline(now)
                    event = stream.next_event()
                    while event is not None:
                        handler(event)
                        event = stream.next_event()
            except Exception as exc:
                pacer._report(exc, stream)
                pacer.remove_inbound(stream)
        if not pacer._inbound:
            self.active = False
            pacer._sweep = None
            return None
        return now + pacer.period


@dataclass(slots=True)
class PacerStats:
    """Counters of a :class:`Pacer` (all since it was made)."""

    wakeups: int = 0
    packets: int = 0
    late_wakeups: int = 0
    """Wake-ups that found a grid point already one whole ``period`` overdue (catch-up)."""
    max_lateness: float = 0.0
    """Largest wake-up delay past the grid point it was set for, in seconds."""
    send_errors: int = 0
    """Packets ``sendto`` refused with an ``OSError`` (dropped: late media is useless)."""
    stream_errors: int = 0
    """Items that raised (or whose event handler raised) and were dropped from the pacer."""


def settle_heap() -> None:
    """Collect garbage once, then put every object alive now out of the cyclic collector's sight.

    What is alive when a media process starts (modules, classes, numpy, the web stack) is never
    garbage, yet every full collection walks it: tens of milliseconds with the service's imports
    loaded, long enough to make a 20 ms packet late. ``gc.freeze`` moves it to a permanent
    generation; objects made later are collected as usual. Measured with 1,000 streams
    (`bench/pacing.py`): send-time p99 from 7-14 ms down to about 2 ms. Once per process.
    """
    if gc.get_freeze_count() == 0:
        gc.collect()
        gc.freeze()


class Pacer:
    """Drives every RTP stream of one event loop from one timer on an absolute grid.

    ``tick``: grid resolution in seconds; every ptime must be a whole number of ticks.
    ``period``: the packetisation period streams are spread over, and the inbound sweep period.
    ``freeze_heap``: call :func:`settle_heap` when the pacer is made (the default: a media
    process should; pass ``False`` to leave the garbage collector alone).
    ``batch``: streams :meth:`start_time` puts on one grid point before it opens another (1:
    spread them evenly from the first).
    """

    def __init__(
        self,
        *,
        tick: float = 0.001,
        period: float = 0.020,
        loop: asyncio.AbstractEventLoop | None = None,
        freeze_heap: bool = True,
        batch: int = 32,
    ) -> None:
        if batch < 1:
            raise ValueError(f"batch must be >= 1, not {batch!r}")
        if not 0.0001 <= tick <= 1.0:
            raise ValueError(f"tick must be 0.1 ms..1 s, not {tick!r}")
        phases = period / tick
        if period < tick or abs(phases - round(phases)) > 1e-6:
            raise ValueError(f"period {period!r} must be a whole number of ticks ({tick!r})")
        self._loop = loop if loop is not None else asyncio.get_running_loop()
        self.tick = tick
        self.period = period
        self.batch = batch
        self.origin = self._loop.time()
        self.stats = PacerStats()
        self.load = MediaLoad()
        """Moving average of the wake-ups' lateness: the media load (dtmfgraph.media_load)."""
        self._phases = round(phases)
        self._load = [0] * self._phases
        self._buckets: dict[int, list[_Item]] = {}
        self._heap: list[int] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_k = 0
        self._ticking = False
        self._outbound: dict[int, Outbound] = {}
        self._clocks: dict[int, _Clock] = {}
        self._inbound: dict[int, tuple[DeadlineStream, EventHandler]] = {}
        self._in_snapshot: tuple[tuple[DeadlineStream, EventHandler], ...] = ()
        self._sweep: _Sweep | None = None
        self._closed = False
        if freeze_heap:
            settle_heap()

    # -- time ----------------------------------------------------------------------------------
    def time(self) -> float:
        """The pacer's clock (the loop's monotonic clock), in seconds."""
        return self._loop.time()

    def _k_at_or_after(self, t: float) -> int:
        return max(math.ceil((t - self.origin) / self.tick - _EPS), 0)

    def next_tick(self, after: float | None = None) -> float:
        """The first grid point at or after ``after`` (default: now)."""
        t = self._loop.time() if after is None else after
        return self.origin + self._k_at_or_after(t) * self.tick

    def start_time(self, after: float | None = None) -> float:
        """A start for a new stream, a grid point within ``period`` of ``after``: the most
        loaded one that has fewer than ``batch`` streams but some; else an empty one as far as
        can be from those in use (2 in use: 10 ms apart; 4: 5 ms); else the least loaded."""
        t = self._loop.time() if after is None else after
        k0 = self._k_at_or_after(t)
        load = self._load
        n = self._phases
        batch = self.batch
        window = range(k0, k0 + n)
        joinable = [k for k in window if 0 < load[k % n] < batch]
        if joinable:
            best = max(joinable, key=lambda k: (load[k % n], -k))
            return self.origin + best * self.tick
        least = min(load[k % n] for k in window)
        candidates = [k for k in window if load[k % n] == least]
        used = [p for p in range(n) if load[p]]
        if least == 0 and used:  # a new grid point: the farthest from those in use, so that
            # one wake-up's burst (and the answers to it) is over before the next is due

            def room(k: int) -> int:
                return min(min((k - u) % n, (u - k) % n) for u in used)

            best = max(candidates, key=lambda k: (room(k), -k))
        else:
            best = candidates[0]
        return self.origin + best * self.tick

    def check_ptime(self, ptime_ms: int) -> None:
        """Raise ``ValueError`` unless ``ptime_ms`` is a whole number of ticks."""
        ticks = ptime_ms / 1000 / self.tick
        if ptime_ms <= 0 or abs(ticks - round(ticks)) > 1e-6:
            raise ValueError(
                f"ptime {ptime_ms} ms is not a multiple of the pacer tick ({self.tick * 1000:g} ms)"
            )

    # -- registration --------------------------------------------------------------------------
    def add_outbound(
        self,
        stream: PacedStream,
        sendto: SendTo,
        addr: Any,
        on_event: EventHandler | None = None,
    ) -> Outbound:
        """Start pacing ``stream``: its packets go out as ``sendto(packet, addr)``.

        ``on_event`` receives the stream's events (job started / finished) right after the
        packets of the wake-up that produced them were sent; with ``None`` they are left queued
        in the stream (set :attr:`Outbound.on_event` later to drain them).
        """
        self._check_open()
        key = id(stream)
        if key in self._outbound:
            raise ValueError("stream is already paced")
        k = self._k_at_or_after(stream.next_deadline())
        entry = Outbound(stream, sendto, addr, on_event, k % self._phases)
        self._outbound[key] = entry
        self._load[entry.phase] += 1
        self._schedule(entry, k)
        return entry

    def remove_outbound(self, stream: PacedStream) -> None:
        """Stop pacing ``stream`` (no error if it was not paced)."""
        entry = self._outbound.pop(id(stream), None)
        if entry is not None:
            entry.active = False
            self._load[entry.phase] -= 1

    def add_clock(self, obj: Clocked) -> None:
        """Call ``obj.handle_deadline(now)`` at each of its deadlines (e.g. an in-band bank)."""
        self._check_open()
        if id(obj) in self._clocks:
            raise ValueError("already on the clock")
        item = _Clock(obj)
        self._clocks[id(obj)] = item
        self._schedule(item, self._k_at_or_after(obj.next_deadline()))

    def remove_clock(self, obj: Clocked) -> None:
        item = self._clocks.pop(id(obj), None)
        if item is not None:
            item.active = False

    def add_inbound(self, stream: DeadlineStream, on_event: EventHandler) -> None:
        """Give ``stream`` its deadlines (checked every ``period``); events go to ``on_event``."""
        self._check_open()
        self._inbound[id(stream)] = (stream, on_event)
        self._in_snapshot = tuple(self._inbound.values())
        if self._sweep is None:
            self._sweep = _Sweep(self)
            self._schedule(self._sweep, self._k_at_or_after(self._loop.time() + self.period))

    def remove_inbound(self, stream: DeadlineStream) -> None:
        if self._inbound.pop(id(stream), None) is not None:
            self._in_snapshot = tuple(self._inbound.values())

    @property
    def outbound_count(self) -> int:
        return len(self._outbound)

    @property
    def inbound_count(self) -> int:
        return len(self._inbound)

    @property
    def idle(self) -> bool:
        """No timer armed (nothing to run)."""
        return self._timer is None

    def close(self) -> None:
        """Stop the timer and forget everything."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for item in self._outbound.values():
            item.active = False
        self._outbound.clear()
        self._clocks.clear()
        self._inbound.clear()
        self._in_snapshot = ()
        self._buckets.clear()
        self._heap.clear()

    # -- the clock -----------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("pacer is closed")

    def _schedule(self, item: _Item, k: int) -> None:
        bucket = self._buckets.get(k)
        if bucket is None:
            self._buckets[k] = [item]
            heapq.heappush(self._heap, k)
        else:
            bucket.append(item)
        if self._ticking:
            return  # the running wake-up arms the timer when it ends
        if self._timer is not None:
            if k >= self._timer_k:
                return
            self._timer.cancel()
        self._arm(k)

    def _arm(self, k: int) -> None:
        self._timer_k = k
        self._timer = self._loop.call_at(self.origin + k * self.tick, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        origin = self.origin
        tick = self.tick
        due = origin + self._timer_k * tick
        # asyncio may fire a hair before ``due``: the grid point is what we were woken for.
        now = max(self._loop.time(), due)
        stats = self.stats
        stats.wakeups += 1
        late = now - due
        stats.max_lateness = max(stats.max_lateness, late)
        self.load.observe(late, now)
        if late >= self.period:
            stats.late_wakeups += 1
        k_now = max(self._timer_k, int((now - origin) / tick + _EPS))
        self._ticking = True
        try:
            self._run_due(now, k_now)
        finally:
            self._ticking = False
        heap = self._heap
        while heap and not self._closed:
            k = heap[0]
            if k in self._buckets:
                self._arm(k)
                return
            heapq.heappop(heap)

    def _run_due(self, now: float, k_now: int) -> None:
        heap = self._heap
        buckets = self._buckets
        origin = self.origin
        tick = self.tick
        floor_k = k_now + 1
        sent = 0
        while heap and heap[0] <= k_now:
            bucket = buckets.pop(heapq.heappop(heap), None)
            if bucket is None:
                continue
            for item in bucket:
                if not item.active:
                    continue
                try:
                    if item.__class__ is Outbound:
                        entry: Outbound = item
                        stream = entry.stream
                        packets = stream.packets_due(now)
                        if packets:
                            sendto = entry.sendto
                            addr = entry.addr
                            tap = entry.tap
                            try:
                                for packet in packets:
                                    if tap is not None:
                                        tap(packet)
                                    sendto(packet, addr)
                                    sent += 1
                            except OSError:  # full send buffer, unreachable: a real-time packet
                                self.stats.send_errors += 1  # is dropped, never queued

                        on_event = entry.on_event
                        if on_event is not None:
                            event = stream.next_event()
                            while event is not None:
                                on_event(event)
                                event = stream.next_event()
                        deadline: float | None = stream.next_deadline()
                    else:
                        deadline = item.run(now)
                except Exception as exc:
                    self._drop(item, exc)
                    continue
                if deadline is None or not item.active:
                    continue
                k = math.ceil((deadline - origin) / tick - _EPS)
                k = max(k, floor_k)
                nxt = buckets.get(k)
                if nxt is None:
                    buckets[k] = [item]
                    heapq.heappush(heap, k)
                else:
                    nxt.append(item)
        self.stats.packets += sent

    def _drop(self, item: _Item, exc: Exception) -> None:
        if isinstance(item, Outbound):
            self._report(exc, item.stream)
            self.remove_outbound(item.stream)
        elif isinstance(item, _Clock):
            self._report(exc, item.obj)
            self.remove_clock(item.obj)
        else:
            self._report(exc, item)
            item.active = False

    def _report(self, exc: Exception, what: object) -> None:
        self.stats.stream_errors += 1
        self._loop.call_exception_handler(
            {"message": "pacer dropped an item that raised", "exception": exc, "stream": what}
        )
