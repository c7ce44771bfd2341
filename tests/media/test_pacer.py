"""The shared pacer over real loopback UDP, with stand-in streams (no RTP layer needed)."""

from __future__ import annotations

import asyncio
import gc
import random
import time

import pytest

from dtmfgraph.media import Pacer

from .helpers import FAKE, FakeStream, open_receiver, percentile


def _collect(packets: list[tuple[float, bytes]]) -> dict[int, list[tuple[int, float, float]]]:
    by_stream: dict[int, list[tuple[int, float, float]]] = {}
    for t, data in packets:
        sid, k, due = FAKE.unpack(data)
        by_stream.setdefault(sid, []).append((k, due, t))
    return by_stream


async def test_next_tick_is_on_the_grid_and_not_in_the_past() -> None:
    pacer = Pacer()
    now = pacer.time()
    t = pacer.next_tick()
    assert now - 1e-9 <= t < now + pacer.tick + 1e-9
    k = (t - pacer.origin) / pacer.tick
    assert abs(k - round(k)) < 1e-6
    assert pacer.next_tick(pacer.origin + 0.5) == pytest.approx(pacer.origin + 0.5)
    pacer.close()


async def test_ptime_must_be_a_whole_number_of_ticks() -> None:
    pacer = Pacer(tick=0.020)
    pacer.check_ptime(20)
    pacer.check_ptime(40)
    with pytest.raises(ValueError, match="not a multiple"):
        pacer.check_ptime(30)
    pacer.close()
    with pytest.raises(ValueError):
        Pacer(tick=0)


async def test_idle_pacer_does_not_tick() -> None:
    pacer = Pacer()
    await asyncio.sleep(0.1)
    assert pacer.stats.wakeups == 0 and pacer.idle
    rx = await open_receiver()
    s = FakeStream(1, pacer.next_tick(), 3)
    pacer.add_outbound(s, rx.endpoint.sendto, rx.address)
    with pytest.raises(ValueError, match="already"):
        pacer.add_outbound(s, rx.endpoint.sendto, rx.address)
    await rx.wait_for(3, 20.0)
    pacer.remove_outbound(s)
    await asyncio.sleep(0.05)
    assert pacer.idle  # timer disarmed once nothing is paced
    wakeups = pacer.stats.wakeups
    await asyncio.sleep(0.1)
    assert pacer.stats.wakeups == wakeups
    pacer.close()
    with pytest.raises(RuntimeError, match="closed"):
        pacer.add_outbound(s, rx.endpoint.sendto, rx.address)
    await rx.endpoint.close()


