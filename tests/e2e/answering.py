"""Answering incoming calls on one of our phones in e2e tests, and baresip calling them."""

from __future__ import annotations

import asyncio

from dtmfgraph.media.phone import HeardKey, IncomingInvite, Phone, PhoneCall

from ..judges.baresip import Baresip


def answer_every_call(phone: Phone) -> tuple[list[PhoneCall], list[HeardKey]]:
    """Make ``phone`` answer every incoming call; return the calls and, as they come, every
    key heard on them (the handler keeps listening until the call ends)."""
    calls: list[PhoneCall] = []
    heard: list[HeardKey] = []

    async def on_incoming(invite: IncomingInvite) -> None:
        call = await invite.answer()
        calls.append(call)
        async for key in call.keys_heard():
            heard.append(key)

    phone.on_incoming = on_incoming
    return calls, heard


async def baresip_calls_and_presses(
    bs: Baresip,
    target: str,
    keys: str,
    calls: list[PhoneCall],
    heard: list[HeardKey],
    timeout: float = 5.0,
) -> None:
    """baresip calls ``target`` (one of our phones answering with :func:`answer_every_call`),
    presses ``keys`` once the call is up, waits (up to 5 s) until ``heard`` has as many keys,
    hangs up, and waits for our side of the call to end."""
    await bs.dial(target)
    await bs.wait_event("CALL_ESTABLISHED", timeout)
    for key in keys:
        await bs.sndcode(key)
    for _ in range(100):
        if len(heard) >= len(keys):
            break
        await asyncio.sleep(0.05)
    await bs.hangup()
    await calls[0].wait_ended(5)
