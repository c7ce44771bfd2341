"""RTCP (RFC 3550 section 6), sans-I/O: sender and receiver reports, SDES CNAME and BYE.

:class:`RtcpSession` keeps one RTP session's side of RTCP:

* it is told of every RTP packet received (:meth:`~RtcpSession.note_rtp`: RFC 3550 A.1's
  sequence bookkeeping, for the loss figures of our reports);
* it builds the compound packet due on its schedule (:meth:`~RtcpSession.report`): an SR when
  we sent RTP since the last report, else an RR, with one report block on the far end's stream,
  and our CNAME;
* it reads the far end's compound packets (:meth:`~RtcpSession.receive`): its sender reports
  (kept for the LSR/DLSR of ours), its report blocks on *our* stream (what it lost, the jitter
  it measured, and the round-trip time, RFC 3550 6.4.1), its CNAME and its BYE.

Time comes in as arguments: ``now`` on any monotonic clock in seconds, ``wall`` as Unix time for
the NTP timestamps of sender reports. Malformed compound packets raise :class:`RtcpError` from
:func:`parse_compound` and are counted by :meth:`RtcpSession.receive`.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field
from typing import Final, TypeAlias

from .codec import CLOCK_RATE

SR: Final = 200
RR: Final = 201
SDES: Final = 202
BYE: Final = 203
APP: Final = 204
RTCP_TYPES: Final = range(SR, APP + 1)
"""Packet types of RFC 3550; on a multiplexed port (RFC 5761) these mark RTCP among RTP."""

NTP_UNIX_OFFSET: Final = 2_208_988_800
"""Seconds from 1900-01-01 (NTP's era 0) to 1970-01-01."""
MIN_INTERVAL: Final = 5.0
"""RFC 3550 6.2's recommended minimum interval between reports, seconds (half before the first)."""
_COMPENSATION: Final = 2.718281828459045 - 1.5
"""RFC 3550 6.3.1: the randomised interval is divided by e - 3/2 (the timer reconsideration)."""
MAX_DROPOUT: Final = 3000
MAX_MISORDER: Final = 100
_SEQ_MOD: Final = 1 << 16
_RTT_SLACK: Final = 0.05
"""A round trip computed this far below 0 s is taken as 0 (a DLSR rounded up); further: ignored."""
_RTT_MAX: Final = 600.0
"""A round trip computed longer than this (s) is a bogus LSR/DLSR: ignored."""
_U32: Final = 0xFFFFFFFF
_HEADER = struct.Struct("!BBH")
_SENDER = struct.Struct("!QIII")
_BLOCK = struct.Struct("!IIIIII")


class RtcpError(ValueError):
    """A datagram that is not a valid RTCP compound packet (RFC 3550 6.1, A.2)."""


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """One reception report (RFC 3550 6.4.1) on the stream of ``ssrc``."""

    ssrc: int
    fraction_lost: int
    """Packets lost since the previous report, as a fraction of those expected, times 256."""
    cumulative_lost: int
    """Packets lost since the stream began (signed 24 bits: duplicates can make it negative)."""
    highest_seq: int
    """Extended highest sequence number received (cycles in the high 16 bits)."""
    jitter: int
    """Interarrival jitter, RTP timestamp units."""
    lsr: int = 0
    """Middle 32 bits of the NTP timestamp of the last SR received from ``ssrc`` (0: none)."""
    dlsr: int = 0
    """Delay since that SR was received, 1/65536 s."""

    def pack(self) -> bytes:
        lost = self.cumulative_lost & 0xFFFFFF
        return _BLOCK.pack(
            self.ssrc,
            (self.fraction_lost & 0xFF) << 24 | lost,
            self.highest_seq & _U32,
            self.jitter & _U32,
            self.lsr & _U32,
            self.dlsr & _U32,
        )

    @classmethod
    def unpack(cls, data: bytes, offset: int) -> ReportBlock:
        ssrc, lost, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(data, offset)
        cumulative = lost & 0xFFFFFF
        if cumulative & 0x800000:
            cumulative -= 1 << 24
        return cls(ssrc, lost >> 24, cumulative, highest, jitter, lsr, dlsr)


@dataclass(frozen=True, slots=True)
class SenderInfo:
    """The sender information of an SR: an NTP timestamp, the RTP timestamp of that instant,
    and the packets and payload octets sent so far."""

    ntp: int
    rtp_timestamp: int
    packets: int
    octets: int


@dataclass(frozen=True, slots=True)
class Report:
    """A sender (``sender`` given) or receiver report from ``ssrc``."""

    ssrc: int
    sender: SenderInfo | None = None
    blocks: tuple[ReportBlock, ...] = ()

    def pack(self) -> bytes:
        if len(self.blocks) > 31:
            raise RtcpError("a report holds at most 31 report blocks")
        body = struct.pack("!I", self.ssrc & _U32)
        if self.sender is not None:
            s = self.sender
            body += _SENDER.pack(s.ntp, s.rtp_timestamp & _U32, s.packets & _U32, s.octets & _U32)
        body += b"".join(b.pack() for b in self.blocks)
        pt = SR if self.sender is not None else RR
        return _header(len(self.blocks), pt, body) + body


@dataclass(frozen=True, slots=True)
class SourceDescription:
    """SDES: the CNAME of each source (other items are read past and left out)."""

    cnames: tuple[tuple[int, str], ...]

    def pack(self) -> bytes:
        body = b""
        for ssrc, cname in self.cnames:
            text = cname.encode()[:255]
            chunk = struct.pack("!IBB", ssrc & _U32, 1, len(text)) + text + b"\0"
            body += chunk + b"\0" * (-len(chunk) % 4)
        return _header(len(self.cnames), SDES, body) + body


@dataclass(frozen=True, slots=True)
class Goodbye:
    """BYE: these sources leave the session, with an optional reason."""

    ssrcs: tuple[int, ...]
    reason: str = ""

    def pack(self) -> bytes:
        body = b"".join(struct.pack("!I", s & _U32) for s in self.ssrcs)
        if self.reason:
            text = self.reason.encode()[:255]
            body += bytes([len(text)]) + text
            body += b"\0" * (-len(body) % 4)
        return _header(len(self.ssrcs), BYE, body) + body


@dataclass(frozen=True, slots=True)
class OtherPacket:
    """A packet of a type read past (APP, or an extension such as XR or feedback)."""

    packet_type: int


RtcpPacket: TypeAlias = Report | SourceDescription | Goodbye | OtherPacket


def _header(count: int, pt: int, body: bytes) -> bytes:
    return _HEADER.pack(0x80 | count, pt, (len(body) + 4) // 4 - 1)


def build_compound(packets: list[RtcpPacket]) -> bytes:
    """The packets as one compound datagram (the first must be a :class:`Report`)."""
    if not packets or not isinstance(packets[0], Report):
        raise RtcpError("a compound packet starts with an SR or RR")
    out = b""
    for p in packets:
        if isinstance(p, OtherPacket):
            raise RtcpError(f"cannot build packet type {p.packet_type}")
        out += p.pack()
    return out


def parse_compound(data: bytes) -> list[RtcpPacket]:
    """The packets of one compound datagram, checked as RFC 3550 A.2 says: version 2, a
    first packet that is an SR or RR without padding, padding only in the last packet, and
    lengths that add up to the datagram's."""
    size = len(data)
    if size < 8 or size % 4:
        raise RtcpError(f"an RTCP datagram is a multiple of 4 bytes, at least 8; got {size}")
    if data[1] not in (SR, RR) or data[0] & 0x20:
        raise RtcpError("an RTCP compound packet starts with an SR or RR, unpadded")
    packets: list[RtcpPacket] = []
    offset = 0
    while offset < size:
        if size - offset < 4:
            raise RtcpError("truncated RTCP header")
        first, pt, words = _HEADER.unpack_from(data, offset)
        if first >> 6 != 2:
            raise RtcpError(f"RTCP version {first >> 6}, expected 2")
        end = offset + 4 * (words + 1)
        if end > size:
            raise RtcpError(f"RTCP packet type {pt} runs past the datagram ({end} > {size})")
        stop = end
        if first & 0x20:
            if end != size:
                raise RtcpError("padding in an RTCP packet that is not the last")
            pad = data[end - 1]
            if pad == 0 or pad > end - offset - 4:
                raise RtcpError(f"bad RTCP padding length {pad}")
            stop = end - pad
        packets.append(_parse_one(data, offset + 4, stop, first & 0x1F, pt))
        offset = end
    return packets


def _parse_one(data: bytes, start: int, stop: int, count: int, pt: int) -> RtcpPacket:
    if pt in (SR, RR):
        fixed = 4 + (_SENDER.size if pt == SR else 0)
        if stop - start < fixed + count * _BLOCK.size:
            raise RtcpError(f"{'SR' if pt == SR else 'RR'} too short for {count} report blocks")
        (ssrc,) = struct.unpack_from("!I", data, start)
        sender = SenderInfo(*_SENDER.unpack_from(data, start + 4)) if pt == SR else None
        blocks = tuple(
            ReportBlock.unpack(data, start + fixed + i * _BLOCK.size) for i in range(count)
        )
        return Report(ssrc, sender, blocks)
    if pt == SDES:
        return SourceDescription(_parse_sdes(data, start, stop, count))
    if pt == BYE:
        if stop - start < 4 * count:
            raise RtcpError(f"BYE too short for {count} sources")
        ssrcs = struct.unpack_from(f"!{count}I", data, start)
        reason = ""
        at = start + 4 * count
        if at < stop:
            n = data[at]
            if at + 1 + n > stop:
                raise RtcpError("BYE reason runs past its packet")
            reason = data[at + 1 : at + 1 + n].decode("utf-8", "replace")
        return Goodbye(tuple(ssrcs), reason)
    return OtherPacket(pt)


def _parse_sdes(data: bytes, at: int, stop: int, count: int) -> tuple[tuple[int, str], ...]:
    cnames: list[tuple[int, str]] = []
    for _ in range(count):
        if at + 4 > stop:
            raise RtcpError("SDES chunk truncated")
        (ssrc,) = struct.unpack_from("!I", data, at)
        at += 4
        while True:  # items up to a null octet; then the chunk is padded to 32 bits
            if at >= stop:
                raise RtcpError("SDES chunk without its terminating null item")
            kind = data[at]
            if kind == 0:
                at = (at // 4 + 1) * 4  # the null octet, then padding to 32 bits
                break
            if at + 2 > stop or at + 2 + data[at + 1] > stop:
                raise RtcpError("SDES item runs past its packet")
            n = data[at + 1]
            if kind == 1:
                cnames.append((ssrc, data[at + 2 : at + 2 + n].decode("utf-8", "replace")))
            at += 2 + n
    return tuple(cnames)


def ntp_timestamp(wall: float) -> int:
    """The 64-bit NTP timestamp (seconds since 1900 in the high 32 bits) of Unix time ``wall``."""
    return round((wall + NTP_UNIX_OFFSET) * 4294967296.0) & 0xFFFFFFFFFFFFFFFF


def compact(ntp: int) -> int:
    """The middle 32 bits of a 64-bit NTP timestamp (units of 1/65536 s), as LSR uses them."""
    return (ntp >> 16) & _U32


@dataclass(slots=True)
class ReceptionStats:
    """One far-end source's sequence numbers as RFC 3550 A.1 and A.3 keep them."""

    ssrc: int
    base_seq: int
    max_seq: int
    cycles: int = 0
    bad_seq: int = _SEQ_MOD + 1
    received: int = 1
    expected_prior: int = 0
    received_prior: int = 0

    @classmethod
    def first(cls, ssrc: int, seq: int) -> ReceptionStats:
        return cls(ssrc, seq, seq)

    def update(self, seq: int) -> None:
        """Count a packet with sequence number ``seq``."""
        udelta = (seq - self.max_seq) & 0xFFFF
        if udelta < MAX_DROPOUT:  # in order, with or without a gap
            if seq < self.max_seq:
                self.cycles += _SEQ_MOD
            self.max_seq = seq
        elif udelta <= _SEQ_MOD - MAX_MISORDER:  # a big jump
            if seq != self.bad_seq:
                self.bad_seq = (seq + 1) & 0xFFFF
                return  # not counted until the next packet confirms it
            self._restart(seq)  # two in a row: the sender restarted its sequence
        self.received += 1

    def _restart(self, seq: int) -> None:
        self.base_seq = self.max_seq = seq
        self.cycles = 0
        self.bad_seq = _SEQ_MOD + 1
        self.received = self.expected_prior = self.received_prior = 0

    @property
    def highest(self) -> int:
        """The extended highest sequence number received."""
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        return self.highest - self.base_seq + 1

    @property
    def lost(self) -> int:
        """Packets expected and not received (negative with duplicates), clamped to 24 bits."""
        return max(-0x800000, min(0x7FFFFF, self.expected - self.received))

    def interval_fraction(self) -> int:
        """Fraction lost since the last call (times 256), and start a new interval."""
        expected = self.expected
        expected_interval = expected - self.expected_prior
        received_interval = self.received - self.received_prior
        self.expected_prior, self.received_prior = expected, self.received
        lost_interval = expected_interval - received_interval
        if expected_interval <= 0 or lost_interval <= 0:
            return 0
        return min(255, (lost_interval << 8) // expected_interval)


@dataclass(slots=True)
class RtcpStats:
    """What RTCP told us about a call, and what it cost."""

    sent: int = 0
    """Compound packets sent."""
    received: int = 0
    """Compound packets received and understood."""
    malformed: int = 0
    """Datagrams dropped as not valid RTCP."""
    foreign: int = 0
    """Datagrams dropped because they came from another host than the far end's media."""
    unauthenticated: int = 0
    """SRTCP datagrams dropped: failed authentication, replayed, or not SRTCP."""
    rtt: float | None = None
    """Latest round-trip time, seconds (from a report block on our stream with an LSR)."""
    peer_fraction_lost: float = 0.0
    """Share of our packets the far end lost in its latest report's interval (0..1)."""
    peer_lost: int = 0
    """Our packets the far end lost since the start, as it last reported."""
    peer_jitter: int = 0
    """The interarrival jitter of our stream the far end last reported, timestamp units."""
    peer_cname: str | None = None
    """The far end's CNAME (SDES), once heard."""
    bye: str | None = None
    """The reason the far end gave in an RTCP BYE ("" for none); ``None`` before one."""

    @property
    def rtt_ms(self) -> float | None:
        return None if self.rtt is None else self.rtt * 1000.0

    @property
    def peer_jitter_ms(self) -> float:
        return self.peer_jitter * 1000.0 / CLOCK_RATE

    def far_end(self) -> str:
        """What the far end's reports said, in words (for logs and the CLI)."""
        rtt = "" if self.rtt_ms is None else f", round trip {self.rtt_ms:.1f} ms"
        return f"far end (RTCP): {self.peer_lost} of ours lost{rtt}"


@dataclass(slots=True)
class _Sent:
    """What our stream has sent, for the sender info of an SR."""

    packets: int = 0
    octets: int = 0
    rtp_timestamp: int = 0


@dataclass(slots=True)
class RtcpSession:
    """One RTP session's RTCP, sans-I/O (see the module).

    ``ssrc`` is ours (the SSRC of the RTP we send); ``cname`` goes in every report's SDES.
    Call :meth:`next_report_at` for when a report is due, :meth:`report` then to get it.
    """

    ssrc: int
    cname: str
    interval: float = MIN_INTERVAL
    rng: random.Random = field(default_factory=random.Random)
    stats: RtcpStats = field(default_factory=RtcpStats)
    source: ReceptionStats | None = None
    """The far end's stream (the last SSRC heard; a new SSRC starts its count anew)."""
    jitter: float = 0.0
    """The far end stream's interarrival jitter (kept by the inbound stream; set by the owner)."""
    _sent: _Sent = field(default_factory=_Sent)
    _sent_at_last_report: int = 0
    _last_sr: tuple[int, float] | None = None  # (compact NTP, arrival) of the far end's last SR
    _next: float | None = None

    def note_rtp(self, ssrc: int, seq: int) -> None:
        """Count one RTP packet received from the far end (an ``InboundStream`` keeps these
        figures itself, in :attr:`~dtmfgraph.rtp.InboundStream.reception`)."""
        source = self.source
        if source is None or source.ssrc != ssrc:
            self.source = ReceptionStats.first(ssrc, seq)
            return
        source.update(seq)

    def note_sent(self, packets: int, octets: int, rtp_timestamp: int) -> None:
        """What our stream has sent so far (totals), and the RTP timestamp of the present."""
        self._sent = _Sent(packets, octets, rtp_timestamp)

    def next_report_at(self, now: float) -> float:
        """When the next report is due (RFC 3550 6.3: the interval times a random factor in
        [0.5, 1.5], divided by e - 3/2; half the interval before the first report)."""
        if self._next is None:
            self._next = now + self._randomised(self.interval / 2.0)
        return self._next

    def _randomised(self, interval: float) -> float:
        return interval * (self.rng.random() + 0.5) / _COMPENSATION

    def report(self, now: float, wall: float, *, goodbye: str | None = None) -> bytes:
        """The compound packet to send now: SR or RR, SDES CNAME, and a BYE when ``goodbye``
        is given (the reason, may be empty). Schedules the next report."""
        sent = self._sent
        blocks: tuple[ReportBlock, ...] = ()
        if self.source is not None:
            blocks = (self._block(self.source, now),)
        sender = None
        if sent.packets > self._sent_at_last_report:
            ntp = ntp_timestamp(wall)
            sender = SenderInfo(ntp, sent.rtp_timestamp, sent.packets, sent.octets)
        self._sent_at_last_report = sent.packets
        packets: list[RtcpPacket] = [
            Report(self.ssrc, sender, blocks),
            SourceDescription(((self.ssrc, self.cname),)),
        ]
        if goodbye is not None:
            packets.append(Goodbye((self.ssrc,), goodbye))
        self._next = now + self._randomised(self.interval)
        self.stats.sent += 1
        return build_compound(packets)

    def _block(self, source: ReceptionStats, now: float) -> ReportBlock:
        lsr = dlsr = 0
        if self._last_sr is not None:
            lsr, arrived = self._last_sr
            dlsr = max(0, int((now - arrived) * 65536.0))
        return ReportBlock(
            source.ssrc,
            source.interval_fraction(),
            source.lost,
            source.highest,
            int(self.jitter),
            lsr,
            dlsr,
        )

    def receive(self, data: bytes, now: float, wall: float) -> list[RtcpPacket]:
        """Read one compound datagram from the far end; ``[]`` (counted) when malformed."""
        try:
            packets = parse_compound(data)
        except RtcpError:
            self.stats.malformed += 1
            return []
        stats = self.stats
        stats.received += 1
        for p in packets:
            if isinstance(p, Report):
                if p.sender is not None:
                    self._last_sr = (compact(p.sender.ntp), now)
                for block in p.blocks:
                    if block.ssrc == self.ssrc:
                        self._on_block(block, wall)
            elif isinstance(p, SourceDescription):
                for _, cname in p.cnames[:1]:
                    stats.peer_cname = cname
            elif isinstance(p, Goodbye):
                stats.bye = p.reason
        return packets

    def _on_block(self, block: ReportBlock, wall: float) -> None:
        stats = self.stats
        stats.peer_fraction_lost = block.fraction_lost / 256.0
        stats.peer_lost = block.cumulative_lost
        stats.peer_jitter = block.jitter
        if block.lsr:
            arrival = compact(ntp_timestamp(wall))
            units = (arrival - block.lsr - block.dlsr) & _U32
            if units >= 1 << 31:  # negative: the far end's clock for DLSR is coarser than the
                units -= 1 << 32  # round trip (ms timers on loopback)
            rtt = units / 65536.0
            if -_RTT_SLACK <= rtt < _RTT_MAX:
                stats.rtt = max(rtt, 0.0)
