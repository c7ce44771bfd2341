"""Where a SIP URI's requests go: RFC 3263's server location.

* an IP address: that address, at the URI's port (5060 when none, 5061 for TLS);
* a host name with a port: its address (A or AAAA, by the SIP socket's family);
* a host name without a port: the SRV records ``_sip._udp.<name>`` (``_sip._tcp`` for a URI
  with ``;transport=tcp``, ``_sips._tcp`` for ``sips:`` or ``;transport=tls``; RFC 2782
  order: lowest priority first, weighted random within a priority), the first target's
  address and port; a name with no SRV records (or whose lookup fails) is used as if it had
  port 5060 (5061 for TLS). NAPTR is not queried: the URI's transport parameter (UDP without
  one) is taken as given, as RFC 3263 4.1 allows a client that knows its transport.

Names go to the system's resolver (``getaddrinfo``, so ``/etc/hosts`` counts) unless a DNS
server is named, which then answers every query.

:meth:`SipResolver.resolve_all` lists every destination in that order (each SRV target's
addresses in turn, at most :data:`MAX_DESTINATIONS`): the phone tries the next one when a
server does not answer or answers 503 (RFC 3263 4.3).
"""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import dns.asyncresolver
import dns.exception
import dns.inet
import dns.rdatatype
import dns.resolver

from ..sip.grammar import is_ip_address
from ..sip.uri import SipUri
from .udp import Address, MediaError

DEFAULT_TIMEOUT_S: Final = 5.0
"""Longest a whole resolution may take."""
SRV_TIMEOUT_S: Final = 2.0
"""Longest the SRV query may take before the name is tried as a plain host."""
MAX_DESTINATIONS: Final = 8
"""Destinations :meth:`SipResolver.resolve_all` lists at most."""


class ResolveError(MediaError):
    """A SIP target whose address cannot be found (the message says why)."""


@dataclass(frozen=True, slots=True)
class SrvRecord:
    """One SRV answer: ``priority``, ``weight``, ``port``, ``target`` (no trailing dot)."""

    priority: int
    weight: int
    port: int
    target: str


def srv_order(records: Sequence[SrvRecord], rng: random.Random) -> list[SrvRecord]:
    """RFC 2782 order: by priority; within a priority, repeatedly pick at random with
    probability proportional to weight, from a list in random order with the records of weight
    0 at its start (so they are picked rarely, and evenly when all weigh 0)."""
    out: list[SrvRecord] = []
    for priority in sorted({r.priority for r in records}):
        group = [r for r in records if r.priority == priority]
        rng.shuffle(group)
        group.sort(key=lambda r: r.weight > 0)
        while group:
            total = sum(r.weight for r in group)
            pick = rng.randint(0, total)
            running = 0
            for index, record in enumerate(group):
                running += record.weight
                if running >= pick:
                    out.append(group.pop(index))
                    break
    return out


class SipResolver:
    """Finds the address for a SIP URI. ``nameserver``: a DNS server (``host``, ``port``) that
    answers every query instead of the system's resolver (e.g. a split-horizon server)."""

    def __init__(
        self,
        nameserver: Address | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        rng: random.Random | None = None,
    ) -> None:
        self.nameserver = nameserver
        self.timeout = timeout
        self._rng = rng or random.SystemRandom()
        if nameserver is None:
            try:
                self._dns = dns.asyncresolver.Resolver()  # the system's (/etc/resolv.conf)
            except dns.exception.DNSException:  # no resolver configuration: no SRV lookups
                self._dns = dns.asyncresolver.Resolver(configure=False)
        else:
            self._dns = dns.asyncresolver.Resolver(configure=False)
            self._dns.nameservers = [nameserver[0]]
            self._dns.port = nameserver[1]

    async def resolve(self, uri: SipUri, family: int = socket.AF_INET) -> Address:
        """The address to send ``uri``'s requests to, of ``family``; :class:`ResolveError`."""
        return (await self.resolve_all(uri, family))[0]

    async def resolve_all(self, uri: SipUri, family: int = socket.AF_INET) -> list[Address]:
        """Every address to try for ``uri``, of ``family``, best first (never empty);
        :class:`ResolveError` when there is none."""
        host = uri.host
        if is_ip_address(host):
            return [uri.address]
        try:
            return await asyncio.wait_for(self._resolve_name(uri, family), self.timeout)
        except TimeoutError:
            raise ResolveError(f"cannot resolve {host!r}: timed out") from None

    async def _resolve_name(self, uri: SipUri, family: int) -> list[Address]:
        if uri.port is not None:
            return await self._addresses(uri.host, uri.port, family)
        if uri.secure:
            service, kind = "_sips._tcp", "TLS"
        elif str(uri.params.get("transport") or "").lower() == "tcp":
            service, kind = "_sip._tcp", "TCP"
        else:
            service, kind = "_sip._udp", "UDP"
        records = await self._srv(f"{service}.{uri.host}")
        if not records:
            return await self._addresses(uri.host, uri.address[1], family)
        if len(records) == 1 and records[0].target in ("", "."):
            raise ResolveError(f"{uri.host!r} says it offers no SIP over {kind} (SRV target '.')")
        found: list[Address] = []
        errors: list[str] = []
        for record in srv_order(records, self._rng):
            try:
                addresses = await self._addresses(record.target, record.port, family)
            except ResolveError as exc:  # a target without an address: try the next one
                errors.append(str(exc))
                continue
            found += [a for a in addresses if a not in found]
            if len(found) >= MAX_DESTINATIONS:
                return found[:MAX_DESTINATIONS]
        if not found:
            raise ResolveError("; ".join(errors))
        return found

    async def _srv(self, name: str) -> list[SrvRecord]:
        """The SRV records of ``name`` (none if it has none or the lookup fails)."""
        if not self._dns.nameservers:
            return []
        try:
            answer = await self._dns.resolve(
                name, dns.rdatatype.SRV, lifetime=SRV_TIMEOUT_S, search=False
            )
        except (dns.exception.DNSException, OSError):
            return []
        return [
            SrvRecord(r.priority, r.weight, r.port, r.target.to_text(omit_final_dot=True))
            for r in answer
        ]

    async def _addresses(self, name: str, port: int, family: int) -> list[Address]:
        """``name``'s addresses of ``family`` (in the order given, without repeats): from the
        named DNS server, else from the system's resolver."""
        if self.nameserver is not None:
            kind = dns.rdatatype.AAAA if family == socket.AF_INET6 else dns.rdatatype.A
            try:
                answer = await self._dns.resolve(name, kind, search=False)
            except (dns.exception.DNSException, OSError) as exc:
                raise ResolveError(f"cannot resolve {name!r}: {exc}") from None
            hosts = [str(r.address) for r in answer]
        else:
            loop = asyncio.get_running_loop()
            try:
                found = await loop.getaddrinfo(name, port, family=family, type=socket.SOCK_DGRAM)
            except OSError as exc:
                raise ResolveError(f"cannot resolve {name!r}: {exc}") from None
            hosts = [str(info[4][0]) for info in found]
        if not hosts:
            raise ResolveError(f"{name!r} has no address")
        return [(h, port) for i, h in enumerate(hosts) if h not in hosts[:i]]
