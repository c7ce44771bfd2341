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
  (a re-INVITE), which starts over; except the locked stream itself moving (a NAT rebinding:
  the far end's NAT gives it a new public port in the middle of a call). A new address that
  sends :data:`PROBATION` packets in a row *continuing the locked stream closely* (its SSRC,
  its first sequence number at most :data:`MAX_MOVE_JUMP` ahead of the last one accepted),
  while the old address sends nothing, and only once the old address has been silent for
  :data:`MOVE_SILENCE_S` (given ``now``), becomes the source (:attr:`Verdict.LEARNED`,
  counted in :attr:`SourceGuard.moved`). A stranger would need the stream's 32-bit SSRC and
  current sequence number, which only a party on the path sees (and one on the path can
  inject anyway; SRTP, checked before this, stops that); and since the jump is capped, the
  real far end, if it was only quiet, is followed back as soon as it speaks again.

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
MAX_MOVE_JUMP: Final = 100
"""A moved stream's first packet must be ahead of the last one accepted by at most this (2 s of
20 ms packets: what a NAT rebinding loses; it was half the sequence space, which let a stranger
that knew the SSRC jump 32,767 ahead and lock the real far end out for minutes)."""
MOVE_SILENCE_S: Final = 0.1
"""A move completes only once the old address has sent nothing for this long."""
_RTCP_TYPES: Final = range(72, 77)
"""Second-byte values (marker bit off) of RTCP packets (200-204) multiplexed on the RTP port."""


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
        "_last",
        "_last_at",
        "_locked",
        "_trial",
        "dropped",
        "learned",
        "moved",
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
        """Times a source other than the SDP's was learned (moves included)."""
        self.moved = 0
        """Times the locked stream moved to a new address (a NAT rebinding)."""
        self._expected: Address | None = None
        self._locked: Address | None = None
        self._last: bytes | None = None
        """The last datagram accepted from the locked address."""
        self._last_at: float | None = None
        """When it came (``None``: no time given)."""
        self._trial: tuple[str, int, int, int, int, bytes | None] | None = None
        """The address on probation: host, port, SSRC, last sequence number, packets so far,
        and (for a move) the last datagram of the old address when the trial began."""
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
        self._last = None
        self._trial = None

    def admit(
        self,
        data: bytes,
        addr: tuple[str, int] | tuple[str, int, int, int],
        now: float | None = None,
    ) -> Verdict:
        """The verdict on ``data`` received from ``addr`` (as ``recvfrom`` gives it) at
        ``now`` (a move then also needs :data:`MOVE_SILENCE_S` of silence from the old
        address)."""
        locked = self._locked
        if locked is not None and addr[1] == locked[1] and addr[0] == locked[0]:
            self._last, self._last_at = data, now
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
                self._locked, self._last, self._last_at = expected, data, now
                return Verdict.ACCEPT
            trial = self._on_probation(data, addr[0], addr[1])
            if trial >= self.probation:
                self._locked, self._last, self._last_at = (addr[0], addr[1]), data, now
                self._trial = None
                self.learned += 1
                return Verdict.LEARNED
            if trial:
                self.on_trial += 1
                return Verdict.PROBATION
        elif self._continues(data, addr):
            trial = self._on_probation(data, addr[0], addr[1], self._last)
            quiet = now is None or self._last_at is None or now - self._last_at >= MOVE_SILENCE_S
            if trial >= self.probation and quiet:
                self._locked = (addr[0], addr[1])
                self._last, self._last_at = data, now
                self._trial = None
                self.learned += 1
                self.moved += 1
                return Verdict.LEARNED
            self.on_trial += 1
            return Verdict.PROBATION
        self.dropped += 1
        return Verdict.DROP

    def _continues(self, data: bytes, addr: tuple[str, int] | tuple[str, int, int, int]) -> bool:
        """Whether ``data`` (from another address) is an RTP packet of the locked stream: its
        SSRC, and a sequence number ahead of the last packet accepted from the locked address,
        by at most :data:`MAX_MOVE_JUMP` for a trial's first packet (that a trial's packets
        follow each other is :meth:`_on_probation`'s to check)."""
        last = self._last
        if (
            last is None
            or len(data) < HEADER_SIZE
            or len(last) < HEADER_SIZE
            or data[0] >> 6 != 2
            or data[1] & 0x7F in _RTCP_TYPES
            or last[1] & 0x7F in _RTCP_TYPES
        ):
            return False
        _, _, seq, _, ssrc = HEADER.unpack_from(data)
        _, _, last_seq, _, last_ssrc = HEADER.unpack_from(last)
        ahead: int = (seq - last_seq) & 0xFFFF
        trial = self._trial
        on_trial = trial is not None and trial[0] == addr[0] and trial[1] == addr[1]
        limit = 0x8000 if on_trial else MAX_MOVE_JUMP + 1  # a trial goes on in its own steps
        return bool(ssrc == last_ssrc and 0 < ahead < limit)

    def _on_probation(
        self, data: bytes, host: str, port: int, old_last: bytes | None = None
    ) -> int:
        """Count ``data`` towards ``host:port``'s probation; how many packets in a row it has
        now sent (0: ``data`` is not RTP, which neither counts nor ends another's trial). For a
        move, ``old_last`` is the old address's last datagram: if it has sent since the trial
        began, the stream has not moved and the trial starts over."""
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
            and trial[5] is old_last
        ):
            count = trial[4] + 1
        else:
            count = 1
        self._trial = (host, port, ssrc, seq, count, old_last)
        return count
