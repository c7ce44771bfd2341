"""RFC 3261 17 transactions over UDP and TCP, with RFC 6026's Accepted state for the INVITE
server. Over TCP (a *reliable* destination) nothing is retransmitted and the timers that only
absorb retransmissions (D, I, J, K) are zero.

Each transaction owns its retransmission timers as absolute deadlines; the user agent asks
for :meth:`next_deadline` and calls :meth:`handle_timer` when it is due. Transactions put
datagrams on a shared :class:`Wire` and never touch a socket or a clock.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from dtmfgraph.sip.counters import SipCounters
from dtmfgraph.sip.headers import BRANCH_MAGIC_COOKIE, CSeq, Headers
from dtmfgraph.sip.message import SipRequest, SipResponse

Addr = tuple[str, int]


@dataclass(frozen=True, slots=True)
class SipTimers:
    """RFC 3261 timer values in seconds (table 4). ``timer_b``/``timer_f`` default to 64*T1."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    timer_b: float | None = None
    timer_f: float | None = None
    timer_d: float = 32.0

    @property
    def b(self) -> float:
        """INVITE client transaction timeout."""
        return self.timer_b if self.timer_b is not None else 64 * self.t1

    @property
    def f(self) -> float:
        """Non-INVITE client transaction timeout."""
        return self.timer_f if self.timer_f is not None else 64 * self.t1

    @property
    def h(self) -> float:
        """Wait for ACK to a non-2xx final; also the 2xx retransmission limit (13.3.1.4)."""
        return 64 * self.t1


@dataclass(slots=True)
class Wire:
    """The messages waiting to be sent, and the counters sends update.

    Messages to an address in ``reliable`` (a TCP or TLS peer: a connection came from it, or we
    chose TCP or TLS to reach it) go to ``stream_queue``, the rest to ``queue`` (UDP datagrams).
    ``secure`` holds the reliable addresses whose connection is TLS.
    """

    counters: SipCounters
    queue: list[tuple[bytes, Addr]] = field(default_factory=list)
    stream_queue: list[tuple[bytes, Addr]] = field(default_factory=list)
    reliable: set[Addr] = field(default_factory=set)
    secure: set[Addr] = field(default_factory=set)

    def send(self, data: bytes, addr: Addr, *, retransmission: bool = False) -> None:
        """Queue one message for ``addr``."""
        if addr in self.reliable:
            self.stream_queue.append((data, addr))
        else:
            self.queue.append((data, addr))
        self.counters.datagrams_sent += 1
        if retransmission:
            self.counters.retransmissions_sent += 1


class TxState(enum.StrEnum):
    """Transaction states of RFC 3261 17 (and ``accepted`` from RFC 6026)."""

    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    ACCEPTED = "accepted"
    TERMINATED = "terminated"


ClientKey = tuple[str, str]
ServerKey = tuple[str, ...]


def client_key(message: SipRequest | SipResponse) -> ClientKey:
    """``(top Via branch, CSeq method)``: how a response finds its client transaction."""
    return (message.top_via.branch or "", message.cseq.method)


def server_key(request: SipRequest) -> ServerKey:
    """How a request finds its server transaction (RFC 3261 17.2.3; ACK matches INVITE)."""
    method = "INVITE" if request.method == "ACK" else request.method
    via = request.top_via
    branch = via.branch or ""
    if branch.startswith(BRANCH_MAGIC_COOKIE):
        host, port = via.sent_by
        return (branch, host.lower(), str(port), method)
    # RFC 2543 peer: fall back on the dialog-ish identifiers.
    return ("2543", request.call_id, request.from_.tag or "", str(request.cseq.seq), method)


class _Timed:
    """Named deadlines: the transaction's timers."""

    __slots__ = ("deadlines",)

    def __init__(self) -> None:
        self.deadlines: dict[str, float] = {}

    def next_deadline(self) -> float | None:
        """The earliest armed timer, or ``None``."""
        return min(self.deadlines.values(), default=None)

    def _due(self, now: float) -> list[str]:
        due = sorted((when, name) for name, when in self.deadlines.items() if when <= now)
        for _, name in due:
            del self.deadlines[name]
        return [name for _, name in due]


