"""Our Phone on its own: failures with clear reasons, malformed SIP, closing. Loopback only."""

from __future__ import annotations

import asyncio
import socket

import pytest

from dtmfgraph.media.phone import (
    CallEndedError,
    DialError,
    DialTimeoutError,
    DtmfError,
    EndReason,
    IncomingInvite,
    Phone,
    PhoneCall,
)

from ..judges.ports import free_udp_port


async def test_peer_that_never_answers_times_out(phone: Phone) -> None:
    # a bound socket that swallows everything: no response at all, not even ICMP
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        loop = asyncio.get_running_loop()
        began = loop.time()
        with pytest.raises(DialTimeoutError) as info:
            await phone.dial(f"sip:nobody@127.0.0.1:{port}", timeout=1.0)
        assert 0.9 < loop.time() - began < 16  # the 1 s dial timeout, not Timer B (32 s)
    error = info.value
    assert (error.status, error.timed_out) == (408, True)
    assert "408" in str(error) and "no answer" in str(error)
    assert phone.calls == []


async def test_nothing_listening_times_out(phone: Phone) -> None:
    port = free_udp_port()
    with pytest.raises(DialTimeoutError):
        await phone.dial(f"sip:nobody@127.0.0.1:{port}", timeout=0.8)


async def test_rejected_call_raises_with_status(phone: Phone) -> None:
    callee = await Phone.start("127.0.0.1", 0)
    try:
        callee.on_incoming = lambda invite: invite.reject(486)
        with pytest.raises(DialError) as info:
            await phone.dial(f"sip:bob@127.0.0.1:{callee.sip_address[1]}", timeout=5)
        assert (info.value.status, info.value.reason) == (486, "Busy Here")
        assert "486 Busy Here" in str(info.value)
        assert not isinstance(info.value, DialTimeoutError)
        # no handler at all: 480
        callee.on_incoming = None
        with pytest.raises(DialError) as info:
            await phone.dial(f"sip:bob@127.0.0.1:{callee.sip_address[1]}", timeout=5)
        assert info.value.status == 480
    finally:
        await callee.close()


async def test_bad_target_is_a_dial_error(phone: Phone) -> None:
    with pytest.raises(DialError, match=r"cannot resolve 'example\.invalid'") as info:
        await phone.dial("sip:bob@example.invalid", timeout=1)
    assert info.value.status == 0 and "not sent" in str(info.value)
    with pytest.raises(DialError):
        await phone.dial("not a uri", timeout=1)
    assert phone.calls == []


async def test_host_name_target_is_resolved(phone: Phone) -> None:
    """A target named by host name goes to the name's address (A/AAAA, as RFC 3263 does when
    the URI has a port); the Request-URI keeps the name."""
    callee = await Phone.start("127.0.0.1", 0)
    seen: list[str] = []

    async def on_incoming(invite: IncomingInvite) -> None:
        seen.append(str(invite.sip.invite.uri))  # type: ignore[union-attr]
        await invite.answer()

    callee.on_incoming = on_incoming
    try:
        port = callee.sip_address[1]
        call = await phone.dial(f"sip:bob@localhost:{port}", timeout=5)
        assert call.established and call.sip.peer_addr == ("127.0.0.1", port)
        assert seen == [f"sip:bob@localhost:{port}"]
        assert (await call.hangup()).reason is EndReason.LOCAL_BYE
    finally:
        await callee.close()


async def _pair(phone: Phone) -> tuple[Phone, asyncio.Future[PhoneCall]]:
    """A second phone that answers every call, and a future for the first call it answers."""
    del phone
    callee = await Phone.start("127.0.0.1", 0)
    answered: asyncio.Future[PhoneCall] = asyncio.get_running_loop().create_future()

    async def on_incoming(invite: IncomingInvite) -> None:
        answered.set_result(await invite.answer())

    callee.on_incoming = on_incoming
    return callee, answered


