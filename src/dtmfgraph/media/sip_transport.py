"""The asyncio driver of a sans-I/O :class:`~dtmfgraph.sip.UserAgent` on one UDP socket and a
TCP listener on the same port.

Shaped like aioquic's ``QuicConnectionProtocol``: every datagram goes to
``ua.receive_datagram(data, addr, now)``; then (and after every timer and every API call made
through :meth:`SipTransport.kick`) what the agent wants sent is sent, its events are handed to
``on_event``, and one ``loop.call_at`` timer is re-armed at ``ua.next_deadline()``. ``now`` is
the event loop's clock (the same clock the RTP pacer uses).

TCP (RFC 3261 18): connections the far end opens are accepted; a message the agent wants sent to
a TCP peer goes on that peer's connection, opened on first use. Each connection's bytes are cut
into messages by a :class:`~dtmfgraph.sip.stream.StreamFramer`; a stream that cannot be framed
is closed (logged and counted). A connection that closes makes its peer a UDP address again for
the agent; one that cannot be opened fails the requests waiting for it at once (503, with the
reason), as RFC 3261 8.1.3.1 has a transport error do. A connection idle for ``idle_timeout``
(default 120 s) that no transaction, call or registration of the agent needs is closed. What
connections may cost is bounded (:class:`TcpLimits`): a message must be complete within
``message_timeout``, bodies and the bytes held for all incomplete messages are capped, and
past ``max_tcp_connections`` (or ``max_per_source`` from one address) the least recently
active connection nothing needs is closed to make room for the new one.

Keep-alives (RFC 5626 3.5.1, 4.4.1): a double CRLF (ping) that arrives on any connection is
answered with one CRLF (pong). Every ``keepalive_interval`` (default 120 s, less up to 20 %
at random) a connection we opened and the agent still needs gets a ping, which keeps NATs and
firewalls on the path from forgetting it. Once its peer has answered a ping, a ping it leaves
unanswered for ``keepalive_timeout`` (10 s) means the connection is dead however open it looks
(the peer crashed, a NAT dropped the mapping): it is closed and the agent told
(``UserAgent.flow_failed``), so that a registration through it registers again at once rather
than at its next refresh, perhaps an hour later, with incoming calls lost meanwhile.

Over UDP there is no connection to watch, but a NAT between us and a registrar forgets the
mapping its REGISTER made after 30 s to a few minutes of silence, and the registrar's calls to
us stop getting through. So every ``udp_keepalive_interval`` (default 25 s) each registrar a
registration reaches over UDP is sent a double CRLF datagram, as PJSIP and Linphone do
(registrars ignore it: Kamailio, Asterisk, FreeSWITCH).

TLS (given a :class:`~dtmfgraph.media.tls.TlsConfig`): a listener on its own port, and TLS
connections to the peers the agent marks secure, checked against the peer's name. A peer whose
certificate fails is counted in ``tls_errors`` and its requests fail 503 with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from dtmfgraph.sip import Event, RegistrationEvent, SipParseError, UserAgent
from dtmfgraph.sip.stream import StreamFramer

from .tls import TlsConfig, TlsConfigError
from .udp import Address, bind_udp

logger = logging.getLogger(__name__)

EventHandler = Callable[[Event | RegistrationEvent], None]
SipTap = Callable[[str, bytes, Address, str], None]
"""Told of each SIP message: ``"in"``/``"out"``, its bytes, the peer, ``udp``/``tcp``/``tls``."""


DEFAULT_MESSAGE_TIMEOUT_S = 10.0
"""A message begun on a connection must be complete within this (headers and body)."""
DEFAULT_MAX_PER_SOURCE = 64
"""Open connections from one IP address."""
DEFAULT_MAX_BODY_BYTES = 64 * 1024
"""The largest body a SIP message over TCP/TLS may announce (SDP is a few hundred bytes)."""
DEFAULT_MAX_BUFFERED_BYTES = 16 * 1024 * 1024
"""Bytes of incomplete messages held for all connections together."""


@dataclass(slots=True)
class TransportStats:
    """What the driver itself counted (the agent's own counters are in ``ua.counters``)."""

    datagrams_in: int = 0
    datagrams_out: int = 0
    send_errors: int = 0
    """``sendto`` failures and ICMP errors reported by the socket (peer not listening...)."""
    agent_errors: int = 0
    """Datagrams or timers on which the agent raised: logged, counted, never fatal."""
    handler_errors: int = 0
    """Events whose handler raised: logged, counted, never fatal."""
    tcp_connections: int = 0
    """TCP connections accepted or opened."""
    tcp_messages_in: int = 0
    tcp_messages_out: int = 0
    tcp_errors: int = 0
    """Connections that could not be opened, broke, or carried bytes that are not SIP."""
    tcp_refused: int = 0
    """Connections closed at once: ``max_tcp_connections`` were open, or ``max_per_source``
    from that address, none of them closable."""
    tcp_evicted: int = 0
    """Connections nothing needed, closed (oldest first) to make room for a new one."""
    tcp_slow: int = 0
    """Connections closed because a message took longer than ``message_timeout``."""
    tcp_overflow: int = 0
    """Connections closed because their incomplete messages went past ``max_buffered_bytes``."""
    tls_connections: int = 0
    """TLS connections accepted or opened (also counted in ``tcp_connections``)."""
    tls_errors: int = 0
    """TLS handshakes that failed (a certificate or name that does not check out...)."""
    tls_reloads: int = 0
    """Times the TLS files were loaded again (renewed, or ``reload_tls``)."""
    idle_closed: int = 0
    """Connections we closed after ``idle_timeout`` without traffic, nothing needing them."""
    pings_sent: int = 0
    """Keep-alive pings (double CRLF) we sent on connections we opened."""
    pongs_received: int = 0
    """Keep-alive pongs (CRLF) read on connections we opened."""
    pongs_sent: int = 0
    """Pings we answered."""
    keepalive_failures: int = 0
    """Connections closed because a ping went unanswered (their registrations re-sent)."""
    udp_keepalives: int = 0
    """Double-CRLF datagrams sent to registrars reached over UDP."""


@dataclass(slots=True)
class TcpLimits:
    """What one TCP/TLS connection, and all of them together, may cost (defaults: below)."""

    message_timeout: float = DEFAULT_MESSAGE_TIMEOUT_S
    """A message begun (header block or body) must be complete within this many seconds, or
    the connection is closed (slowloris)."""
    max_per_source: int = DEFAULT_MAX_PER_SOURCE
    """Open connections from one IP address; past it, that address's oldest connection that
    nothing needs is closed to make room, else the new one is refused."""
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    """A Content-Length above this breaks the stream (the connection is closed)."""
    max_buffered_bytes: int = DEFAULT_MAX_BUFFERED_BYTES
    """Bytes of incomplete messages held for all connections together; the connection whose
    bytes would go past it is closed."""


@dataclass(slots=True)
class _Stream:
    """One TCP connection with a peer: its writer once connected, and what waits for it."""

    writer: asyncio.StreamWriter | None = None
    waiting: list[bytes] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    """Our task that connects and then reads (``None`` for an accepted connection)."""
    secure: bool = False
    """A TLS connection."""
    name: str | None = None
    """The name the peer's certificate was checked for (TLS connections we open)."""
    last_active: float = 0.0
    """Loop time of the last message read or written."""
    ponged: float | None = None
    """Loop time of the last keep-alive pong the peer sent (``None``: never, so it may not
    answer pings at all, and an unanswered one proves nothing)."""
    keepalive: asyncio.TimerHandle | None = None
    """The next ping (connections we opened) or the check that the last one was answered."""
    buffered: int = 0
    """Bytes of an incomplete message held for this connection."""


class SipTransport(asyncio.DatagramProtocol):
    """Feeds one :class:`UserAgent` from a UDP socket and one timer. Make it with :meth:`open`."""

    def __init__(self, ua_factory: Callable[[Address], UserAgent], on_event: EventHandler) -> None:
        self._ua_factory = ua_factory
        self._ua: UserAgent | None = None
        self.on_event = on_event
        self.stats = TransportStats()
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._flushing = False
        self._again = False
        self._closed: asyncio.Future[None] = self._loop.create_future()
        self.local_address: Address = ("", 0)
        self._tcp_server: asyncio.Server | None = None
        self._tls_server: asyncio.Server | None = None
        self._tls_client: ssl.SSLContext | None = None
        self.tls_address: Address | None = None
        """Where we take SIP over TLS (``None``: no TLS)."""
        self._streams: dict[Address, _Stream] = {}
        self.max_tcp_connections = MAX_TCP_CONNECTIONS
        """Open connections; past it the oldest one nothing needs is closed to make room for a
        new one, else the new one is refused."""
        self.limits = TcpLimits()
        """Per-connection and overall limits of TCP/TLS (see :class:`TcpLimits`)."""
        self._buffered = 0
        """Bytes of incomplete messages held over all connections."""
        self._resolving: set[asyncio.Task[None]] = set()
        """Datagrams to a host name, waiting for it to be resolved off the loop."""
        self.idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT_S
        """A TCP or TLS connection without traffic for this long is closed, unless the agent
        still needs its peer (a transaction, a call, a registration); ``None``: never."""
        self._sweeper: asyncio.TimerHandle | None = None
        self.keepalive_interval: float | None = DEFAULT_KEEPALIVE_S
        """Ping each connection we opened that the agent needs this often (less up to 20 % at
        random); ``None``: never."""
        self.keepalive_timeout = KEEPALIVE_TIMEOUT_S
        """A ping unanswered this long (by a peer that answers pings) closes the connection."""
        self._tls: tuple[TlsConfig, ssl.SSLContext, object] | None = None
        """The TLS configuration, the listener's context, and the files' stamp when loaded."""
        self._tls_check_interval = TLS_CHECK_S
        self._tls_watch: asyncio.TimerHandle | None = None
        self._udp_keepalive_interval: float | None = UDP_KEEPALIVE_S
        self._udp_keepalive: asyncio.TimerHandle | None = None
        self.tap: SipTap | None = None
        """Observer of every SIP message in and out (a console's ladder); it must be cheap
        and is never allowed to break the transport (its errors are logged and dropped)."""

    def _tapped(self, direction: str, data: bytes, peer: Address, kind: str) -> None:
        tap = self.tap
        if tap is None or not data.strip(b"\r\n \t"):  # keep-alives are not messages
            return
        try:
            tap(direction, data, peer, kind)
        except Exception:
            logger.exception("SIP tap failed")

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        ua_factory: Callable[[Address], UserAgent],
        on_event: EventHandler,
        tls: TlsConfig | None = None,
    ) -> SipTransport:
        """Bind UDP and TCP on ``host:port`` (0 = a port free for both), then make the agent for
        the bound address. A given port whose TCP side is taken (by another program) still
        works over UDP: accepting TCP connections is then off (logged; ``tcp_listening``).
        ``tls``: also listen for TLS on ``tls.port`` (an ``OSError`` if it is taken) and reach
        secure peers over TLS."""
        if tls is not None:
            server_context, client_context = tls.server_context(), tls.client_context()
        protocol = await cls._open_plain(host, port, ua_factory, on_event)
        if tls is not None:
            try:
                await protocol._listen_tls(host, tls.port, server_context)
            except BaseException:
                await protocol.close()
                raise
            protocol._tls_client = client_context
            protocol._tls = (tls, server_context, tls.stamp())
            protocol._watch_tls()
        return protocol

    @classmethod
    async def _open_plain(
        cls,
        host: str,
        port: int,
        ua_factory: Callable[[Address], UserAgent],
        on_event: EventHandler,
    ) -> SipTransport:
        loop = asyncio.get_running_loop()
        for attempt in range(20):
            sock = bind_udp(host, port)
            try:
                _, protocol = await loop.create_datagram_endpoint(
                    lambda: cls(ua_factory, on_event), sock=sock
                )
            except BaseException:
                sock.close()
                raise
            try:
                await protocol._listen_tcp(host)
            except OSError as exc:
                if port == 0 and attempt < 19:
                    await protocol.close()
                    continue  # that UDP port's TCP twin is taken: try another port
                logger.warning(
                    "SIP over TCP is not accepted on %s:%d (%s); UDP works", host, port, exc
                )
            return protocol
        raise AssertionError("unreachable")

    @property
    def tcp_listening(self) -> bool:
        """Whether TCP connections are accepted on our SIP port."""
        return self._tcp_server is not None and self._tcp_server.is_serving()

    async def _listen_tcp(self, host: str) -> None:
        self._tcp_server = await asyncio.start_server(
            self._accepted, host, self.local_address[1], reuse_address=True
        )

    async def _listen_tls(self, host: str, port: int, context: ssl.SSLContext) -> None:
        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._accepted(reader, writer, secure=True)

        self._tls_server = await asyncio.start_server(
            accepted, host, port, ssl=context, reuse_address=True, ssl_handshake_timeout=10.0
        )
        name = self._tls_server.sockets[0].getsockname()
        self.tls_address = (str(name[0]), int(name[1]))
        self.ua.tls_port = self.tls_address[1]

    @property
    def ua(self) -> UserAgent:
        """The user agent this transport drives."""
        if self._ua is None:
            raise RuntimeError("the SIP transport is not connected")
        return self._ua

    def time(self) -> float:
        """The clock given to the agent as ``now``."""
        return self._loop.time()

    # -- asyncio.DatagramProtocol -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)
        sockname = transport.get_extra_info("sockname")
        self.local_address = (str(sockname[0]), int(sockname[1]))
        self._ua = self._ua_factory(self.local_address)
        self._arm_udp_keepalive()

    def datagram_received(self, data: bytes, addr: tuple[str | bytes, int]) -> None:
        ua = self._ua
        if ua is None:
            return
        self.stats.datagrams_in += 1
        peer = (str(addr[0]), int(addr[1]))
        if self.tap is not None:
            self._tapped("in", data, peer, "udp")
        try:
            ua.receive_datagram(data, peer, self._loop.time())
        except Exception:  # the agent must not take the phone down with it
            self.stats.agent_errors += 1
            logger.exception("SIP agent failed on a datagram from %s:%d", *peer)
        self.kick()

    # -- TCP ----------------------------------------------------------------------------------
    async def _accepted(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, secure: bool = False
    ) -> None:
        peer = _peer(writer)
        if not self._make_room(peer):
            self.stats.tcp_refused += 1
            writer.close()
            return
        self.stats.tcp_connections += 1
        self.stats.tls_connections += secure
        old = self._streams.get(peer)
        stream = _Stream(writer=writer, secure=secure)  # the server's task: closing ends it
        stream.last_active = self._loop.time()
        self._sweep_soon()
        self._streams[peer] = stream
        if old is not None and old.writer is not None:
            old.writer.close()
        await self._read(peer, stream, reader)

    async def _connect(self, peer: Address, stream: _Stream) -> None:
        context = self._tls_client if stream.secure else None
        name = stream.name
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(peer[0], peer[1], ssl=context, server_hostname=name),
                _CONNECT_TIMEOUT_S,
            )
        except ssl.SSLError as exc:
            self.stats.tls_errors += 1
            detail = f"TLS with {peer[0]}:{peer[1]} ({name}) failed: {exc}"
            logger.warning("SIP %s", detail)
            self._failed(peer, stream, detail)
            return
        except (OSError, TimeoutError) as exc:
            self.stats.tcp_errors += 1
            kind = "TLS" if stream.secure else "TCP"
            detail = f"{kind} connection to {peer[0]}:{peer[1]} failed: {exc or 'timed out'}"
            logger.debug("SIP %s", detail)
            self._failed(peer, stream, detail)
            return
        self.stats.tcp_connections += 1
        self.stats.tls_connections += stream.secure
        stream.writer = writer
        stream.last_active = self._loop.time()
        self._sweep_soon()
        self._next_ping(peer, stream)
        for data in stream.waiting:
            writer.write(data)
            self.stats.tcp_messages_out += 1
        stream.waiting.clear()
        await self._read(peer, stream, reader)

    def _make_room(self, peer: Address) -> bool:
        """Whether a new connection from ``peer`` may be kept: under both caps, or after the
        oldest connection that nothing needs (of its address for the per-source cap) was
        closed to make room."""
        same = [(p, s) for p, s in self._streams.items() if p[0] == peer[0]]
        if len(same) >= self.limits.max_per_source and not self._evict(same):
            return False
        if len(self._streams) >= self.max_tcp_connections:
            return self._evict(list(self._streams.items()))
        return True

    def _agent_needs(self, peer: Address, *, if_unsure: bool) -> bool:
        """Whether the agent still uses the connection to ``peer`` (``if_unsure`` when its
        check fails: counted and logged)."""
        ua = self._ua
        try:
            return ua is not None and ua.peer_in_use(peer)
        except Exception:
            self.stats.agent_errors += 1
            logger.exception("SIP agent failed on a connection check")
            return if_unsure

    def _evict(self, candidates: list[tuple[Address, _Stream]]) -> bool:
        """Close the least recently active of ``candidates`` that the agent does not need;
        whether one was."""
        for peer, stream in sorted(candidates, key=lambda item: item[1].last_active):
            if stream.writer is None or stream.task is not None:
                continue  # one we are opening, or opened ourselves
            if not self._agent_needs(peer, if_unsure=True):
                self.stats.tcp_evicted += 1
                self._drop(peer, stream)
                return True
        return False

    async def _read_some(self, reader: asyncio.StreamReader, deadline: float | None) -> bytes:
        """The next bytes; ``TimeoutError`` once ``deadline`` (loop time) has passed."""
        if deadline is None:
            return await reader.read(65536)
        return await asyncio.wait_for(reader.read(65536), max(0.0, deadline - self._loop.time()))

    async def _read(self, peer: Address, stream: _Stream, reader: asyncio.StreamReader) -> None:
        framer = StreamFramer(max_body_bytes=self.limits.max_body_bytes)
        deadline: float | None = None
        """When the message begun must be complete (``None``: none begun)."""
        try:
            while data := await self._read_some(reader, deadline):
                ua = self._ua
                if ua is None:
                    break
                now = stream.last_active = self._loop.time()
                crlfs, pings = framer.crlfs, framer.pings
                messages = framer.feed(data)
                self._buffered += framer.pending - stream.buffered
                stream.buffered = framer.pending
                if not framer.pending:
                    deadline = None
                elif deadline is None or messages:
                    deadline = now + self.limits.message_timeout
                if self._buffered > self.limits.max_buffered_bytes:
                    self.stats.tcp_overflow += 1
                    logger.warning(
                        "SIP TCP stream from %s:%d closed: incomplete messages of all "
                        "connections over %d bytes",
                        *peer,
                        self.limits.max_buffered_bytes,
                    )
                    break
                if framer.crlfs != crlfs:
                    self._keepalive_read(stream, framer.crlfs - crlfs, framer.pings - pings)
                for message in messages:
                    self.stats.tcp_messages_in += 1
                    if self.tap is not None:
                        self._tapped("in", message, peer, "tls" if stream.secure else "tcp")
                    try:
                        ua.receive_stream_message(
                            message, peer, self._loop.time(), secure=stream.secure
                        )
                    except Exception:
                        self.stats.agent_errors += 1
                        logger.exception("SIP agent failed on a message from %s:%d", *peer)
                self.kick()
        except SipParseError as exc:
            self.stats.tcp_errors += 1
            logger.warning("SIP TCP stream from %s:%d closed: %s", *peer, exc)
        except TimeoutError:
            self.stats.tcp_slow += 1
            logger.info(
                "SIP TCP stream from %s:%d closed: a message took over %g s",
                *peer,
                self.limits.message_timeout,
            )
        except (OSError, asyncio.IncompleteReadError):
            self.stats.tcp_errors += 1
        finally:
            self._buffered -= stream.buffered
            stream.buffered = 0
            self._drop(peer, stream)

    def _keepalive_read(self, stream: _Stream, crlfs: int, pings: int) -> None:
        """``crlfs`` CRLFs came between messages, ``pings`` double ones among them."""
        if pings and stream.writer is not None and not stream.writer.is_closing():
            stream.writer.write(b"\r\n" * pings)  # pongs
            self.stats.pongs_sent += pings
        if stream.task is not None and crlfs > 2 * pings:  # a connection we opened: a pong
            stream.ponged = self._loop.time()
            self.stats.pongs_received += 1

    def _next_ping(self, peer: Address, stream: _Stream) -> None:
        interval = self.keepalive_interval
        if interval is not None and not self.closed:
            delay = interval * random.uniform(0.8, 1.0)  # spread, not crypto
            stream.keepalive = self._loop.call_later(delay, self._ping, peer, stream)

    def _ping(self, peer: Address, stream: _Stream) -> None:
        """Ping ``peer`` if the agent needs the connection; check the pong if it gives them."""
        stream.keepalive = None
        writer = stream.writer
        if self._streams.get(peer) is not stream or writer is None or writer.is_closing():
            return
        if not self._agent_needs(peer, if_unsure=False):
            self._next_ping(peer, stream)
            return
        writer.write(b"\r\n\r\n")
        self.stats.pings_sent += 1
        if stream.ponged is None:  # not known to answer: nothing to check
            self._next_ping(peer, stream)
            return
        sent = self._loop.time()
        stream.keepalive = self._loop.call_later(
            self.keepalive_timeout, self._check_pong, peer, stream, sent
        )

    def _check_pong(self, peer: Address, stream: _Stream, sent: float) -> None:
        stream.keepalive = None
        if self._streams.get(peer) is not stream:
            return
        if stream.ponged is not None and stream.ponged >= sent:
            self._next_ping(peer, stream)
            return
        self.stats.keepalive_failures += 1
        logger.warning(
            "SIP connection to %s:%d left a keep-alive unanswered for %g s: closed, its "
            "registrations sent again",
            *peer,
            self.keepalive_timeout,
        )
        self._drop(peer, stream)  # now, so that what the agent sends next opens a new one
        if self._ua is not None:
            try:
                self._ua.flow_failed(peer, self._loop.time())
            except Exception:
                self.stats.agent_errors += 1
                logger.exception("SIP agent failed on a dead connection to %s:%d", *peer)
            self.kick()

    def _failed(self, peer: Address, stream: _Stream, detail: str) -> None:
        """A connection we were opening could not be: its requests fail now."""
        current = self._streams.get(peer) is stream
        self._drop(peer, stream)
        if current and self._ua is not None:
            try:
                self._ua.connection_failed(peer, self._loop.time(), detail)
            except Exception:
                self.stats.agent_errors += 1
                logger.exception("SIP agent failed on a lost connection to %s:%d", *peer)
            self.kick()

    def _drop(self, peer: Address, stream: _Stream) -> None:
        """The connection with ``peer`` is over: forget it (the agent too)."""
        if stream.writer is not None:
            stream.writer.close()
        if stream.keepalive is not None:
            stream.keepalive.cancel()
            stream.keepalive = None
        stream.waiting.clear()
        if self._streams.get(peer) is stream:
            del self._streams[peer]
            if self._ua is not None:
                self._ua.forget_stream_peer(peer)

    def _write(self, data: bytes, peer: Address) -> None:
        stream = self._streams.get(peer)
        ua = self._ua
        name = ua.tls_names.get(peer, peer[0]) if ua is not None and ua.is_secure(peer) else None
        if stream is not None and stream.name is not None and stream.name != name:
            # checked for another name at this address: that check does not cover this one
            if stream.writer is not None:
                stream.writer.close()  # its reader ends; the new connection stays the peer's
            stream.waiting.clear()
            stream = None
        if stream is None:
            if name is not None and self._tls_client is None:
                self.stats.tls_errors += 1  # cannot happen: the agent refuses TLS URIs without
                return
            stream = _Stream(waiting=[data], secure=name is not None, name=name)
            self._streams[peer] = stream
            stream.task = self._loop.create_task(self._connect(peer, stream))
        elif stream.writer is None:
            stream.waiting.append(data)
        elif stream.writer.is_closing():
            self.stats.tcp_errors += 1
        else:
            stream.writer.write(data)
            stream.last_active = self._loop.time()
            self.stats.tcp_messages_out += 1

    @property
    def udp_keepalive_interval(self) -> float | None:
        """How often registrars reached over UDP get a keep-alive datagram (``None``: never)."""
        return self._udp_keepalive_interval

    @udp_keepalive_interval.setter
    def udp_keepalive_interval(self, seconds: float | None) -> None:
        self._udp_keepalive_interval = seconds
        if self._udp_keepalive is not None:
            self._udp_keepalive.cancel()
            self._udp_keepalive = None
        self._arm_udp_keepalive()

    def _arm_udp_keepalive(self) -> None:
        interval = self._udp_keepalive_interval
        if interval is not None and self._udp_keepalive is None and not self.closed:
            self._udp_keepalive = self._loop.call_later(interval, self._send_udp_keepalives)

    def _send_udp_keepalives(self) -> None:
        self._udp_keepalive = None
        ua, transport = self._ua, self._transport
        if ua is None or transport is None or transport.is_closing():
            return
        try:
            peers = ua.udp_registrars()
        except Exception:
            self.stats.agent_errors += 1
            logger.exception("SIP agent failed on a keep-alive check")
            peers = []
        for peer in peers:
            try:
                transport.sendto(b"\r\n\r\n", peer)
            except OSError as exc:
                self.stats.send_errors += 1
                logger.debug("SIP keep-alive to %s failed: %s", peer, exc)
            else:
                self.stats.udp_keepalives += 1
        self._arm_udp_keepalive()

    @property
    def tls_check_interval(self) -> float:
        """How often the TLS files are looked at for a renewal (seconds; default 60)."""
        return self._tls_check_interval

    @tls_check_interval.setter
    def tls_check_interval(self, seconds: float) -> None:
        self._tls_check_interval = seconds
        if self._tls_watch is not None:  # the next look comes on the new schedule
            self._tls_watch.cancel()
            self._tls_watch = self._loop.call_later(seconds, self._watch_tls)

    def reload_tls(self) -> bool:
        """Read the TLS certificate, key and CA files again: connections from now on use them
        (open ones keep theirs). False without TLS. Files that cannot be used raise
        :class:`~dtmfgraph.media.tls.TlsConfigError`, and the ones in use stay."""
        if self._tls is None:
            return False
        config, listener, _ = self._tls
        stamp = config.stamp()
        client = config.client_context()  # checks every file before anything changes
        config.server_context()
        config.load_ours(listener)  # the listening server's context: new handshakes
        if config.ca_file is not None:  # CAs added to the file are trusted from now on
            listener.load_verify_locations(cafile=str(config.ca_file))
        self._tls_client = client
        self._tls = (config, listener, stamp)
        self.stats.tls_reloads += 1
        logger.info("SIP TLS: certificate %s loaded again", config.cert_file)
        return True

    def _watch_tls(self) -> None:
        """Every ``tls_check_interval``: reload the TLS files if they changed."""
        self._tls_watch = None
        if self._tls is None or self.closed:
            return
        config, listener, loaded = self._tls
        stamp = config.stamp()
        if stamp != loaded:
            try:
                self.reload_tls()
            except TlsConfigError as exc:
                self._tls = (config, listener, stamp)  # said once per change
                logger.warning("SIP TLS: renewed files unusable, the old ones kept: %s", exc)
        self._tls_watch = self._loop.call_later(self.tls_check_interval, self._watch_tls)

    def _sweep_soon(self) -> None:
        """Arm the idle sweep (while connections are open)."""
        if self._sweeper is None and self.idle_timeout is not None and not self.closed:
            interval = min(_SWEEP_S, self.idle_timeout / 2)
            self._sweeper = self._loop.call_later(interval, self._sweep)

    def _sweep(self) -> None:
        """Close the connections idle for ``idle_timeout`` that nothing needs any more."""
        self._sweeper = None
        timeout, ua = self.idle_timeout, self._ua
        if timeout is None or ua is None:
            return
        now = self._loop.time()
        for peer, stream in list(self._streams.items()):
            writer = stream.writer
            if writer is None or now - stream.last_active < timeout:
                continue
            try:
                needed = ua.peer_in_use(peer)
            except Exception:
                self.stats.agent_errors += 1
                logger.exception("SIP agent failed on a connection check")
                needed = True
            if not needed:
                self.stats.idle_closed += 1
                logger.debug("SIP connection with %s:%d idle: closed", *peer)
                writer.close()  # its reader ends and forgets the peer
        if self._streams:
            self._sweep_soon()

    def _stop_timers(self) -> None:
        """Stop the agent's timer and the periodic ones (keep-alives, idle sweep, TLS files)."""
        self._cancel_timer()
        for timer in (self._udp_keepalive, self._sweeper, self._tls_watch):
            if timer is not None:
                timer.cancel()
        self._udp_keepalive = self._sweeper = self._tls_watch = None

    def error_received(self, exc: Exception) -> None:
        self.stats.send_errors += 1
        logger.debug("SIP socket error: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timers()
        if not self._closed.done():
            self._closed.set_result(None)

    # -- driving ------------------------------------------------------------------------------
    def kick(self) -> None:
        """Send what the agent queued, hand out its events, re-arm the timer.

        Call it after every API call on the agent. Re-entrant: an event handler that calls the
        agent and kicks again just makes the running loop go round once more.
        """
        if self._flushing:
            self._again = True
            return
        ua = self._ua
        if ua is None:
            return
        self._flushing = True
        try:
            while True:
                self._again = False
                self._send(ua)
                event = ua.next_event()
                while event is not None:
                    try:
                        self.on_event(event)
                    except Exception:
                        self.stats.handler_errors += 1
                        logger.exception("SIP event handler failed on %r", event)
                    self._send(ua)
                    event = ua.next_event()
                if not self._again:
                    break
        finally:
            self._flushing = False
        self._rearm(ua)

    def _send(self, ua: UserAgent) -> None:
        for data, peer in ua.stream_messages_to_send(self._loop.time()):
            if not self.closed:
                if self.tap is not None:
                    self._tapped("out", data, peer, "tls" if ua.is_secure(peer) else "tcp")
                self._write(data, peer)
        datagrams = ua.datagrams_to_send(self._loop.time())
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        for data, addr in datagrams:
            if self.tap is not None:
                self._tapped("out", data, addr, "udp")
            if not _is_ip(addr[0]):  # a Contact naming a host: never resolved on the loop
                self._send_resolved(data, addr)
                continue
            try:
                transport.sendto(data, addr)
            except OSError as exc:
                self.stats.send_errors += 1
                logger.debug("SIP sendto %s failed: %s", addr, exc)
            else:
                self.stats.datagrams_out += 1

    def _send_resolved(self, data: bytes, addr: Address) -> None:
        """Send ``data`` to the host name ``addr`` once it is resolved, off the event loop and
        within :data:`RESOLVE_TIMEOUT_S` (``sendto`` would resolve it synchronously: a name
        server that does not answer would stall every call); at most
        :data:`MAX_RESOLVING` at a time, others are dropped (counted; the transaction's
        retransmissions try again)."""
        if len(self._resolving) >= MAX_RESOLVING:
            self.stats.send_errors += 1
            return
        task = self._loop.create_task(self._resolve_and_send(data, addr))
        self._resolving.add(task)
        task.add_done_callback(self._resolving.discard)

    async def _resolve_and_send(self, data: bytes, addr: Address) -> None:
        transport = self._transport
        if transport is None:
            return
        family = transport.get_extra_info("socket").family
        try:
            infos = await asyncio.wait_for(
                self._loop.getaddrinfo(addr[0], addr[1], family=family, type=socket.SOCK_DGRAM),
                RESOLVE_TIMEOUT_S,
            )
            if transport.is_closing() or not infos:
                return
            transport.sendto(data, infos[0][4][:2])
        except (OSError, TimeoutError, UnicodeError, ValueError) as exc:
            self.stats.send_errors += 1
            logger.debug("SIP datagram to %s:%d not sent: %s", addr[0], addr[1], exc)
        else:
            self.stats.datagrams_out += 1

    def _rearm(self, ua: UserAgent) -> None:
        deadline = ua.next_deadline()
        if deadline == self._timer_at:
            return
        self._cancel_timer()
        if deadline is not None and not self.closed:
            self._timer_at = deadline
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_at = None

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        ua = self._ua
        if ua is None:
            return
        try:
            # asyncio may fire a hair early: never hand the agent a time before its deadline.
            deadline = ua.next_deadline()
            now = self._loop.time()
            if deadline is not None:
                now = max(now, deadline)
            ua.handle_deadline(now)
        except Exception:
            self.stats.agent_errors += 1
            logger.exception("SIP agent failed on a timer")
        self.kick()

    # -- lifetime -----------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed.done() or self._transport is None or self._transport.is_closing()

    async def close(self) -> None:
        """Close the socket (queued datagrams are sent first) and stop the timer."""
        if self._ua is not None and self._transport is not None:
            self._send(self._ua)
        self._stop_timers()
        for task in list(self._resolving):
            task.cancel()
        for server in (self._tcp_server, self._tls_server):
            if server is not None:
                server.close()
        streams, self._streams = list(self._streams.values()), {}
        for stream in streams:
            if stream.writer is not None:
                stream.writer.close()
            if stream.keepalive is not None:
                stream.keepalive.cancel()
            if stream.task is not None:
                stream.task.cancel()
        for stream in streams:
            if stream.task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await stream.task
        if self._transport is not None:
            self._transport.close()
        await self._closed


MAX_TCP_CONNECTIONS = 4096
"""Open TCP connections (ours and accepted); past it the oldest one nothing needs makes room."""
DEFAULT_IDLE_TIMEOUT_S = 120.0
"""A connection with no traffic for this long, that no transaction, call or registration of the
agent needs, is closed (Kamailio's default lifetime)."""
DEFAULT_KEEPALIVE_S = 120.0
"""Ping interval on connections we opened (RFC 5626 4.4.1: 80-100 % of 120 s without a
``Flow-Timer``)."""
KEEPALIVE_TIMEOUT_S = 10.0
"""A pong later than this fails the connection (RFC 5626 4.4.1)."""
UDP_KEEPALIVE_S = 25.0
"""Keep-alive period towards registrars reached over UDP (NAT mappings last 30 s and more)."""
TLS_CHECK_S = 60.0
"""How often the TLS files are looked at for a renewal."""
_SWEEP_S = 30.0
"""How often idle connections are looked for."""
_CONNECT_TIMEOUT_S = 5.0
"""Longest wait for a TCP connection to a peer."""


MAX_RESOLVING = 64
"""Datagrams to host names waiting for their name at once (beyond: dropped)."""
RESOLVE_TIMEOUT_S = 2.0
"""Longest wait for a host name of a datagram's destination."""


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _peer(writer: asyncio.StreamWriter) -> Address:
    name = writer.get_extra_info("peername")
    return str(name[0]), int(name[1])
