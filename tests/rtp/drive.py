"""Helpers that drive the sans-I/O streams on simulated time."""

from __future__ import annotations

from dataclasses import dataclass

from dtmfgraph.rtp import (
    InboundStream,
    JobFinished,
    JobStarted,
    KeyHeard,
    OutboundStream,
    RtpPacket,
    TelephoneEvent,
)

PTIME = 0.02


@dataclass(frozen=True)
class Sent:
    """One packet an outbound stream emitted, with the time it was asked for."""

    at: float
    data: bytes
    packet: RtpPacket

    @property
    def event(self) -> TelephoneEvent | None:
        return TelephoneEvent.parse(self.packet.payload) if self.packet.payload_type >= 96 else None


def run(
    stream: OutboundStream, until: float, step: float = PTIME, t0: float | None = None
) -> tuple[list[Sent], list[JobStarted | JobFinished]]:
    """Call ``packets_due`` every ``step`` from ``t0`` (default: the stream's next deadline)."""
    sent: list[Sent] = []
    events: list[JobStarted | JobFinished] = []
    t = stream.next_deadline() if t0 is None else t0
    k = 0
    while True:
        now = t + k * step
        if now > until + 1e-9:
            break
        for data in stream.packets_due(now):
            sent.append(Sent(now, data, RtpPacket.parse(data)))
        while (ev := stream.next_event()) is not None:
            events.append(ev)
        k += 1
    return sent, events


def events_by_start(sent: list[Sent], event_pt: int = 101) -> list[list[Sent]]:
    """Telephone-event packets grouped by event (consecutive packets with one timestamp)."""
    groups: list[list[Sent]] = []
    for s in sent:
        if s.packet.payload_type != event_pt:
            continue
        if groups and groups[-1][0].packet.timestamp == s.packet.timestamp:
            groups[-1].append(s)
        else:
            groups.append([s])
    return groups


def feed(
    inbound: InboundStream,
    datagrams: list[tuple[float, bytes]],
    *,
    tail: float = 1.0,
    flush: bool = True,
) -> list[KeyHeard]:
    """Deliver datagrams at their times with a pacer ticking every 20 ms; return the keys heard."""
    heard: list[KeyHeard] = []

    def drain() -> None:
        while (ev := inbound.next_event()) is not None:
            heard.append(ev)

    def pace(now: float) -> None:
        deadline = inbound.next_deadline()
        if deadline is not None and deadline <= now:
            inbound.handle_deadline(now)
        drain()

    ordered = sorted(datagrams, key=lambda x: x[0])
    t0 = ordered[0][0] if ordered else 0.0
    k = 0
    for at, data in ordered:
        while t0 + k * PTIME <= at:
            pace(t0 + k * PTIME)
            k += 1
        inbound.receive(data, at)
        drain()
    end = (ordered[-1][0] if ordered else t0) + tail
    while t0 + k * PTIME <= end:
        pace(t0 + k * PTIME)
        k += 1
    if flush:
        inbound.flush(end)
        drain()
    return heard
