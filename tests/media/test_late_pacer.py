"""A late pacer never loses keys: its event loop stalls (a blocking call) while keys go by.

Two endpoints on real loopback sockets, each on its own event loop (the far end in a thread, as
another machine would be). One loop is stalled for ``stall`` seconds every 0.2 s while twelve
keys are sent: the sender's stalled pacer must still send every packet of every key it accepted
(late, never fewer), and a stalled receiver must hear every key, in-band on a shared detector
bank too (which used to drop the audio that piled up while it was behind: keys lost past a
0.2 s stall).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from dtmfgraph.media import InbandBanks, Pacer, RtpSession
from dtmfgraph.rtp import InbandBank

KEYS = "1234567890*#"


def _stall_every(loop: asyncio.AbstractEventLoop, stall: float, stop: threading.Event) -> None:
    def block() -> None:
        if not stop.is_set():
            time.sleep(stall)  # the whole loop stops: every timer due meanwhile fires late
            loop.call_later(0.2, block)

    loop.call_later(0.1, block)


def _in_thread(main: Callable[[], Awaitable[Any]]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(asyncio.run(main())), daemon=True)
    thread.start()
    return thread, out


async def _receive(
    stall: float | None, ready: Callable[[tuple[str, int]], None], stop: threading.Event
) -> tuple[str, list[InbandBank]]:
    pacer = Pacer(freeze_heap=False)
    banks = InbandBanks(pacer)
    rx = await RtpSession.open(pacer, send=False, bank=banks.bank())
    used = list(banks.banks)
    if stall is not None:
        _stall_every(asyncio.get_running_loop(), stall, stop)
    ready(rx.local_address)
    heard = ""
    try:
        while len(heard) < len(KEYS):
            heard += (await rx.next_key(10.0)).key
        with pytest.raises(TimeoutError):  # nothing more (no key heard twice)
            heard += (await rx.next_key(0.5)).key
    finally:
        stop.set()
        await rx.close()
        pacer.close()
    return heard, used


async def _send(stall: float | None, to: tuple[str, int], method: str) -> int:
    pacer = Pacer(freeze_heap=False)
    tx = await RtpSession.open(pacer, remote=to, receive=False)
    stop = threading.Event()
    try:
        await asyncio.sleep(0.2)
        if stall is not None:
            _stall_every(asyncio.get_running_loop(), stall, stop)
        job = await tx.send_dtmf(KEYS, method=method, tone_ms=100, gap_ms=100)  # type: ignore[arg-type]
        return job.keys_sent
    finally:
        stop.set()
        await tx.close()
        pacer.close()


@pytest.mark.parametrize("method", ["inband", "rfc4733"])
@pytest.mark.parametrize("stall", [0.3, 0.9])
async def test_a_stalled_receiver_hears_every_key(method: str, stall: float) -> None:
    stop = threading.Event()
    address: asyncio.Future[tuple[str, int]] = asyncio.get_running_loop().create_future()
    loop = asyncio.get_running_loop()
    receiver = asyncio.create_task(
        _receive(stall, lambda a: loop.call_soon_threadsafe(address.set_result, a), stop)
    )
    to = await address
    thread, sent = _in_thread(lambda: _send(None, to, method))
    heard, banks = await receiver
    await asyncio.to_thread(thread.join, 30)
    assert heard == KEYS
    assert sent == [len(KEYS)]
    assert [b.stats.overflow_bytes for b in banks] == [0]  # nothing dropped for being behind


@pytest.mark.parametrize("method", ["inband", "rfc4733"])
async def test_a_stalled_sender_sends_every_key_it_accepted(method: str) -> None:
    stop = threading.Event()
    address: list[tuple[str, int]] = []
    ready = threading.Event()

    def on_ready(a: tuple[str, int]) -> None:
        address.append(a)
        ready.set()

    thread, out = _in_thread(lambda: _receive(None, on_ready, stop))
    await asyncio.to_thread(ready.wait, 10)
    sent = await _send(0.3, address[0], method)
    await asyncio.to_thread(thread.join, 30)
    assert sent == len(KEYS)
    [(heard, _)] = out
    assert heard == KEYS
