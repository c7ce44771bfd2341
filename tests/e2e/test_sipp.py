"""sipp calls our Phone: RFC 2833 replayed from its own captures, SIP INFO, BYE; then load."""

from __future__ import annotations

import asyncio
from pathlib import Path

from dtmfgraph.media.phone import EndReason, HeardKey, IncomingInvite, Phone, PhoneCall
from dtmfgraph.rtp import PROBATION

from ..judges.sipp import dtmf_scenario, run_sipp
from .answering import answer_every_call


async def test_sipp_call_with_rfc2833_and_info(tmp_path: Path, phone: Phone) -> None:
    calls: list[PhoneCall] = []
    heard: list[HeardKey] = []

    async def collect(call: PhoneCall) -> None:
        async for key in call.keys_heard():
            heard.append(key)

    tasks: list[asyncio.Task[None]] = []

    async def on_incoming(invite: IncomingInvite) -> None:
        call = await invite.answer()
        calls.append(call)
        tasks.append(asyncio.create_task(collect(call)))

    phone.on_incoming = on_incoming
    result = await run_sipp(dtmf_scenario("15#", "7*"), phone.sip_address, tmp_path / "sipp")
    assert result.returncode == 0, result.explain()
    assert len(calls) == 1
    call = calls[0]
    end = await call.wait_ended(5)
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert end.reason is EndReason.REMOTE_BYE and end.by_remote
    assert [(k.key, k.method) for k in heard] == [
        ("1", "rfc4733"),
        ("5", "rfc4733"),
        ("#", "rfc4733"),
        ("7", "sipinfo"),
        ("*", "sipinfo"),
    ]
    # sipp's captures carry 280 ms events; its INFO says Duration=160
    assert all(abs((k.duration or 0) - 0.28) < 0.03 for k in heard[:3])
    assert [k.duration for k in heard[3:]] == [0.16, 0.16]
    assert phone.ua.counters.malformed_dropped == 0


async def test_a_caller_behind_nat_is_learned_and_heard(tmp_path: Path, phone: Phone) -> None:
    """sipp's offer names 127.0.0.9 (its "private" address, which never sends) while its RTP
    comes from 127.0.0.1: strict RTP learns the real source after its probation packets and
    the keys are heard; nothing is counted as a stranger's."""
    assert phone.strict_rtp
    calls, heard = answer_every_call(phone)
    scenario = dtmf_scenario("15#", "", sdp_address="127.0.0.9")
    result = await run_sipp(scenario, phone.sip_address, tmp_path / "sipp")
    assert result.returncode == 0, result.explain()
    (call,) = calls
    await call.wait_ended(5)
    assert call.session is not None
    guard = call.session.guard
    assert guard.expected is not None and guard.expected[0] == "127.0.0.9"
    assert guard.learned == 1 and guard.source is not None and guard.source[0] == "127.0.0.1"
    assert call.session.remote == guard.source  # and we answer there (symmetric RTP)
    for _ in range(50):
        if len(heard) == 3:
            break
        await asyncio.sleep(0.05)
    assert [(k.key, k.method) for k in heard] == [
        ("1", "rfc4733"),
        ("5", "rfc4733"),
        ("#", "rfc4733"),
    ]
    assert guard.on_trial == PROBATION - 1 and guard.dropped == phone.rtp_foreign_dropped == 0
