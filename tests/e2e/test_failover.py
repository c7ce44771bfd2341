"""RFC 3263 4.3 with real servers: DNS (dnsmasq) names several servers for one domain; the
first is down or answers 503, and the call or the registration goes to the next one."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from dtmfgraph.media import SipResolver
from dtmfgraph.media.phone import DialError, Phone
from dtmfgraph.sip import SipTimers

from ..api.harness import Receiver, stop
from ..judges.baresip import Baresip
from ..judges.dnsmasq import Dnsmasq
from ..judges.kamailio import Kamailio
from ..judges.ports import silent_udp_port
from ..judges.sipp import sipp_uas, uas_reject_scenario
from .test_graph_sip import keys_reach_baresip_then_hang_up, start_sip_service


@contextlib.asynccontextmanager
async def dead_server() -> AsyncIterator[int]:
    """A SIP server that is down (:func:`silent_udp_port`), for an ``async with`` group."""
    with silent_udp_port() as port:
        yield port


def two_servers(workdir: Path, first_port: int, second_port: int) -> Dnsmasq:
    """``pbx.test``: SRV priority 10 names ``first.pbx.test`` on ``first_port``, priority 20
    ``second.pbx.test`` on ``second_port`` (both 127.0.0.1)."""
    return Dnsmasq(
        workdir,
        srv=[
            ("_sip._udp.pbx.test", "first.pbx.test", first_port, 10, 10),
            ("_sip._udp.pbx.test", "second.pbx.test", second_port, 20, 10),
        ],
        hosts={"first.pbx.test": "127.0.0.1", "second.pbx.test": "127.0.0.1"},
    )


async def _phone(dns: Dnsmasq, **kw: object) -> Phone:
    resolver = SipResolver(dns.address)
    phone = await Phone.start("127.0.0.1", 0, resolver=resolver, **kw)  # type: ignore[arg-type]
    phone.failover_after = 1.0
    return phone


async def test_a_call_goes_to_the_next_server_when_the_first_is_down(tmp_path: Path) -> None:
    async with (
        dead_server() as down,
        Baresip(tmp_path / "bs") as bs,
        two_servers(tmp_path / "dns", down, bs.sip_port) as dns,
    ):
        phone = await _phone(dns)
        try:
            loop = asyncio.get_running_loop()
            began = loop.time()
            call = await phone.dial(f"sip:{bs.user}@pbx.test", timeout=10)
            took = loop.time() - began
            await call.send_dtmf("42", method="rfc4733")
            await bs.wait_for(lambda b: b.rfc4733_keys() == "42", 5, "keys 42")
            await call.hangup()
            await bs.wait_event("CALL_CLOSED", 5)
            # the next call tries the server that answered first
            again = await phone.dial(f"sip:{bs.user}@pbx.test", timeout=10)
            await again.hangup()
        finally:
            await phone.close()
    assert phone.failovers == 1
    assert 1.0 <= took < 16  # gave up on the first after failover_after, not Timer B (32 s)
    # and the second call went to the server that answered: no second failover (above)


async def test_a_503_sends_the_call_to_the_next_server(tmp_path: Path) -> None:
    async with (
        Baresip(tmp_path / "bs") as bs,
        sipp_uas(tmp_path / "sipp", uas_reject_scenario(503, "Service Unavailable")) as (
            busy,
            sipp,
        ),
    ):
        async with two_servers(tmp_path / "dns", busy, bs.sip_port) as dns:
            phone = await _phone(dns)
            try:
                call = await phone.dial(f"sip:{bs.user}@pbx.test", timeout=10)
                await bs.wait_event("CALL_ESTABLISHED", 5)
                await call.hangup()
            finally:
                await phone.close()
        await asyncio.wait_for(sipp.wait(), 10)
        assert sipp.returncode == 0  # it got our INVITE, said 503 and got the ACK
    assert phone.failovers == 1


async def test_other_refusals_do_not_fail_over(tmp_path: Path) -> None:
    """A 486 is the callee's answer, not the server's trouble: no second server is tried."""
    async with (
        Baresip(tmp_path / "bs") as bs,
        sipp_uas(tmp_path / "sipp", uas_reject_scenario(486, "Busy Here")) as (busy, _sipp),
        two_servers(tmp_path / "dns", busy, bs.sip_port) as dns,
    ):
        phone = await _phone(dns)
        try:
            with pytest.raises(DialError) as info:
                await phone.dial(f"sip:{bs.user}@pbx.test", timeout=10)
            assert info.value.status == 486
            await asyncio.sleep(0.3)
            assert not bs.of_type("CALL_INCOMING")
        finally:
            await phone.close()
    assert phone.failovers == 0


async def test_a_registration_moves_to_the_next_registrar_at_once(tmp_path: Path) -> None:
    """The first registrar never answers: after Timer F (2 s here) the REGISTER goes
    to Kamailio, the second, at once (not retry_s later), and Kamailio holds the binding."""
    async with (
        dead_server() as down,
        Kamailio(tmp_path / "kam", users={"bot": "bot-secret"}) as kam,
        two_servers(tmp_path / "dns", down, kam.port) as dns,
    ):
        phone = await _phone(dns, timers=SipTimers(timer_f=2.0))
        try:
            reg = await phone.register(
                "sip:bot@pbx.test", auth=("bot", "bot-secret"), expires=60, retry_s=300
            )
            assert reg.destination == ("127.0.0.1", down)
            await reg.wait(timeout=8)
            assert reg.destination == ("127.0.0.1", kam.port)
            assert (reg.failures, phone.failovers) == (1, 1)
            await kam.wait_bound("bot", 5)
        finally:
            await phone.close()


async def test_the_graph_service_fails_over_and_counts_it(
    tmp_path: Path, receiver: Receiver
) -> None:
    """Through the official SDK: the call to ``sip:alice@pbx.test`` gets past the dead first
    server (``--sip-failover-after 1``) to baresip, which hears the keys; /metrics counts it."""
    async with (
        dead_server() as down,
        Baresip(tmp_path / "bs") as bs,
        two_servers(tmp_path / "dns", down, bs.sip_port) as dns,
    ):
        service, server, task = await start_sip_service(
            tmp_path / "svc",
            receiver,
            sip_dns_server=f"127.0.0.1:{dns.port}",
            sip_failover_after_s=1.0,
        )
        try:
            target = f"sip:{bs.user}@pbx.test"
            await keys_reach_baresip_then_hang_up(service, receiver, bs, target, "19", "rfc4733")
            async with httpx.AsyncClient() as http:
                text = (await http.get(f"{service.base}/metrics")).text
        finally:
            await stop(server, task)
    assert "dtmfgraph_sip_failovers_total 1.0" in text.splitlines()
