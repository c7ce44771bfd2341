"""The Graph service behind Kamailio, a real registrar and authenticating proxy.

``serve --sip-trunk pbx.test --sip-auth-user bot --sip-register sip:bot@pbx.test
--sip-dns-server <dnsmasq>``: pbx.test has no address, only an SRV record naming Kamailio. The
service's INVITEs through the trunk are challenged (407) and must carry bot's digest; its
REGISTER is challenged (401) and binds sip:bot@pbx.test to it, so a call to bot reaches the
service; at shutdown the binding is removed. baresip, registered there too, is the far end.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from ..api.harness import Receiver, stop
from ..judges.baresip import Baresip, require_baresip
from ..judges.dnsmasq import pbx_domain
from ..judges.kamailio import Kamailio
from .test_graph_sip import (
    answer_incoming,
    call_url,
    code,
    is_call_state,
    keys_reach_baresip_then_hang_up,
    start_sip_service,
    wait_incoming,
)

NUMBER = "+14255550100"
USERS = {"bot": "bot-secret", NUMBER: "phone-secret"}


async def _registered_gauge(base: str, aor: str) -> float | None:
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"{base}/metrics")).text
    for line in text.splitlines():
        if line.startswith("dtmfgraph_sip_registered{") and f'aor="{aor}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_graph_calls_out_and_in_through_kamailio(tmp_path: Path, receiver: Receiver) -> None:
    require_baresip()
    aor = "sip:bot@pbx.test"
    async with (
        Kamailio(tmp_path / "kam", dict(USERS)) as kam,
        pbx_domain(tmp_path / "dns", kam.port) as dns,
    ):
        service, server, task = await start_sip_service(
            tmp_path / "svc",
            receiver,
            sip_trunk_uri="pbx.test",
            sip_dns_server=f"127.0.0.1:{dns.port}",
            sip_auth_user="bot",
            sip_auth_password="bot-secret",
            sip_register=aor,
            sip_register_expires=60,
        )
        try:
            await kam.wait_bound("bot")
            for _ in range(50):
                if await _registered_gauge(service.base, aor) == 1.0:
                    break
                await asyncio.sleep(0.1)
            assert await _registered_gauge(service.base, aor) == 1.0
            async with Baresip(
                tmp_path / "bs",
                user=NUMBER,
                answer=True,
                registrar=kam.domain,
                password="phone-secret",
            ) as bs:
                await kam.wait_bound(NUMBER)
                # out: an E.164 target through the trunk, which demands bot's credentials
                await keys_reach_baresip_then_hang_up(
                    service, receiver, bs, NUMBER, "159#", "rfc4733"
                )

                # in: baresip calls bot (at Kamailio's address: it has no DNS of ours); Kamailio
                # relays it to the contact the service registered
                await bs.dial(kam.uri("bot"))
                created, incoming = await wait_incoming(service, receiver)
                cid = created["resourceData"]["id"]
                await answer_incoming(incoming, receiver)
                await receiver.wait_for(is_call_state(cid, "established"))
                await incoming.delete()
                await bs.wait_event("CALL_CLOSED", 5, count=2)
                [end] = await receiver.wait_for(
                    lambda n: n["changeType"] == "deleted" and n["resourceUrl"] == call_url(cid)
                )
                assert code(end) == (200, 7000)
        finally:
            await stop(server, task)
        # shutting down removed our binding: Kamailio saved an Expires: 0 REGISTER of bot
        bound = [line for line in kam.log().splitlines() if "bound: bot " in line]
        assert bound and "expires '0' " in bound[-1], bound
        methods = [r.split()[0] for r in kam.requests()]
        assert methods.count("INVITE") >= 4, kam.requests()  # each challenged once: 2 calls
        assert any(r.startswith(f"INVITE sip:{NUMBER}@pbx.test ") for r in kam.requests())
        assert "SRV _sip._udp.pbx.test" in dns.queries()
