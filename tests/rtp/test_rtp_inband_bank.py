"""InbandBank: one multi-channel detector shared by many inbound streams."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from dtmfgraph.rtp import (
    BankFullError,
    Codec,
    InbandBank,
    InboundStream,
    KeyHeard,
    OutboundStream,
)
from dtmfgraph.tones import DigitEvent

from .drive import PTIME, run


def _send(keys: str, codec: Codec, seed: int, **kw: object) -> list[tuple[float, bytes]]:
    out = OutboundStream(start=0.0, codec=codec, rng=random.Random(seed))
    out.send_dtmf(keys, method="inband", now=0.0, **kw)  # type: ignore[arg-type]
    sent, _ = run(out, until=len(keys) * 0.2 + 0.3)
    return [(s.at, s.data) for s in sent]


def _drive(
    bank: InbandBank,
    streams: list[InboundStream],
    feeds: list[list[tuple[float, bytes]]],
    until: float,
    jitter: float = 0.0,
    seed: int = 0,
) -> list[list[KeyHeard]]:
    """A pacer: each tick, deliver what arrived, run the bank once, then poll the streams."""
    rng = random.Random(seed)
    arrivals = sorted(
        (t + 0.003 + rng.random() * jitter, i, d) for i, f in enumerate(feeds) for t, d in f
    )
    heard: list[list[KeyHeard]] = [[] for _ in streams]
    j = 0
    k = 0
    while k * PTIME <= until:
        now = k * PTIME
        while j < len(arrivals) and arrivals[j][0] <= now:
            t, i, d = arrivals[j]
            streams[i].receive(d, t)
            j += 1
        if bank.next_deadline() <= now:
            bank.handle_deadline(now)
        for i, s in enumerate(streams):
            d = s.next_deadline()
            if d is not None and d <= now:
                s.handle_deadline(now)
            while (ev := s.next_event()) is not None:
                heard[i].append(ev)
        k += 1
    return heard


def test_attach_detach_and_full() -> None:
    bank = InbandBank(2, start=0.0)
    a = InboundStream(bank=bank)
    InboundStream(bank=bank)
    assert bank.free == 0
    with pytest.raises(BankFullError):
        InboundStream(bank=bank)
    InboundStream(bank=bank, inband=False)  # takes no channel
    a.close(0.0)
    assert bank.free == 1
    a.close(0.0)  # twice is harmless
    InboundStream(bank=bank)
    assert bank.free == 0


def test_bank_feeds_one_block_per_tick_and_skips_ahead_when_far_behind() -> None:
    bank = InbandBank(3, start=1.0)
    assert bank.next_deadline() == 1.0
    bank.handle_deadline(0.99)
    assert bank.stats.blocks == 0
    bank.handle_deadline(1.0)
    assert bank.stats.blocks == 1 and bank.next_deadline() == pytest.approx(1.02)
    bank.handle_deadline(1.1)
    assert bank.stats.blocks == 6
    bank.handle_deadline(100.0)  # a 99 s stall: at most 100 blocks (2 s), then skip
    assert bank.stats.blocks == 106
    assert bank.next_deadline() > 100.0
    # after the skip the detector's time lags the clock: a channel attached now still hears its
    # key, at the clock's time (it used to be taken for a digit from before it attached)
    heard: list[tuple[str, float]] = []
    channel = bank.attach(Codec.PCMU, lambda key, start, *_: heard.append((key, start)))
    t0 = bank.next_deadline()
    for t, data in _send("5", Codec.PCMU, 2):
        channel.push(data[12:], t0 + t)
        bank.handle_deadline(t0 + t)
    bank.handle_deadline(t0 + 1.0)
    [(key, start)] = heard
    assert key == "5" and start == pytest.approx(t0, abs=0.1)


def test_prebuffer_underrun_and_overflow() -> None:
    bank = InbandBank(1, start=0.0, prebuffer_ms=40, max_buffer_ms=100)
    channel = bank.attach(Codec.PCMU, lambda *a: None)
    channel.push(b"\xff" * 160, 0.0)
    bank.handle_deadline(0.0)  # 20 ms buffered: not playing yet
    channel.push(b"\xff" * 160, 0.01)
    bank.handle_deadline(0.02)  # 40 ms: plays one frame
    bank.handle_deadline(0.04)  # plays the other
    bank.handle_deadline(0.06)  # dry
    assert bank.stats.underruns == 1
    channel.push(b"\xff" * 1000, 0.07)  # a burst: held until the bank has had its block
    assert bank.stats.overflow_bytes == 0
    bank.handle_deadline(0.08)  # on time: 1000 - 160 played, 800 (100 ms) kept, 40 dropped
    assert bank.stats.overflow_bytes == 40 and len(channel.buf) == 800
    channel.close()
    assert bank.free == 1
    channel.push(b"\xff" * 160, 0.08)  # closed: ignored


@pytest.mark.parametrize("jitter", [0.0, 0.015])
def test_streams_sharing_a_bank_each_hear_their_own_keys(jitter: float) -> None:
    bank = InbandBank(8, start=0.0)
    plan = [("159#", Codec.PCMU), ("*0AB", Codec.PCMA), ("", Codec.PCMU), ("D8C2", Codec.PCMU)]
    streams = [InboundStream(codec=c, bank=bank) for _, c in plan]
    feeds = [_send(keys or "1", c, seed=i) if keys else [] for i, (keys, c) in enumerate(plan)]
    heard = _drive(bank, streams, feeds, until=1.5, jitter=jitter)
    for (keys, _), h in zip(plan, heard, strict=True):
        assert "".join(x.key for x in h) == keys
        assert all(x.method == "inband" for x in h)
    for h in heard[0]:
        assert h.duration == pytest.approx(0.1, abs=0.03)
    first = heard[0][0]
    # bank times: about one frame (and the jitter buffer's release on the 20 ms ticks)
    assert first.start == pytest.approx(0.0, abs=0.045)
    assert bank.stats.digits == 12


def test_bank_and_solo_agree() -> None:
    bank = InbandBank(1, start=0.0)
    banked = InboundStream(bank=bank)
    solo = InboundStream()
    feed = _send("3690", Codec.PCMU, seed=4)
    hb, hs = _drive(bank, [banked, solo], [feed, feed], until=1.3)
    assert [x.key for x in hb] == [x.key for x in hs] == list("3690")
    for b, s in zip(hb, hs, strict=True):
        assert b.start == pytest.approx(s.start, abs=0.045)


def test_a_reused_channel_does_not_inherit_a_digit() -> None:
    bank = InbandBank(1, start=0.0)
    a = InboundStream(bank=bank)
    feed = _send("5", Codec.PCMU, seed=1, tone_ms=300)
    heard_a = _drive(bank, [a], [feed[:8]], until=0.18)  # close mid-tone
    a.close(0.18)
    b = InboundStream(bank=bank)
    heard_b = _drive(bank, [b], [[]], until=0.6)
    assert heard_a == [[]] and heard_b == [[]]


def test_one_detector_call_per_tick_serves_every_stream_of_a_bank() -> None:
    """What makes a bank cheap, told without a clock: 100 streams' audio is one detector call
    of (100, 160) samples per 20 ms tick, where a stream with its own detector makes a call per
    packet; both hear the same keys. (The CPU this saves is measured by bench/packet_cost.py,
    a release check: timing thresholds fail on a loaded box and do not belong in tests.)"""
    n = 100
    bank = InbandBank(n, start=0.0)
    banked = [InboundStream(bank=bank) for _ in range(n)]
    solo = [InboundStream() for _ in range(2)]
    shapes: list[tuple[int, ...]] = []
    calls = [0] * len(solo)
    feed_block = bank._detector.feed

    def counted_block(block: npt.NDArray[np.float32]) -> list[DigitEvent]:
        shapes.append(np.shape(block))
        return feed_block(block)

    bank._detector.feed = counted_block  # type: ignore[method-assign]
    for i, stream in enumerate(solo):
        detector = stream._sink._detector  # type: ignore[union-attr]
        feed_one = detector.feed

        def counted(block: npt.ArrayLike, i: int = i, feed: Any = feed_one) -> list[DigitEvent]:
            calls[i] += 1
            return feed(block)  # type: ignore[no-any-return]

        detector.feed = counted
    feed = _send("3690", Codec.PCMU, seed=4)
    heard = _drive(bank, banked + solo, [feed] * (n + len(solo)), until=1.3)
    assert ["".join(k.key for k in h) for h in heard] == ["3690"] * (n + len(solo))
    assert shapes == [(n, 160)] * bank.stats.blocks  # one call per tick, all streams in it
    for stream, made in zip(solo, calls, strict=True):
        assert made == stream._jb.stats.played > bank.stats.blocks / 2  # one per packet


def test_a_bank_tells_its_first_and_last_channel_and_restarts_only_when_empty() -> None:
    bank = InbandBank(2, start=0.0)
    uses: list[tuple[bool, bool]] = []
    bank.on_use = lambda busy: uses.append((busy, bank.empty))
    a = bank.attach(Codec.PCMU, lambda *a: None)
    b = bank.attach(Codec.PCMU, lambda *a: None)
    assert uses == [(True, True)]  # once, before the channel is taken
    bank.handle_deadline(0.1)
    with pytest.raises(RuntimeError):
        bank.restart(5.0)
    a.close()
    b.close()
    assert uses == [(True, True), (False, True)]
    bank.restart(5.0)  # after a pause off the clock: the next block is due at 5.0
    assert bank.next_deadline() == 5.0
    heard: list[str] = []
    channel = bank.attach(Codec.PCMU, lambda key, *_: heard.append(key))
    for t, data in _send("7", Codec.PCMU, 1):
        channel.push(data[12:], 5.0 + t)
        bank.handle_deadline(5.0 + t)
    bank.handle_deadline(6.0)
    assert heard == ["7"]  # a fresh detector: the key of the restarted bank is its own


def test_a_late_bank_waits_a_moment_for_audio_rather_than_feed_silence_into_a_key() -> None:
    """Woken 0.3 s late with a playing channel dry (its packets not read yet, the same stall
    held the reads up): the catch-up is put off a quarter slot once, then plays the audio that
    came meanwhile; nothing dropped, no underrun."""
    bank = InbandBank(2, start=0.0)
    channel = bank.attach(Codec.PCMU, lambda *a: None)
    channel.push(b"\xff" * 480, 0.0)
    bank.handle_deadline(0.02)  # playing, 1 frame left
    bank.handle_deadline(0.04)
    blocks = bank.stats.blocks
    bank.handle_deadline(0.34)  # 15 blocks due, the channel dry
    assert bank.stats.blocks == blocks and bank.next_deadline() == pytest.approx(0.345)
    channel.push(b"\xff" * 160 * 15, 0.341)  # the stall's packets, read now
    bank.handle_deadline(0.345)
    assert bank.stats.blocks == blocks + 15
    assert bank.stats.underruns == 0 and bank.stats.overflow_bytes == 0
    assert bank.next_deadline() == pytest.approx(0.36)
