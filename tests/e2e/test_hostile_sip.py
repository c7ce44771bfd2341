"""Our Phone against hostile SIP over real loopback sockets: a final answer for every INVITE,
no socket or task left behind."""

from __future__ import annotations

import asyncio

from dtmfgraph.media.phone import Phone

from ..sip.hostile import invite, sdp
from .answering import answer_every_call
from .raw_sip import final_response


async def test_a_nul_in_the_sdp_address_gets_488_and_binds_nothing(phone: Phone) -> None:
    """``c=IN IP4 127.0.0.1\\x00``: 488 at once; no call, no RTP socket (before: 200 OK, a
    TypeError on every packet, and two sockets that stayed bound for good)."""
    calls, _ = answer_every_call(phone)
    for n in range(3):
        response = await final_response(
            lambda port, n=n: invite(
                sdp("127.0.0.1\x00"),
                target=phone.sip_address,
                via_port=port,
                call_id=f"nul-{n}",
            ).decode(),
            phone.sip_address,
        )
        assert response.startswith("SIP/2.0 488"), response
    await asyncio.sleep(0.05)
    assert calls == [] and phone.calls == []
