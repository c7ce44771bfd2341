"""A simulated UDP network between sans-I/O user agents, with a clock and a drop filter."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from dtmfgraph.sip import Event, SipTimers, UserAgent, parse_message
from dtmfgraph.sip.message import SipMessage

Addr = tuple[str, int]


@dataclass
class Sent:
    """One datagram that went on the simulated wire."""

    at: float
    src: Addr
    dst: Addr
    data: bytes
    dropped: bool

    @property
    def message(self) -> SipMessage:
        return parse_message(self.data)

    @property
    def first_line(self) -> str:
        return self.data.split(b"\r\n", 1)[0].decode()


@dataclass
class Network:
    """Delivers every datagram between registered agents at once (or drops it)."""

    now: float = 1000.0
    agents: dict[Addr, UserAgent] = field(default_factory=dict)
    log: list[Sent] = field(default_factory=list)
    drop: Callable[[Sent], bool] = lambda sent: False
    events: dict[Addr, list[Event]] = field(default_factory=dict)
    outside: list[Sent] = field(default_factory=list)

    def add(
        self, host: str, port: int, user: str, *, seed: int = 1, timers: SipTimers | None = None
    ) -> UserAgent:
        ua = UserAgent(host, port, user, rng=random.Random(seed), timers=timers)
        self.agents[(host, port)] = ua
        self.events[(host, port)] = []
        return ua

    def addr(self, ua: UserAgent) -> Addr:
        return (ua.local_host, ua.local_port)

    def flush(self) -> None:
        """Deliver until no agent has anything left to send."""
        for _ in range(1000):
            moved = False
            for addr, ua in list(self.agents.items()):
                for data, dst in ua.datagrams_to_send(self.now):
                    moved = True
                    sent = Sent(self.now, addr, dst, data, False)
                    sent.dropped = self.drop(sent)
                    self.log.append(sent)
                    target = self.agents.get(dst)
                    if target is None:
                        self.outside.append(sent)
                    elif not sent.dropped:
                        target.receive_datagram(data, addr, self.now)
            for addr, ua in self.agents.items():
                while (event := ua.next_event()) is not None:
                    self.events[addr].append(event)
            if not moved:
                return
        raise AssertionError("datagram storm")

    def run_until(self, end: float) -> None:
        """Advance time to ``end``, firing every agent's timers on the way."""
        self.flush()
        while True:
            deadlines = [d for ua in self.agents.values() if (d := ua.next_deadline()) is not None]
            nxt = min(deadlines, default=None)
            if nxt is None or nxt > end:
                break
            self.now = max(self.now, nxt)
            for ua in self.agents.values():
                d = ua.next_deadline()
                if d is not None and d <= self.now:
                    ua.handle_deadline(self.now)
            self.flush()
        self.now = max(self.now, end)

    def advance(self, seconds: float) -> None:
        self.run_until(self.now + seconds)

    def take(self, ua: UserAgent) -> list[Event]:
        """Events of ``ua`` not yet taken."""
        events = self.events[self.addr(ua)]
        out = list(events)
        events.clear()
        return out

    def lines(self, *, since: int = 0, delivered_only: bool = False) -> list[str]:
        return [s.first_line for s in self.log[since:] if not (delivered_only and s.dropped)]
