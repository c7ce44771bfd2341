"""Strict RTP: which source addresses a session takes packets from (sans-I/O).

Anyone who can reach an RTP port can send to it. Without a check, a stranger's RFC 4733 packets
become keys in someone else's call (and count as "media" for the timeout). :class:`SourceGuard`
decides, per datagram, from its source address and RTP header alone:

* The address the far end's SDP gave (:meth:`SourceGuard.expect`) is accepted at once, and its
  first packet *locks* the session to it.
* Until the session is locked, another address can take its place by sending
  :data:`PROBATION` RTP packets in a row, one SSRC with consecutive sequence numbers: a peer
  behind NAT, whose SDP names its private address. The session then locks to that address
  (:attr:`Verdict.LEARNED`: send there too, symmetric RTP). Its probation packets are dropped
  (:attr:`Verdict.PROBATION`), but not counted as a stranger's.
* Once locked, every other address is dropped and counted, until the SDP names a new address
  (a re-INVITE), which starts over.

With ``strict=False`` every datagram is accepted; with no expected address the first sender is
learned at once (plain latching).
"""

from __future__ import annotations

import enum
import ipaddress
from typing import Final, TypeAlias

from .packet import HEADER, HEADER_SIZE

Address: TypeAlias = tuple[str, int]

PROBATION: Final = 4
"""RTP packets in sequence from one new address that make it the session's source (as the
probation of RFC 3550 A.1 and Asterisk's strict RTP learning)."""
_MAX_SEQ_STEP: Final = 1
"""A probation packet must follow the one before it by exactly this sequence step."""


class Verdict(enum.Enum):
    """What to do with one datagram."""

    ACCEPT = "accept"
    """From the session's source: process it."""
    LEARNED = "learned"
    """From a new source that has just become the session's: send there from now on, process it."""
    PROBATION = "probation"
    """From a new source on probation (a peer behind NAT, perhaps): ignore it, for now."""
    DROP = "drop"
    """From a stranger: ignore it."""


def canonical_host(host: str) -> str:
    """``host`` as a socket reports a sender's address (``::1`` for ``0:0::1``); names as given."""
    try:
        return str(ipaddress.ip_address(host.split("%", 1)[0]))
    except ValueError:
        return host


class SourceGuard:
    """Per-session source check; feed every datagram to :meth:`admit`."""

    __slots__ = (
        "_expected",
        "_locked",
        "_trial",
        "dropped",
        "learned",
        "on_trial",
        "probation",
        "strict",
    )

    def __init__(
        self, expected: Address | None = None, *, strict: bool = True, probation: int = PROBATION
    ) -> None:
        if probation < 1:
            raise ValueError(f"probation must be >= 1 packet, got {probation}")
        self.strict = strict
        self.probation = probation
        self.dropped = 0
        """Datagrams dropped as a stranger's."""
        self.on_trial = 0
        """Datagrams dropped while their source was on probation."""
        self.learned = 0
        """Times a source other than the SDP's was learned."""
        self._expected: Address | None = None
        self._locked: Address | None = None
        self._trial: tuple[str, int, int, int, int] | None = None
        """The address on probation: host, port, SSRC, last sequence number, packets so far."""
        if expected is not None:
            self.expect(expected)

    @property
    def source(self) -> Address | None:
        """The address the session is locked to (None: not yet)."""
        return self._locked

    @property
    def expected(self) -> Address | None:
        """The address the far end's SDP gave (None: none)."""
        return self._expected

    def expect(self, address: Address | None) -> None:
        """The far end's SDP gave ``address`` (None: none, e.g. on hold): accept it, and let
        another address be learned again until one of them has sent."""
        self._expected = (canonical_host(address[0]), address[1]) if address is not None else None
        self._locked = None
        self._trial = None

    def admit(self, data: bytes, addr: tuple[str, int] | tuple[str, int, int, int]) -> Verdict:
        """The verdict on ``data`` received from ``addr`` (as ``recvfrom`` gives it)."""
        locked = self._locked
        if locked is not None and addr[1] == locked[1] and addr[0] == locked[0]:
            return Verdict.ACCEPT
        if not self.strict:
            if self._expected is None and locked is None:
                self._locked = (addr[0], addr[1])
                self.learned += 1
                return Verdict.LEARNED
            return Verdict.ACCEPT
        if locked is None:
            expected = self._expected
            if expected is not None and addr[1] == expected[1] and addr[0] == expected[0]:
                self._locked = expected
                return Verdict.ACCEPT
            trial = self._on_probation(data, addr[0], addr[1])
            if trial >= self.probation:
                self._locked = (addr[0], addr[1])
                self._trial = None
                self.learned += 1
                return Verdict.LEARNED
            if trial:
                self.on_trial += 1
                return Verdict.PROBATION
        self.dropped += 1
        return Verdict.DROP

    def _on_probation(self, data: bytes, host: str, port: int) -> int:
        """Count ``data`` towards ``host:port``'s probation; how many packets in a row it has
        now sent (0: ``data`` is not RTP, which neither counts nor ends another's trial)."""
        if len(data) < HEADER_SIZE or data[0] >> 6 != 2:
            return 0
        _, _, seq, _, ssrc = HEADER.unpack_from(data)
        trial = self._trial
        if (
            trial is not None
            and trial[0] == host
            and trial[1] == port
            and trial[2] == ssrc
            and (seq - trial[3]) & 0xFFFF == _MAX_SEQ_STEP
        ):
            count = trial[4] + 1
        else:
            count = 1
        if count < self.probation:
            self._trial = (host, port, ssrc, seq, count)
        return count
