"""Registration and digest-authenticated calls through Kamailio, a real registrar and proxy.

Kamailio challenges every REGISTER (401) and every new INVITE (407); baresip registers there
as ``alice``. Calls between baresip and our Phone go through Kamailio in both directions, so
they work only if our REGISTER bound our Contact and our digest answers were right.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from dtmfgraph.media import DialError, Phone, PhoneCall, RegistrationError, SipResolver
from dtmfgraph.media.phone import IncomingInvite
from dtmfgraph.sip import RegistrationState

from ..judges.baresip import Baresip
from ..judges.dnsmasq import pbx_domain
from ..judges.kamailio import Kamailio

USERS = {"bot": "bot-secret", "alice": "alice-secret"}


async def test_register_then_a_call_to_our_aor_reaches_us(tmp_path: Path, phone: Phone) -> None:
    async with Kamailio(tmp_path / "kam", dict(USERS)) as kam:
        answered: asyncio.Future[PhoneCall] = asyncio.get_running_loop().create_future()

        async def on_incoming(invite: IncomingInvite) -> None:
            answered.set_result(await invite.answer())

        phone.on_incoming = on_incoming
        phone.transport.udp_keepalive_interval = 0.1  # NAT keep-alives, which Kamailio ignores
        reg = await phone.register(kam.uri("bot"), auth=("bot", "bot-secret"), expires=60)
        await reg.wait(5)
        assert reg.state is RegistrationState.REGISTERED and reg.registered
        assert reg.expires == 60
        async with Baresip(
            tmp_path / "bs", answer=False, registrar=kam.domain, password="alice-secret"
        ) as bs:
            await kam.wait_bound("alice")
            await bs.dial(kam.uri("bot"))
            call = await asyncio.wait_for(answered, 5)
            await call.wait_established(5)
            await bs.wait_event("CALL_ESTABLISHED", 5)
            for key in "159#":
                await bs.sndcode(key)
            heard = [(await call.next_key(5)).key for _ in range(4)]
            await call.hangup()  # our BYE follows Kamailio's Record-Route
            await bs.wait_event("CALL_CLOSED", 5)
        assert "".join(heard) == "159#"
        assert phone.transport.stats.udp_keepalives >= 5
        await reg.unregister()
        assert reg.state is RegistrationState.UNREGISTERED and not reg.registered
        sent = phone.transport.stats.udp_keepalives
        await asyncio.sleep(0.3)
        assert phone.transport.stats.udp_keepalives == sent  # none once unregistered
        requests = kam.requests()
        assert any(r.startswith("REGISTER") and "'bot'" in r for r in requests), requests
        assert any(r.startswith("BYE") for r in requests), requests


async def test_calls_out_through_an_authenticating_proxy(tmp_path: Path, phone: Phone) -> None:
    async with (
        Kamailio(tmp_path / "kam", dict(USERS)) as kam,
        Baresip(tmp_path / "bs", registrar=kam.domain, password="alice-secret") as bs,
    ):
        await kam.wait_bound("alice")
        with pytest.raises(DialError) as refused:
            await phone.dial(kam.uri("alice"), timeout=5)
        assert refused.value.status == 407
        assert "no credentials" in refused.value.detail
        with pytest.raises(DialError) as wrong:
            await phone.dial(kam.uri("alice"), timeout=5, auth=("bot", "not-it"))
        assert wrong.value.status == 407
        assert "credentials rejected" in wrong.value.detail
        call = await phone.dial(kam.uri("alice"), timeout=5, auth=("bot", "bot-secret"))
        await call.send_dtmf("42*", method="rfc4733", tone_ms=80, gap_ms=80)
        await bs.wait_for(lambda b: b.rfc4733_keys() == "42*", 5, "keys 42*")
        await call.hangup()
        await bs.wait_event("CALL_CLOSED", 5)


async def test_bad_password_fails_and_keeps_retrying_then_unregistered_aor_is_unknown(
    tmp_path: Path,
) -> None:
    async with Kamailio(tmp_path / "kam", dict(USERS)) as kam:
        async with (
            await Phone.start("127.0.0.1", 0) as caller,
            await Phone.start("127.0.0.1", 0) as phone,
        ):
            bad = await phone.register(
                kam.uri("bot"), auth=("bot", "wrong"), expires=60, retry_s=0.5
            )
            with pytest.raises(RegistrationError) as failed:
                await bad.wait(1.5)
            assert failed.value.status == 401
            assert "credentials rejected" in failed.value.detail
            await asyncio.sleep(1.0)
            assert bad.failures >= 2, "a failed registration is tried again"
            await bad.unregister()
            # nobody bound: Kamailio knows no contact for bot
            with pytest.raises(DialError) as unknown:
                await caller.dial(kam.uri("bot"), timeout=5, auth=("alice", "alice-secret"))
            assert unknown.value.status == 404
            good = await phone.register(kam.uri("bot"), auth=("bot", "bot-secret"), expires=10)
            await good.wait(5)
            await asyncio.sleep(6.5)  # refreshed halfway through its 10 s
            assert good.registrations >= 2 and good.registered
        # the phone closed: its binding is removed, so calls to bot are refused again
        assert good.state is RegistrationState.UNREGISTERED
        async with await Phone.start("127.0.0.1", 0) as caller:
            with pytest.raises(DialError) as gone:
                await caller.dial(kam.uri("bot"), timeout=5, auth=("alice", "alice-secret"))
            assert gone.value.status == 404
        registers = [r for r in kam.requests() if r.startswith("REGISTER")]
        assert len(registers) >= 8, registers


async def test_register_and_call_by_domain_name_found_through_srv(tmp_path: Path) -> None:
    """``sip:bot@pbx.test`` has no address of its own: its SRV record names Kamailio."""
    async with (
        Kamailio(tmp_path / "kam", dict(USERS)) as kam,
        pbx_domain(tmp_path / "dns", kam.port) as dns,
    ):
        resolver = SipResolver(dns.address)
        async with (
            await Phone.start("127.0.0.1", 0, resolver=resolver) as bot,
            await Phone.start("127.0.0.1", 0, resolver=resolver) as alice,
        ):
            answered: asyncio.Future[PhoneCall] = asyncio.get_running_loop().create_future()

            async def on_incoming(invite: IncomingInvite) -> None:
                answered.set_result(await invite.answer())

            bot.on_incoming = on_incoming
            reg = await bot.register("sip:bot@pbx.test", auth=("bot", "bot-secret"))
            await reg.wait(5)
            call = await alice.dial("sip:bot@pbx.test", timeout=5, auth=("alice", "alice-secret"))
            theirs = await asyncio.wait_for(answered, 5)
            await call.send_dtmf("31", method="sipinfo", tone_ms=60)
            heard = [(await theirs.next_key(5)).key for _ in range(2)]
            await call.hangup()
        assert heard == ["3", "1"]
    assert "SRV _sip._udp.pbx.test" in dns.queries()
    registers = [r for r in kam.requests() if r.startswith("REGISTER sip:pbx.test ")]
    assert registers, kam.requests()
