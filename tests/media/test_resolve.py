"""Where SIP requests go for a host name: RFC 2782 ordering, and SipResolver against dnsmasq."""

from __future__ import annotations

import random
import re
import socket
from collections import Counter
from pathlib import Path

import pytest

from dtmfgraph.media import ResolveError, SipResolver, SrvRecord, srv_order
from dtmfgraph.sip import SipUri

from ..judges.dnsmasq import Dnsmasq


def test_srv_order_priority_first_then_weight() -> None:
    records = [
        SrvRecord(20, 0, 5062, "backup"),
        SrvRecord(10, 90, 5060, "big"),
        SrvRecord(10, 10, 5061, "small"),
    ]
    rng = random.Random(1)
    firsts = Counter(srv_order(records, rng)[0].target for _ in range(2000))
    assert set(firsts) == {"big", "small"}  # priority 20 is never first
    assert 0.85 < firsts["big"] / 2000 < 0.95  # weight 90 of 100
    for _ in range(50):
        order = srv_order(records, rng)
        assert order[-1].target == "backup" and len(order) == 3


def test_srv_order_weight_zero_still_chosen_sometimes() -> None:
    records = [SrvRecord(1, 0, 1, "zero"), SrvRecord(1, 0, 2, "also-zero")]
    rng = random.Random(2)
    firsts = Counter(srv_order(records, rng)[0].target for _ in range(400))
    assert firsts["zero"] > 50 and firsts["also-zero"] > 50


async def _dns(tmp_path: Path) -> Dnsmasq:
    server = Dnsmasq(
        tmp_path / "dns",
        srv=[
            ("_sip._udp.pbx.test", "sip1.pbx.test", 5070, 10, 5),
            ("_sip._udp.pbx.test", "sip2.pbx.test", 5090, 20, 5),
            ("_sip._udp.closed.test", ".", 0, 0, 0),
            ("_sip._tcp.pbx.test", "sip2.pbx.test", 5091, 10, 5),
            ("_sips._tcp.pbx.test", "sip2.pbx.test", 5093, 10, 5),
        ],
        hosts={
            "sip1.pbx.test": "127.0.0.2",
            "sip2.pbx.test": "127.0.0.3",
            "plain.test": "127.0.0.4",
        },
    )
    await server.start()
    return server


async def test_resolver_against_a_real_dns_server(tmp_path: Path) -> None:
    server = await _dns(tmp_path)
    try:
        resolver = SipResolver(server.address)
        # no port: SRV, lowest priority first, that target's address and port
        assert await resolver.resolve(SipUri.parse("sip:bot@pbx.test")) == ("127.0.0.2", 5070)
        # a port: no SRV, the name's own address (pbx.test has none: only its SRV targets do)
        with pytest.raises(ResolveError, match=re.escape("cannot resolve 'pbx.test'")):
            await resolver.resolve(SipUri.parse("sip:bot@pbx.test:5999"))
        assert await resolver.resolve(SipUri.parse("sip:bot@plain.test:5999")) == (
            "127.0.0.4",
            5999,
        )
        # ;transport=tcp: the _sip._tcp records
        assert await resolver.resolve(SipUri.parse("sip:bot@pbx.test;transport=tcp")) == (
            "127.0.0.3",
            5091,
        )
        # sips: or ;transport=tls: the _sips._tcp records; none: the name at 5061
        for uri in ("sips:bot@pbx.test", "sip:bot@pbx.test;transport=tls"):
            assert await resolver.resolve(SipUri.parse(uri)) == ("127.0.0.3", 5093)
        tls = SipUri.parse("sip:bot@plain.test;transport=tls")
        assert await resolver.resolve(tls) == ("127.0.0.4", 5061)
        # no SRV records: the name itself at 5060
        assert await resolver.resolve(SipUri.parse("sip:bot@plain.test")) == ("127.0.0.4", 5060)
        # an IP literal: asked of nobody
        assert await resolver.resolve(SipUri.parse("sip:bot@192.0.2.1:5070")) == (
            "192.0.2.1",
            5070,
        )
        with pytest.raises(ResolveError, match="offers no SIP over UDP"):
            await resolver.resolve(SipUri.parse("sip:bot@closed.test"))
        with pytest.raises(ResolveError, match=re.escape("cannot resolve 'nowhere.test'")):
            await resolver.resolve(SipUri.parse("sip:bot@nowhere.test"))
        with pytest.raises(ResolveError, match=re.escape("cannot resolve 'plain.test'")):
            await resolver.resolve(SipUri.parse("sip:bot@plain.test"), socket.AF_INET6)
    finally:
        await server.stop()
    queries = server.queries()
    assert "SRV _sip._udp.pbx.test" in queries and "A sip1.pbx.test" in queries
    assert "SRV _sip._udp.plain.test" in queries and "A plain.test" in queries
    assert not any("192.0.2.1" in q for q in queries)
    assert not any(q.startswith("SRV") and "5999" in q for q in queries)


async def test_every_server_in_order_for_failover(tmp_path: Path) -> None:
    """resolve_all: each SRV target's addresses in RFC 2782 order (a target without an address
    is skipped), or every address of a name; what the phone walks through when a server does
    not answer or says 503."""
    server = Dnsmasq(
        tmp_path / "dns",
        srv=[
            ("_sip._udp.pbx.test", "sip1.pbx.test", 5070, 10, 5),
            ("_sip._udp.pbx.test", "ghost.pbx.test", 5080, 15, 5),
            ("_sip._udp.pbx.test", "sip2.pbx.test", 5090, 20, 5),
            ("_sip._udp.pbx.test", "sip1.pbx.test", 5070, 30, 5),  # named twice: tried once
            ("_sip._udp.lost.test", "ghost.pbx.test", 5080, 10, 5),
        ],
        hosts={"sip1.pbx.test": "127.0.0.2", "sip2.pbx.test": "127.0.0.3 127.0.0.4"},
    )
    await server.start()
    try:
        resolver = SipResolver(server.address)
        first, *rest = await resolver.resolve_all(SipUri.parse("sip:bot@pbx.test"))
        assert first == ("127.0.0.2", 5070)
        assert sorted(rest) == [("127.0.0.3", 5090), ("127.0.0.4", 5090)]  # the server's order
        assert sorted(await resolver.resolve_all(SipUri.parse("sip:bot@sip2.pbx.test:7"))) == [
            ("127.0.0.3", 7),
            ("127.0.0.4", 7),
        ]
        assert await resolver.resolve_all(SipUri.parse("sip:bot@192.0.2.1")) == [
            ("192.0.2.1", 5060)
        ]
        with pytest.raises(ResolveError, match=re.escape("cannot resolve 'ghost.pbx.test'")):
            await resolver.resolve_all(SipUri.parse("sip:bot@lost.test"))
    finally:
        await server.stop()


async def test_system_resolver_uses_hosts_file_names() -> None:
    # localhost comes from /etc/hosts through getaddrinfo; it has no SRV records anywhere
    resolver = SipResolver()
    assert await resolver.resolve(SipUri.parse("sip:bot@localhost:5070")) == ("127.0.0.1", 5070)


async def test_without_a_resolver_configuration_names_still_resolve(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import dns.resolver

    def no_configuration(self: object, filename: object) -> None:
        raise dns.resolver.NoResolverConfiguration("no /etc/resolv.conf")

    monkeypatch.setattr(dns.resolver.Resolver, "read_resolv_conf", no_configuration)
    resolver = SipResolver()  # a container without /etc/resolv.conf: no SRV, getaddrinfo only
    assert await resolver.resolve(SipUri.parse("sip:bot@localhost")) == ("127.0.0.1", 5060)
