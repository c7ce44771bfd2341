"""Which source addresses may call us: a list of networks (sans-I/O).

A SIP port reachable from the internet is scanned within minutes (``friendly-scanner``,
``sipvicious``): OPTIONS and INVITEs from anywhere. :class:`SourceAllowlist` holds the networks
(``10.0.0.0/8``, ``203.0.113.7``, ``2001:db8::/32``) whose hosts may start dialogs with us;
:attr:`~dtmfgraph.sip.UserAgent.allow_source` takes it and answers the rest 403.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class SourceAllowlist:
    """Networks whose hosts are allowed; call it with a host to ask. ``ValueError`` names a
    network that does not parse."""

    def __init__(self, networks: Iterable[str]) -> None:
        parsed: list[Network] = []
        for text in networks:
            try:
                parsed.append(ipaddress.ip_network(text.strip(), strict=False))
            except ValueError:
                raise ValueError(
                    f"{text.strip()!r} is not a network (an IP address, or one with a /prefix)"
                ) from None
        if not parsed:
            raise ValueError("no networks given")
        self.networks = tuple(parsed)

    def __repr__(self) -> str:
        return f"SourceAllowlist({', '.join(str(n) for n in self.networks)})"

    def __call__(self, host: str) -> bool:
        """Whether ``host`` (an IP address as a socket reports it) is in one of the networks;
        an IPv4 address mapped into IPv6 (``::ffff:a.b.c.d``) counts as the IPv4 one."""
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)
