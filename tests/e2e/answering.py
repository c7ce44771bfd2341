"""Answering incoming calls on one of our phones in e2e tests."""

from __future__ import annotations

from dtmfgraph.media.phone import HeardKey, IncomingInvite, Phone, PhoneCall


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