async def test_many_streams_come_and_go_nothing_lost_no_drift() -> None:
    """200 streams start at random grid points over 2 s, each lasting 0.5-2.5 s, on one pacer."""
    # The garbage earlier tests in this process left (closed loops, transports, SDK clients)
    # would otherwise be collected in the middle: one full collection measured 50 ms here.
    # A media process has no such backlog when its pacer starts.
    gc.collect()
    rx = await open_receiver()
    pacer = Pacer()
    rng = random.Random(7)
    transport = rx.endpoint
    streams: dict[int, FakeStream] = {}
    finished: set[int] = set()

    def on_event(event: object) -> None:
        assert isinstance(event, tuple)
        _, sid = event
        finished.add(sid)
        pacer.remove_outbound(streams[sid])  # removing from inside the tick must be safe

    async def starter(sid: int) -> None:
        await asyncio.sleep(rng.uniform(0, 2.0))
        s = FakeStream(sid, pacer.start_time(), rng.randint(25, 125))
        streams[sid] = s
        pacer.add_outbound(s, transport.sendto, rx.address, on_event)

    await asyncio.gather(*(starter(i) for i in range(200)))
    total = sum(s.count for s in streams.values())
    await rx.wait_for(total, 60.0)  # 2.5 s of streams; a loaded machine may take longer
    assert len(finished) == 200
    assert pacer.outbound_count == 0
    by_stream = _collect(rx.packets)
    assert len(by_stream) == 200
    for sid, got in by_stream.items():
        s = streams[sid]
        assert [k for k, _, _ in got] == list(range(s.count)), f"stream {sid} lost or reordered"
        assert all(t - due > -0.0005 for _, due, t in got), f"stream {sid} sent early"
    assert len(rx.packets) == total == pacer.stats.packets
    # No drift: lateness does not add up. The pacer wakes on its grid (deadlines from the start,
    # not from the last wake-up), so the packets due late in the run are no later than the
    # early ones; a pacer that slept a tick from each wake-up would gain its wake-up latency
    # every tick, until its packets were due anywhere in the tick (a median lag near 10 ms).
    # The margin is for a loaded machine; the latency bounds are a benchmark: bench/pacing.py.
    ordered = sorted((due, t - due) for _, due, t in (x for g in by_stream.values() for x in g))
    first = [e for _, e in ordered[: len(ordered) // 5]]
    last = [e for _, e in ordered[-len(ordered) // 5 :]]
    assert percentile(last, 50) - percentile(first, 50) < 0.005
    pacer.close()
    await rx.endpoint.close()


async def test_a_stalled_loop_catches_up_at_once_without_accumulating_lag() -> None:
    rx = await open_receiver()
    pacer = Pacer()
    transport = rx.endpoint
    start = pacer.next_tick()  # one phase for all: a slow loop here must not spread them
    streams = [FakeStream(i, start, 50) for i in range(20)]
    for s in streams:
        pacer.add_outbound(s, transport.sendto, rx.address)
    await asyncio.sleep(0.2)
    time.sleep(0.305)  # block the loop for 15+ ticks
    await rx.wait_for(20 * 50, 30.0)
    assert len(rx.packets) == 1000
    assert pacer.stats.late_wakeups >= 1
    assert pacer.stats.max_lateness >= 0.28
    by_stream = _collect(rx.packets)
    for sid, got in by_stream.items():
        assert [k for k, _, _ in got] == list(range(50)), sid
        # the last 10 frames (0.3 s after the stall) are back on schedule: the 0.3 s the
        # stall cost is not carried on (the margin is for a loaded machine)
        tail = [t - due for _, due, t in got[-10:]]
        assert max(tail) < 0.15, tail
    # wake-ups after the stall stayed on the original grid: no extra ones
    assert pacer.stats.wakeups < 50 + 5
    pacer.close()
    await rx.endpoint.close()


async def test_a_stream_that_raises_is_dropped_and_reported_others_go_on() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, ctx: reported.append(ctx))
    rx = await open_receiver()
    pacer = Pacer()
    transport = rx.endpoint

    class Broken(FakeStream):
        def packets_due(self, now: float) -> list[bytes]:
            raise RuntimeError("boom")

    good = FakeStream(1, pacer.next_tick(), 10)
    bad = Broken(2, pacer.next_tick(), 10)
    pacer.add_outbound(bad, transport.sendto, rx.address)
    pacer.add_outbound(good, transport.sendto, rx.address)
    await rx.wait_for(10, 20.0)
    assert len(rx.packets) == 10
    assert pacer.stats.stream_errors == 1
    assert pacer.outbound_count == 1
    assert reported and isinstance(reported[0]["exception"], RuntimeError)
    pacer.close()
    await rx.endpoint.close()
    loop.set_exception_handler(None)


async def test_start_times_spread_streams_over_the_period() -> None:
    rx = await open_receiver()
    pacer = Pacer(tick=0.001, period=0.020, batch=1)
    transport = rx.endpoint
    starts = []
    for i in range(100):
        start = pacer.start_time()
        starts.append(round((start - pacer.origin) / pacer.tick) % 20)
        pacer.add_outbound(FakeStream(i, start, 5), transport.sendto, rx.address)
    counts = [starts.count(p) for p in range(20)]
    assert counts == [5] * 20, counts  # 100 streams, 20 phases: 5 each
    await rx.wait_for(500, 20.0)
    assert len(rx.packets) == 500
    # at most one wake-up per phase and frame (a late one serves the next phases too: fewer on
    # a loaded machine), not one per packet
    assert 1 <= pacer.stats.wakeups <= 20 * 5 + 5
    pacer.close()
    await rx.endpoint.close()


async def test_start_times_fill_a_few_wakeups_then_spread() -> None:
    """Few streams share a few grid points (batch of 32 each: fewer wake-ups for the same
    packets); past 32 per phase of the period, new streams go where the fewest are."""
    rx = await open_receiver()
    pacer = Pacer(tick=0.001, period=0.020)
    streams = []

    def phases() -> list[int]:
        return sorted(pacer._load, reverse=True)

    for i in range(100):
        start = pacer.start_time()
        stream = FakeStream(i, start, 5)
        streams.append(stream)
        pacer.add_outbound(stream, rx.endpoint.sendto, rx.address)
    assert phases() == [32] * 3 + [4] + [0] * 16
    used = [p for p in range(20) if pacer._load[p]]
    gaps = [min((a - b) % 20, (b - a) % 20) for a in used for b in used if a != b]
    assert min(gaps) == 5  # a new grid point as far as can be from those in use: 5 ms apart
    await rx.wait_for(500, 20.0)
    assert len(rx.packets) == 500  # every packet of every stream, once
    assert pacer.stats.wakeups <= 4 * 5 + 5  # 4 grid points per frame, not 20
    for i in range(100, 800):
        pacer.add_outbound(FakeStream(i, pacer.start_time(), 1), rx.endpoint.sendto, rx.address)
    assert phases() == [40] * 20  # many: even over the period
    for stream in streams[:50]:  # streams leave: the phases they leave are filled again first
        pacer.remove_outbound(stream)
    assert sorted(phases())[:2] == [8, 22]
    pacer.add_outbound(FakeStream(800, pacer.start_time(), 1), rx.endpoint.sendto, rx.address)
    assert sorted(phases())[:2] == [8, 23]  # the fuller of the two under 32: fewer wake-ups
    with pytest.raises(ValueError, match="batch"):
        Pacer(batch=0)
    pacer.close()
    await rx.endpoint.close()


async def test_clocked_items_and_inbound_sweeps_run_on_the_grid() -> None:
    pacer = Pacer()
    calls: list[float] = []

    class Bank:
        def __init__(self) -> None:
            self.k = 0
            self.start = pacer.next_tick()

        def next_deadline(self) -> float:
            return self.start + self.k * 0.020

        def handle_deadline(self, now: float) -> None:
            while self.next_deadline() <= now:
                calls.append(now - self.next_deadline())
                self.k += 1

    class Inbound:
        def __init__(self) -> None:
            self.deadline: float | None = pacer.time() + 0.05
            self.out: list[str] = []

        def next_deadline(self) -> float | None:
            return self.deadline

        def handle_deadline(self, now: float) -> None:
            self.deadline = None
            self.out.append("timeout")

        def next_event(self) -> object | None:
            return self.out.pop() if self.out else None

    bank = Bank()
    pacer.add_clock(bank)
    inbound = Inbound()
    heard: list[object] = []
    pacer.add_inbound(inbound, heard.append)
    deadline = time.monotonic() + 20  # 10 frames take 0.2 s, longer on a loaded machine
    while len(calls) < 10 or not heard:
        assert time.monotonic() < deadline, (calls, heard)
        await asyncio.sleep(0.01)
    assert min(calls) >= 0  # never before its deadline (how late: bench/pacing.py)
    assert heard == ["timeout"]
    pacer.remove_clock(bank)
    pacer.remove_inbound(inbound)
    await asyncio.sleep(0.06)
    n = len(calls)
    await asyncio.sleep(0.05)
    assert len(calls) == n
    assert pacer.idle
    pacer.close()