class ClientTransaction(_Timed):
    """An INVITE (17.1.1) or non-INVITE (17.1.2) client transaction."""

    __slots__ = (
        "_interval",
        "ack",
        "data",
        "dest",
        "invite",
        "reliable",
        "request",
        "state",
        "timed_out",
        "timers",
        "wire",
    )

    def __init__(self, request: SipRequest, dest: Addr, wire: Wire, timers: SipTimers) -> None:
        super().__init__()
        self.request = request
        self.dest = dest
        self.wire = wire
        self.timers = timers
        self.data = bytes(request)
        self.invite = request.method == "INVITE"
        self.state = TxState.CALLING if self.invite else TxState.TRYING
        self.timed_out = False
        self.ack: bytes | None = None
        self._interval = timers.t1
        self.reliable = dest in wire.reliable
        """Over TCP: no retransmissions (Timers A and E), D and K zero."""

    @property
    def key(self) -> ClientKey:
        """The matching key of this transaction."""
        return client_key(self.request)

    @property
    def terminated(self) -> bool:
        """Whether the transaction is over and can be forgotten."""
        return self.state is TxState.TERMINATED

    def start(self, now: float) -> None:
        """Send the request and arm Timer A/B (INVITE) or E/F."""
        self.wire.send(self.data, self.dest)
        if self.invite:
            if not self.reliable:
                self.deadlines["A"] = now + self._interval
            self.deadlines["B"] = now + self.timers.b
        else:
            if not self.reliable:
                self.deadlines["E"] = now + self._interval
            self.deadlines["F"] = now + self.timers.f

    def receive_response(self, response: SipResponse, now: float) -> bool:
        """Feed a matching response; ``True`` when it must go up to the transaction user."""
        status = response.status
        if self.state in (TxState.COMPLETED, TxState.TERMINATED):
            if self.invite and status >= 300 and self.ack is not None:
                self.wire.send(self.ack, self.dest, retransmission=True)
            self.wire.counters.retransmissions_received += 1
            return False
        if status < 200:
            if self.invite:
                self.deadlines.pop("A", None)
                self.deadlines.pop("B", None)
            elif self.state is TxState.TRYING and "E" in self.deadlines:
                self._interval = self.timers.t2  # E keeps firing at T2 in Proceeding
            self.state = TxState.PROCEEDING
            return True
        self.deadlines.clear()
        if self.invite and status < 300:
            self.state = TxState.TERMINATED  # the TU acknowledges 2xx itself (13.2.2.4)
        elif self.invite:
            self.ack = bytes(non_2xx_ack(self.request, response))
            self.wire.send(self.ack, self.dest)
            self.state = TxState.COMPLETED
            self.deadlines["D"] = now + (0.0 if self.reliable else self.timers.timer_d)
        else:
            self.state = TxState.COMPLETED
            self.deadlines["K"] = now + (0.0 if self.reliable else self.timers.t4)
        return True

    def handle_timer(self, now: float) -> bool:
        """Fire due timers; ``True`` when the transaction just timed out (Timer B or F)."""
        for name in self._due(now):
            if name in ("A", "E") and self.state in (
                TxState.CALLING,
                TxState.TRYING,
                TxState.PROCEEDING,
            ):
                self.wire.send(self.data, self.dest, retransmission=True)
                if name == "A":
                    self._interval *= 2
                elif self.state is TxState.PROCEEDING:
                    self._interval = self.timers.t2
                else:
                    self._interval = min(2 * self._interval, self.timers.t2)
                self.deadlines[name] = now + self._interval
            elif name in ("B", "F"):
                self.deadlines.clear()
                self.state = TxState.TERMINATED
                self.timed_out = True
                self.wire.counters.timeouts += 1
                return True
            elif name in ("D", "K"):
                self.state = TxState.TERMINATED
        return False

    def terminate(self) -> None:
        """Stop all timers and retransmissions."""
        self.deadlines.clear()
        self.state = TxState.TERMINATED


