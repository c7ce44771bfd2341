"""Shared in-band detector banks cost nothing once their last call is gone.

An idle process used to keep a 256-channel bank ticking on silent channels forever (3.4 % of a
core for an idle ``dtmfgraph answer``). Now a bank leaves the pacer with its last stream, and the
next stream brings it back; counted in pacer wake-ups and detector blocks, not in time.
"""

from __future__ import annotations

import asyncio

from dtmfgraph.media import InbandBanks, Pacer, Phone, RtpSession
from dtmfgraph.rtp import Codec, InbandBank

from ..e2e.answering import answer_every_call


async def _until_idle(pacer: Pacer) -> None:
    """Let the pacer fire what was already armed (a stale bucket of a removed item)."""
    for _ in range(200):
        if pacer.idle:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the pacer kept a timer armed with nothing to run")


async def _call(pacer: Pacer, banks: InbandBanks, keys: str) -> tuple[str, InbandBank]:
    bank = banks.bank()
    receiver = await RtpSession.open(pacer, send=False, bank=bank)
    sender = await RtpSession.open(pacer, remote=receiver.local_address, receive=False)
    try:
        await sender.send_dtmf(keys, method="inband", tone_ms=70, gap_ms=70)
        heard = "".join([(await receiver.next_key(10.0)).key for _ in keys])
    finally:
        await sender.close()
        await receiver.close()
    return heard, bank


async def test_the_last_call_gone_the_bank_stops_and_a_new_call_restarts_it() -> None:
    pacer = Pacer(freeze_heap=False)
    banks = InbandBanks(pacer, channels=4)
    try:
        heard, bank = await _call(pacer, banks, "123")
        assert heard == "123"
        assert banks.banks == [] and banks.in_use == 0
        await _until_idle(pacer)
        wakeups, blocks = pacer.stats.wakeups, bank.stats.blocks
        await asyncio.sleep(0.3)  # fifteen frame slots: none of them runs anything
        assert (pacer.stats.wakeups, bank.stats.blocks) == (wakeups, blocks)
        assert pacer.idle

        heard, again = await _call(pacer, banks, "#9*")  # the bank comes back and hears
        assert heard == "#9*"
        assert again.stats.blocks > 0
        await _until_idle(pacer)
    finally:
        banks.close()
        pacer.close()


async def test_a_bank_handed_out_ticks_only_while_a_channel_is_attached() -> None:
    pacer = Pacer(freeze_heap=False)
    banks = InbandBanks(pacer, channels=2)
    try:
        bank = banks.bank()
        assert banks.banks == [bank]
        assert pacer.idle  # handed out, nothing attached yet: not on the clock
        first = bank.attach(Codec.PCMU, lambda *a: None)
        second = bank.attach(Codec.PCMA, lambda *a: None)
        assert not pacer.idle
        other = banks.bank()  # the first is full: a second bank
        assert other is not bank and len(banks.banks) == 2
        first.close()
        assert banks.banks == [bank, other]  # still one channel in use
        second.close()
        assert banks.banks == [other]  # empty: gone from the clock and the list
        await _until_idle(pacer)
        channel = bank.attach(Codec.PCMU, lambda *a: None)  # a late attach brings it back
        assert banks.banks == [other, bank] and not pacer.idle
        channel.close()
        await _until_idle(pacer)
    finally:
        banks.close()
        pacer.close()


async def test_an_answering_phone_wakes_up_for_nothing_once_its_last_call_ends() -> None:
    """The idle ``dtmfgraph answer`` case: two phones, a real SIP call with in-band keys; once it
    has ended, the answering phone's pacer has nothing armed and no wake-up comes; the next call
    brings the detector back and is heard."""
    callee = await Phone.start("127.0.0.1", 0)
    caller = await Phone.start("127.0.0.1", 0)
    try:
        calls, heard = answer_every_call(callee)
        target = f"sip:answer@127.0.0.1:{callee.sip_address[1]}"
        for keys in ("12", "#0"):
            call = await caller.dial(target, timeout=10)
            await call.send_dtmf(keys, method="inband")
            for _ in range(200):
                if len(heard) >= len(keys):
                    break
                await asyncio.sleep(0.05)
            await call.hangup()
            await calls[-1].wait_ended(10)
            assert "".join(k.key for k in heard) == keys
            heard.clear()
            await _until_idle(callee.pacer)  # (the call's media closes just after it ends)
            assert callee.banks is not None and callee.banks.banks == []
            wakeups = callee.pacer.stats.wakeups
            await asyncio.sleep(0.3)
            assert callee.pacer.stats.wakeups == wakeups
    finally:
        await caller.close()
        await callee.close()
