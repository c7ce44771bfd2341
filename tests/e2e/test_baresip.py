"""Our Phone against baresip 1.0, a real SIP phone: it reports what it received from us."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from dtmfgraph.media import RtpSession
from dtmfgraph.media.phone import (
    CallEndedError,
    EndReason,
    HeardKey,
    IncomingInvite,
    Phone,
    PhoneCall,
    SendMethod,
)
from dtmfgraph.tones import detect

from ..judges.baresip import Baresip
from ..judges.spandsp import spandsp_detect

ALL_KEYS = "0123456789*#ABCD"


async def _closed(bs: Baresip) -> None:
    await bs.wait_event("CALL_CLOSED", timeout=5)


async def test_rfc4733_reaches_baresip(tmp_path: Path, phone: Phone) -> None:
    async with Baresip(tmp_path / "bs") as bs:
        call = await phone.dial(bs.uri, timeout=10)
        assert call.telephone_event_pt == 101
        result = await call.send_dtmf(ALL_KEYS, method="rfc4733", tone_ms=100, gap_ms=100)
        assert (result.method, result.keys_sent, result.keys_left) == ("rfc4733", 16, 0)
        await bs.wait_for(lambda b: len(b.rfc4733_keys()) >= 16, 5, "16 RFC 4733 keys")
        end = await call.hangup()
        assert end.reason is EndReason.LOCAL_BYE
        await _closed(bs)
    assert bs.dtmf_starts() == ALL_KEYS
    assert bs.rfc4733_keys() == ALL_KEYS
    assert bs.info_keys() == ""


async def test_sipinfo_reaches_baresip(tmp_path: Path, phone: Phone) -> None:
    async with Baresip(tmp_path / "bs") as bs:
        call = await phone.dial(bs.uri, timeout=10)
        result = await call.send_dtmf(ALL_KEYS, method="sipinfo", tone_ms=80, gap_ms=60)
        assert (result.method, result.keys_sent, result.keys_left) == ("sipinfo", 16, 0)
        # one INFO per key, each waited for: never faster than 15 * (tone + gap)
        assert result.elapsed >= 15 * 0.14 - 0.02
        await bs.wait_for(lambda b: len(b.info_keys()) >= 16, 5, "16 INFO keys")
        await call.hangup()
        await _closed(bs)
    assert bs.info_keys() == ALL_KEYS
    assert bs.dtmf_starts() == ALL_KEYS  # baresip reports INFO DTMF as CALL_DTMF_START too
    assert bs.rfc4733_keys() == ""


def _decode_both(bs: Baresip) -> tuple[str, str]:
    audio = bs.recorded_audio()
    assert len(audio) > 8000, "baresip recorded less than a second of our audio"
    ours = "".join(d.key for d in detect(audio))
    return spandsp_detect(audio), ours


@pytest.mark.parametrize("codec", ["PCMU", "PCMA"])
async def test_inband_reaches_baresip(tmp_path: Path, phone: Phone, codec: str) -> None:
    async with Baresip(tmp_path / "bs", codecs=codec, record=True) as bs:
        call = await phone.dial(bs.uri, timeout=10)
        assert call.codec is not None and call.codec.name == codec
        await asyncio.sleep(0.2)  # some silence first, as a phone would send
        result = await call.send_dtmf(ALL_KEYS, method="inband", tone_ms=100, gap_ms=100)
        assert (result.method, result.keys_sent) == ("inband", 16)
        await asyncio.sleep(0.3)
        await call.hangup()
        await _closed(bs)
    assert bs.dtmf_starts() == "", "in-band keys must not arrive as events"
    assert _decode_both(bs) == (ALL_KEYS, ALL_KEYS)


async def test_auto_falls_back_to_inband_without_telephone_event(
    tmp_path: Path, phone: Phone
) -> None:
    # baresip 1.0 always offers telephone-event and has no switch to stop that; it does
    # answer without it when the offer has none, which is what we make it do here.
    async with Baresip(tmp_path / "bs", record=True) as bs:
        call = await phone.dial(bs.uri, timeout=10, telephone_event=False)
        assert call.telephone_event_pt is None
        assert call.media is not None and call.media.telephone_event_pt is None
        assert call.resolve_method("auto") == "inband"
        await asyncio.sleep(0.2)
        result = await call.send_dtmf("159#", method="auto")
        assert result.method == "inband"
        await asyncio.sleep(0.3)
        await call.hangup()
        await _closed(bs)
    assert bs.dtmf_starts() == ""
    assert _decode_both(bs) == ("159#", "159#")


async def test_auto_uses_rfc4733_when_negotiated(tmp_path: Path, phone: Phone) -> None:
    async with Baresip(tmp_path / "bs") as bs:
        call = await phone.dial(bs.uri, timeout=10)
        result = await call.send_dtmf("42", method="auto")
        assert result.method == "rfc4733"
        await bs.wait_for(lambda b: b.rfc4733_keys() == "42", 5, "keys 42")
        await call.hangup()


async def _answered_call(phone: Phone) -> asyncio.Future[PhoneCall]:
    future: asyncio.Future[PhoneCall] = asyncio.get_running_loop().create_future()

    async def on_incoming(invite: IncomingInvite) -> None:
        future.set_result(await invite.answer())

    phone.on_incoming = on_incoming
    return future


async def _baresip_calls_in(
    bs: Baresip, phone: Phone, answered: asyncio.Future[PhoneCall]
) -> PhoneCall:
    """baresip calls ``phone``; the call once both sides have it established."""
    await bs.dial(phone.uri)
    call = await asyncio.wait_for(answered, 5)
    await call.wait_established(5)
    await bs.wait_event("CALL_ESTABLISHED", 5)
    return call


async def test_baresip_calls_us_and_presses_keys(tmp_path: Path, phone: Phone) -> None:
    answered = await _answered_call(phone)
    async with Baresip(tmp_path / "bs", answer=False) as bs:
        call = await _baresip_calls_in(bs, phone, answered)
        assert call.telephone_event_pt is not None
        for key in ALL_KEYS:
            await bs.sndcode(key)
        heard: list[HeardKey] = []
        while len(heard) < len(ALL_KEYS):
            heard.append(await call.next_key(5))
        await asyncio.sleep(0.5)  # a second report of any key would show up here
        await bs.hangup()
        end = await call.wait_ended(5)
    assert "".join(k.key for k in heard) == ALL_KEYS
    assert {k.method for k in heard} == {"rfc4733"}
    assert end.reason is EndReason.REMOTE_BYE and end.by_remote
    rest = [k async for k in call.keys_heard()]
    assert rest == [], f"keys reported twice: {rest}"


@pytest.mark.parametrize("method", ["rfc4733", "sipinfo", "inband"])
async def test_far_end_hangs_up_during_a_send(
    tmp_path: Path, phone: Phone, method: SendMethod
) -> None:
    async with Baresip(tmp_path / "bs") as bs:
        call = await phone.dial(bs.uri, timeout=10)
        send = asyncio.create_task(call.send_dtmf(ALL_KEYS, method=method))  # ~3.2 s
        await asyncio.sleep(0.7)
        await bs.hangup()
        with pytest.raises(CallEndedError) as info:
            await asyncio.wait_for(send, 5)
    error = info.value
    assert error.end.reason is EndReason.REMOTE_BYE
    assert "far end hung up" in str(error)
    assert 0 < error.keys_sent < 16 and error.keys_left == 16 - error.keys_sent
    assert call.ended is error.end


async def test_cancel_stops_at_a_key_boundary(tmp_path: Path, phone: Phone) -> None:
    async with Baresip(tmp_path / "bs") as bs:
        call = await phone.dial(bs.uri, timeout=10)
        send = asyncio.create_task(call.send_dtmf(ALL_KEYS, method="rfc4733"))
        await asyncio.sleep(0.75)
        call.cancel_dtmf()
        result = await asyncio.wait_for(send, 5)
        assert result.cancelled and 0 < result.keys_sent < 16
        assert result.keys_left == 16 - result.keys_sent
        await asyncio.sleep(0.4)
        # the asyncio way: cancel the awaiting task; last_dtmf tells what was left
        send = asyncio.create_task(call.send_dtmf("9876", method="sipinfo", tone_ms=100))
        await asyncio.sleep(0.3)
        send.cancel()
        with pytest.raises(asyncio.CancelledError):
            await send
        info = call.last_dtmf
        assert info is not None and info.cancelled and info.method == "sipinfo"
        assert info.keys_left == 4 - info.keys_sent
        await asyncio.sleep(0.4)
        send = asyncio.create_task(call.send_dtmf("1234", method="rfc4733"))
        await asyncio.sleep(0.3)
        send.cancel()
        with pytest.raises(asyncio.CancelledError):
            await send
        await asyncio.sleep(0.4)  # the key that was sounding is finished, then counted
        events = call.last_dtmf
        assert events is not None and events.cancelled and events.method == "rfc4733"
        assert 0 < events.keys_sent < 4 and events.keys_left == 4 - events.keys_sent
        await call.hangup()
        await _closed(bs)
    sent = ALL_KEYS[: result.keys_sent] + "1234"[: events.keys_sent]
    assert bs.rfc4733_keys() == sent
    assert bs.info_keys() == "9876"[: info.keys_sent]


@pytest.mark.parametrize("strict", [True, False])
async def test_a_stranger_cannot_press_keys_in_a_call(tmp_path: Path, strict: bool) -> None:
    """While baresip presses 1 and 2, a third party sends RFC 4733 9s and in-band 8s to our
    call's RTP port. Strict RTP (the default) hears only baresip's keys and counts the rest;
    without it the stranger's keys get in (which is why it is on)."""
    phone = await Phone.start("127.0.0.1", 0, strict_rtp=strict)
    try:
        answered = await _answered_call(phone)
        async with Baresip(tmp_path / "bs", answer=False) as bs:
            call = await _baresip_calls_in(bs, phone, answered)
            assert call.session is not None
            pacer = phone.pacer
            ours = call.session.local_address
            stranger = await RtpSession.open(pacer, remote=ours, receive=False)
            inband = await RtpSession.open(pacer, remote=ours, receive=False)
            attack = asyncio.gather(
                stranger.send_dtmf("999", method="rfc4733", tone_ms=80, gap_ms=80),
                inband.send_dtmf("88", method="inband", tone_ms=80, gap_ms=80),
            )
            for key in "12":
                await bs.sndcode(key)
            await attack
            await asyncio.sleep(0.6)
            await bs.hangup()
            await call.wait_ended(5)
            heard = [k.key async for k in call.keys_heard()]
            for session in (stranger, inband):
                await session.close()
    finally:
        await phone.close()
    if strict:
        assert heard == ["1", "2"]
        assert phone.rtp_foreign_dropped >= 40  # two streams of 20 ms packets for ~0.5 s
    else:
        # the injected events get in (the in-band 8s do not: audio is taken from the first
        # audio SSRC heard, here baresip's)
        assert sorted(heard) == sorted("12" + "999")
        assert phone.rtp_foreign_dropped == 0