async def test_phone_to_phone_all_methods_and_bad_keys(phone: Phone) -> None:
    callee, answered = await _pair(phone)
    try:
        call = await phone.dial(f"sip:bob@127.0.0.1:{callee.sip_address[1]}", timeout=5)
        far = await asyncio.wait_for(answered, 5)
        for method in ("rfc4733", "sipinfo", "inband"):
            await call.send_dtmf("1A#", method=method, tone_ms=60, gap_ms=60)
            got = [await far.next_key(2) for _ in range(3)]
            assert [(k.key, k.method) for k in got] == [(k, method) for k in "1A#"]
        await call.send_dtmf("F", method="rfc4733")
        assert (await far.next_key(2)).key == "F"
        with pytest.raises(DtmfError, match="flash"):
            await call.send_dtmf("1F", method="inband")
        with pytest.raises(DtmfError, match="unknown DTMF key"):
            await call.send_dtmf("12X")
        with pytest.raises(DtmfError, match="unknown DTMF method"):
            await call.send_dtmf("1", method="smoke")  # type: ignore[arg-type]
        await far.hangup()
        end = await call.wait_ended(3)
        assert end.reason is EndReason.REMOTE_BYE
        assert far.ended is not None and far.ended.reason is EndReason.LOCAL_BYE
        with pytest.raises(CallEndedError, match="remote-bye"):
            await call.send_dtmf("1")
    finally:
        await callee.close()


async def test_keys_we_send_by_sip_info_that_come_back_in_band_are_echo(phone: Phone) -> None:
    """A gateway plays our INFO keys into a line that echoes them back as audio (here the far
    end plays the same key in-band while our INFO says it): not reported as the far end's; its
    own key afterwards is."""
    callee, answered = await _pair(phone)
    try:
        call = await phone.dial(f"sip:bob@127.0.0.1:{callee.sip_address[1]}", timeout=5)
        far = await asyncio.wait_for(answered, 5)
        await asyncio.gather(
            call.send_dtmf("55", method="sipinfo", tone_ms=200, gap_ms=100),
            far.send_dtmf("55", method="inband", tone_ms=150, gap_ms=150),
        )
        assert [(k.key, k.method) for k in (await far.next_key(2), await far.next_key(2))] == [
            ("5", "sipinfo"),
            ("5", "sipinfo"),
        ]
        await asyncio.sleep(0.8)  # past the echo tail
        await far.send_dtmf("7", method="inband")
        heard = await call.next_key(2)
        assert (heard.key, heard.method) == ("7", "inband")  # the 5s were taken for echo
        assert call.session is not None and call.session.stats is not None
        assert call.session.stats.inband_echo == 2
    finally:
        await callee.close()


@pytest.mark.parametrize("gap_ms", [0, 20])
async def test_last_inband_key_is_heard_when_the_caller_hangs_up_at_once(
    phone: Phone, gap_ms: int
) -> None:
    """A far end that hangs up right after its last in-band key: we still hear that key."""
    callee, answered = await _pair(phone)
    try:
        call = await phone.dial(f"sip:bob@127.0.0.1:{callee.sip_address[1]}", timeout=5)
        far = await asyncio.wait_for(answered, 5)
        await call.send_dtmf("0123456789*#ABCD", method="inband", tone_ms=50, gap_ms=gap_ms)
        await call.hangup()
        heard = [k async for k in far.keys_heard()]
        assert "".join(k.key for k in heard) == "0123456789*#ABCD"
        assert {k.method for k in heard} == {"inband"}
        assert far.ended is not None and far.ended.reason is EndReason.REMOTE_BYE
    finally:
        await callee.close()


async def test_malformed_sip_is_answered_400_or_dropped(phone: Phone) -> None:
    host, port = phone.sip_address
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        me = s.getsockname()[1]
        s.sendto(b"\x00\xff garbage \x01" * 20, (host, port))
        s.sendto(b"INVITE sip:a@b SIP/2.0\r\nVia: nonsense\r\n\r\n", (host, port))
        bad = (
            f"OPTIONS sip:a@127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK-1\r\n"
            "From: <sip:x@127.0.0.1>;tag=1\r\nTo: <sip:a@127.0.0.1>\r\n"
            "Call-ID: bad-1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
            "Content-Length: 999\r\n\r\n"
        ).encode()
        s.sendto(bad, (host, port))
        loop = asyncio.get_running_loop()
        reply = await asyncio.wait_for(loop.sock_recv(s, 65536), 2)
    assert reply.startswith(b"SIP/2.0 400"), reply[:80]
    counters = phone.ua.counters
    assert counters.malformed_dropped >= 2 and counters.bad_requests_answered == 1
    assert phone.transport.stats.agent_errors == 0
    # and the phone still works
    callee, answered = await _pair(phone)
    try:
        call = await phone.dial(f"sip:bob@127.0.0.1:{callee.sip_address[1]}", timeout=5)
        await asyncio.wait_for(answered, 5)
        await call.hangup()
    finally:
        await callee.close()


