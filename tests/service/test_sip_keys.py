"""``SipMediaCall.dtmf_keys_sent`` on real SIP calls (two SipMedia backends over loopback UDP)."""

from __future__ import annotations

import asyncio
import contextlib

from dtmfgraph.media.udp import PortRange
from dtmfgraph.service.media import IncomingCall, MediaCall
from dtmfgraph.service.sip_media import SipMedia


async def test_keys_sent_counts_whole_keys_and_cancel() -> None:
    a = SipMedia(sip_host="127.0.0.1", sip_port=0, rtp_ports=PortRange(31000, 31099, even=True))
    b = SipMedia(sip_host="127.0.0.1", sip_port=0, rtp_ports=PortRange(31100, 31199, even=True))
    answered: asyncio.Future[MediaCall] = asyncio.get_running_loop().create_future()

    async def on_incoming(inc: IncomingCall) -> None:
        answered.set_result(await inc.answer())

    async def ignore(_: IncomingCall) -> None:
        return None

    await a.start(ignore)
    await b.start(on_incoming)
    try:
        host, port = b.sip_address
        call = await a.dial(f"sip:bot@{host}:{port}", timeout=5)
        far = await asyncio.wait_for(answered, 5)
        assert call.dtmf_keys_sent == 0
        await call.send_dtmf("12#", method="rfc4733", tone_ms=40, gap_ms=40)
        assert call.dtmf_keys_sent == 3
        await call.send_dtmf("9", method="sipinfo", tone_ms=40, gap_ms=40)
        assert call.dtmf_keys_sent == 4
        for method in ("rfc4733", "sipinfo"):
            before = call.dtmf_keys_sent
            send = asyncio.ensure_future(
                call.send_dtmf("5" * 40, method=method, tone_ms=60, gap_ms=60)
            )
            await asyncio.sleep(0.3)
            send.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await send
            sent = call.dtmf_keys_sent - before
            assert 1 <= sent < 40, (method, sent)
        await call.hangup()
        await far.hangup()
    finally:
        await a.close()
        await b.close()
