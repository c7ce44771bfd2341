"""A call whose far end stops sending RTP is hung up after the phone's media timeout; a call
with media flowing, or held by the far end, is not. sipp is the silent far end (it sends SIP
and no RTP at all); two of our phones are the talking pair."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from dtmfgraph.media.phone import EndReason, IncomingInvite, Phone, PhoneCall

from ..judges.sipp import run_sipp, silent_caller_scenario

TIMEOUT = 1.0


async def _answering_phone(timeout: float | None) -> tuple[Phone, asyncio.Future[PhoneCall]]:
    """A phone with ``media_timeout=timeout`` that answers every call; a future of the first."""
    phone = await Phone.start("127.0.0.1", 0, media_timeout=timeout)
    answered: asyncio.Future[PhoneCall] = asyncio.get_running_loop().create_future()

    async def on_incoming(invite: IncomingInvite) -> None:
        call = await invite.answer()
        if not answered.done():
            answered.set_result(call)

    phone.on_incoming = on_incoming
    return phone, answered


async def test_silent_far_end_is_hung_up(tmp_path: Path) -> None:
    phone, answered = await _answering_phone(TIMEOUT)
    try:
        sipp = asyncio.create_task(
            run_sipp(silent_caller_scenario(), phone.sip_address, tmp_path / "sipp")
        )
        call = await asyncio.wait_for(answered, 10)
        loop = asyncio.get_running_loop()
        began = loop.time()
        end = await call.wait_ended(10)
        waited = loop.time() - began
        assert end.reason is EndReason.MEDIA_TIMEOUT and not end.by_remote
        assert "no RTP from the far end" in end.detail
        assert TIMEOUT <= waited < TIMEOUT + 1.5, waited
        assert phone.media_timeouts == 1
        result = await sipp  # it got our BYE and answered it
        assert result.returncode == 0, result.explain()
    finally:
        await phone.close()


async def test_media_flowing_keeps_the_call(tmp_path: Path) -> None:
    callee, answered = await _answering_phone(TIMEOUT / 2)
    caller = await Phone.start("127.0.0.1", 0, media_timeout=TIMEOUT / 2)
    try:
        call = await caller.dial(f"sip:bob@127.0.0.1:{callee.sip_address[1]}", timeout=5)
        other = await asyncio.wait_for(answered, 5)
        await asyncio.sleep(4 * TIMEOUT)  # both send a packet every 20 ms, silence included
        assert call.established and other.established
        assert call.ended is None and other.ended is None
        end = await call.hangup()
        assert end.reason is EndReason.LOCAL_BYE
        assert (await other.wait_ended(5)).reason is EndReason.REMOTE_BYE
        assert caller.media_timeouts == callee.media_timeouts == 0
    finally:
        await caller.close()
        await callee.close()


async def test_far_end_hold_is_not_a_media_failure(tmp_path: Path) -> None:
    phone, answered = await _answering_phone(TIMEOUT)
    try:
        scenario = silent_caller_scenario(hold_first=True, bye_after_ms=int(3_500 * TIMEOUT))
        result = await run_sipp(scenario, phone.sip_address, tmp_path / "sipp")
        assert result.returncode == 0, result.explain()
        call = await asyncio.wait_for(answered, 1)
        end = await call.wait_ended(5)
        assert end.reason is EndReason.REMOTE_BYE  # silent for 3.5 timeouts, but held
        assert phone.media_timeouts == 0
    finally:
        await phone.close()


async def test_media_timeout_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="media_timeout"):
        await Phone.start("127.0.0.1", 0, media_timeout=-1.0)