async def test_close_hangs_up_live_calls() -> None:
    caller = await Phone.start("127.0.0.1", 0)
    callee, answered = await _pair(caller)
    try:
        call = await caller.dial(f"sip:bob@127.0.0.1:{callee.sip_address[1]}", timeout=5)
        far = await asyncio.wait_for(answered, 5)
        await caller.close()
        assert call.ended is not None and call.ended.reason is EndReason.LOCAL_BYE
        assert (await far.wait_ended(3)).reason is EndReason.REMOTE_BYE
        assert [k async for k in call.keys_heard()] == []
    finally:
        await caller.close()
        await callee.close()


async def test_cancelled_dial_sends_cancel(phone: Phone) -> None:
    callee = await Phone.start("127.0.0.1", 0)
    rang: asyncio.Future[IncomingInvite] = asyncio.get_running_loop().create_future()

    def on_incoming(invite: IncomingInvite) -> None:
        invite.ring()
        rang.set_result(invite)

    callee.on_incoming = on_incoming
    try:
        dial = asyncio.create_task(
            phone.dial(f"sip:bob@127.0.0.1:{callee.sip_address[1]}", timeout=5)
        )
        invite = await asyncio.wait_for(rang, 5)
        dial.cancel()
        with pytest.raises(asyncio.CancelledError):
            await dial
        for _ in range(50):
            if invite.ended is not None:
                break
            await asyncio.sleep(0.02)
        assert invite.ended is not None and invite.ended.reason is EndReason.CANCELLED
        with pytest.raises(CallEndedError):
            await invite.answer()
    finally:
        await callee.close()


async def test_rtcp_mux_when_both_sdps_say_so(phone: Phone) -> None:
    """We offer ``a=rtcp-mux`` (RFC 5761) and our own callee takes it: both calls send RTCP on
    their RTP ports (no RTP + 1 socket) and measure the round trip. A callee with RTCP off does
    not take it, and the caller falls back to RTP + 1."""
    callee = await Phone.start("127.0.0.1", 0)
    answered: list[PhoneCall] = []

    async def on_incoming(invite: IncomingInvite) -> None:
        answered.append(await invite.answer())

    callee.on_incoming = on_incoming
    phone.rtcp_mux_offer = True
    phone.rtcp_interval = callee.rtcp_interval = 0.3
    try:
        call = await phone.dial(f"sip:bob@127.0.0.1:{callee.sip_address[1]}", timeout=5)
        assert call.sip.local_sdp is not None and b"a=rtcp-mux" in bytes(call.sip.local_sdp)

        def both_measured() -> bool:
            calls = (call, *answered[:1])
            return len(calls) == 2 and all(c.rtcp and c.rtcp.rtt is not None for c in calls)

        for _ in range(50):
            if both_measured():
                break
            await asyncio.sleep(0.1)
        for c in (call, answered[0]):
            assert c.session is not None and c.session.rtcp_mux
            assert c.session.rtcp_endpoint is None  # no RTP + 1 socket
            assert c.rtcp is not None and c.rtcp.rtt is not None and c.rtcp.received >= 1
            assert c.rtcp.malformed == 0 and c.rtcp.foreign == 0
        assert call.session.rtcp_remote == answered[0].local_rtp  # type: ignore[union-attr]
        await call.hangup()
        callee.rtcp_interval = 0
        call = await phone.dial(f"sip:bob@127.0.0.1:{callee.sip_address[1]}", timeout=5)
        assert call.media is not None and not call.media.rtcp_mux
        assert call.session is not None and not call.session.rtcp_mux
        assert call.session.rtcp_endpoint is not None
        await call.hangup()
    finally:
        await callee.close()