def non_2xx_ack(request: SipRequest, response: SipResponse) -> SipRequest:
    """The hop-by-hop ACK for a non-2xx final response (RFC 3261 17.1.1.3)."""
    headers = Headers()
    headers.add("Via", request.headers.get_list("Via")[0])
    for route in request.headers.get_raw("Route"):
        headers.add("Route", route)
    headers.add("Max-Forwards", "70")
    headers.add("From", request.headers.get("From") or "")
    headers.add("To", response.headers.get("To") or "")
    headers.add("Call-ID", request.call_id)
    headers.add("CSeq", str(CSeq(request.cseq.seq, "ACK")))
    return SipRequest("ACK", request.uri, headers)


class ServerTransaction(_Timed):
    """An INVITE (17.2.1, with RFC 6026 Accepted) or non-INVITE (17.2.2) server transaction."""

    __slots__ = (
        "_interval",
        "dest",
        "invite",
        "last_response",
        "reliable",
        "request",
        "state",
        "timers",
        "wire",
    )

    def __init__(self, request: SipRequest, source: Addr, wire: Wire, timers: SipTimers) -> None:
        super().__init__()
        self.request = request
        self.dest = source
        self.wire = wire
        self.timers = timers
        self.invite = request.method == "INVITE"
        self.state = TxState.PROCEEDING if self.invite else TxState.TRYING
        self.last_response: bytes | None = None
        self._interval = timers.t1
        self.reliable = source in wire.reliable
        """Over TCP: no retransmitted responses (Timer G), I and J zero."""

    @property
    def key(self) -> ServerKey:
        """The matching key of this transaction."""
        return server_key(self.request)

    @property
    def terminated(self) -> bool:
        """Whether the transaction is over and can be forgotten."""
        return self.state is TxState.TERMINATED

    @property
    def final_sent(self) -> bool:
        """Whether a final response went out."""
        return self.state not in (TxState.TRYING, TxState.PROCEEDING)

    def receive_retransmission(self) -> None:
        """The request came again: repeat the last response if the state calls for it."""
        self.wire.counters.retransmissions_received += 1
        if self.last_response is None:
            return
        if self.state in (TxState.PROCEEDING, TxState.COMPLETED):
            self.wire.send(self.last_response, self.dest, retransmission=True)

    def receive_ack(self, now: float) -> bool:
        """An ACK matched this transaction; ``True`` when it is the first for a non-2xx final."""
        if self.state is TxState.COMPLETED:
            self.deadlines.clear()
            self.state = TxState.CONFIRMED
            self.deadlines["I"] = now + (0.0 if self.reliable else self.timers.t4)
            return True
        return False

    def respond(self, response: SipResponse, now: float) -> None:
        """Send a response from the transaction user."""
        if self.final_sent:
            raise ValueError("final response already sent")
        data = bytes(response)
        self.last_response = data
        self.wire.send(data, self.dest)
        if response.status < 200:
            self.state = TxState.PROCEEDING
            return
        if not self.invite:
            self.state = TxState.COMPLETED
            self.deadlines["J"] = now + (0.0 if self.reliable else 64 * self.timers.t1)
        elif response.status < 300:
            self.state = TxState.ACCEPTED
            self.deadlines["L"] = now + 64 * self.timers.t1
        else:
            self.state = TxState.COMPLETED
            if not self.reliable:
                self.deadlines["G"] = now + self._interval
            self.deadlines["H"] = now + self.timers.h

    def handle_timer(self, now: float) -> bool:
        """Fire due timers; ``True`` when Timer H gave up waiting for an ACK."""
        for name in self._due(now):
            if name == "G" and self.state is TxState.COMPLETED and self.last_response:
                self.wire.send(self.last_response, self.dest, retransmission=True)
                self._interval = min(2 * self._interval, self.timers.t2)
                self.deadlines["G"] = now + self._interval
            elif name == "H":
                self.deadlines.clear()
                self.state = TxState.TERMINATED
                return True
            elif name in ("I", "J", "L"):
                self.state = TxState.TERMINATED
        return False