async def test_rtcp_with_baresip(tmp_path: Path, phone: Phone) -> None:
    """baresip reports on our stream (RTCP RR/SR with our SSRC): we get the round-trip time
    and its loss figures; it gets ours (its own CNAME comes back in its reports to us)."""
    phone.rtcp_interval = 1.0
    async with Baresip(tmp_path / "bs") as bs:
        call = await phone.dial(bs.uri, timeout=10)
        await call.send_dtmf("12", method="rfc4733", tone_ms=100, gap_ms=100)
        stats = call.rtcp
        assert stats is not None
        loop = asyncio.get_running_loop()
        end = loop.time() + 20
        while stats.rtt is None and loop.time() < end:
            await asyncio.sleep(0.1)
        assert stats.rtt is not None, f"no report from baresip on our stream: {stats}"
        assert 0.0 <= stats.rtt < 0.1  # loopback
        assert stats.peer_lost == 0 and stats.peer_fraction_lost == 0.0
        assert stats.peer_cname, "baresip's reports carry its CNAME"
        assert stats.malformed == 0 and stats.foreign == 0
        assert stats.sent >= 2
        await call.hangup()
        await _closed(bs)
    for _ in range(50):  # the call's media closes just after its end, then it is counted
        if phone.rtcp_totals.sent:
            break
        await asyncio.sleep(0.05)
    assert phone.rtcp_totals.received >= stats.received >= 1
    assert phone.rtcp_totals.sent == stats.sent  # our BYE included
