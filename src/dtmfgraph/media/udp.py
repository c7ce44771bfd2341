"""UDP endpoints for RTP: bind on a local address (127.0.0.1, ::1, ...) from a port range."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import select
import socket
from collections.abc import Callable, Iterator
from typing import TypeAlias

Address: TypeAlias = tuple[str, int]
"""A (host, port) pair as asyncio reports it (IPv6 4-tuples are cut to their first two fields)."""

DatagramHandler: TypeAlias = Callable[[bytes, Address], None]

_BUSY = frozenset({errno.EADDRINUSE, errno.EACCES})


class MediaError(Exception):
    """Base of the errors raised by :mod:`dtmfgraph.media`."""


class PortRangeExhaustedError(MediaError):
    """Every port of a :class:`PortRange` is already bound on that address."""


class PortRange:
    """An inclusive range of UDP ports to allocate endpoints from.

    One object is meant to be shared by every endpoint that draws from the range: it keeps a
    cursor so consecutive allocations try fresh ports first instead of rescanning busy ones.
    ``even=True`` hands out even ports only (the RTP convention, leaving ``port + 1`` for RTCP).
    """

    __slots__ = ("_cursor", "even", "first", "last")

    def __init__(self, first: int, last: int, *, even: bool = False) -> None:
        if not 1 <= first <= last <= 65535:
            raise ValueError(f"bad port range {first}-{last}: need 1 <= first <= last <= 65535")
        if even and first == last and first % 2:
            raise ValueError(f"port range {first}-{last} holds no even port")
        self.first = first
        self.last = last
        self.even = even
        self._cursor = 0

    @classmethod
    def parse(cls, text: str, *, even: bool = False) -> PortRange:
        """``"10000-20000"`` or a single port ``"5004"``."""
        lo, sep, hi = text.partition("-")
        try:
            first = int(lo)
            last = int(hi) if sep else first
        except ValueError:
            raise ValueError(f"bad port range {text!r}: expected FIRST-LAST") from None
        return cls(first, last, even=even)

    def __len__(self) -> int:
        if not self.even:
            return self.last - self.first + 1
        first = self.first + (self.first % 2)
        return 0 if first > self.last else (self.last - first) // 2 + 1

    def __repr__(self) -> str:
        return f"PortRange({self.first}, {self.last}, even={self.even})"

    def _ports(self) -> range:
        first = self.first + (self.first % 2) if self.even else self.first
        return range(first, self.last + 1, 2 if self.even else 1)

    def candidates(self) -> Iterator[int]:
        """Each port of the range once, starting after the last one handed out."""
        ports = self._ports()
        n = len(ports)
        start = self._cursor % n
        for i in range(n):
            j = (start + i) % n
            self._cursor = j + 1
            yield ports[j]


def _family(host: str) -> socket.AddressFamily:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return socket.AF_INET6 if host == "localhost6" else socket.AF_INET
    return socket.AF_INET6 if ip.version == 6 else socket.AF_INET


def bind_udp(
    host: str = "127.0.0.1",
    port: int | PortRange = 0,
    *,
    rcvbuf: int | None = None,
    sndbuf: int | None = None,
) -> socket.socket:
    """A non-blocking UDP socket bound to ``host`` on ``port`` (0 = any) or a free port of a range.

    Raises :class:`PortRangeExhaustedError` when every port of the range is taken, and ``OSError``
    for anything else (a fixed port in use, an address that is not local, ...).
    """
    sock = socket.socket(_family(host), socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if sndbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        if isinstance(port, int):
            sock.bind((host, port))
            return sock
        for candidate in port.candidates():
            try:
                sock.bind((host, candidate))
            except OSError as exc:
                if exc.errno in _BUSY:
                    continue
                raise
            return sock
        raise PortRangeExhaustedError(
            f"no free UDP port on {host} in {port.first}-{port.last}"
            f"{' (even ports only)' if port.even else ''}: all {len(port)} are in use"
        )
    except BaseException:
        sock.close()
        raise


class _ReadGroup:
    """Every :class:`UdpEndpoint` of one event loop in one epoll set, read from one callback.

    The event loop watches the set's own descriptor; when it is readable, one ``poll(0)`` says
    which sockets hold a datagram and each of those is read once. Per packet that is a tuple
    from ``poll`` and a dictionary look-up, where a reader per socket costs the loop's selector
    key, callback handle and context switch for every one; and reading one datagram per socket
    per turn (epoll is level-triggered: a socket still holding more is ready again next turn)
    spares the second ``recvfrom`` that drains a socket, which fails with an exception on
    nearly every packet (one datagram per socket per 20 ms is the usual case).
    """

    __slots__ = ("_epoll", "_loop", "endpoints")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._epoll = select.epoll()
        self.endpoints: dict[int, UdpEndpoint] = {}
        try:
            loop.add_reader(self._epoll.fileno(), self._ready)
        except BaseException:
            self._epoll.close()
            raise

    def add(self, endpoint: UdpEndpoint) -> None:
        fd = endpoint.sock.fileno()
        self._epoll.register(fd, select.EPOLLIN)
        self.endpoints[fd] = endpoint

    def discard(self, endpoint: UdpEndpoint) -> None:
        """Stop reading ``endpoint`` (before its socket closes); the last one closes the set."""
        fd = endpoint.sock.fileno()
        if self.endpoints.get(fd) is endpoint:
            del self.endpoints[fd]
            with contextlib.suppress(OSError, ValueError):
                self._epoll.unregister(fd)
        if not self.endpoints:
            self.close()

    def close(self) -> None:
        if _GROUPS.get(self._loop) is self:
            del _GROUPS[self._loop]
        if not self._epoll.closed:
            if not self._loop.is_closed():
                self._loop.remove_reader(self._epoll.fileno())
            self._epoll.close()

    def _ready(self) -> None:
        endpoints = self.endpoints
        for fd, _ in self._epoll.poll(0):
            endpoint = endpoints.get(fd)
            if endpoint is None:  # closed by a handler earlier in this turn
                continue
            try:  # one datagram: the socket is ready again next turn if it holds more
                data, addr = endpoint._recvfrom(endpoint.max_datagram)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                endpoint.errors += 1
                endpoint.last_error = exc
                continue
            handler = endpoint.on_datagram
            if handler is not None:
                handler(data, addr)


_GROUPS: dict[asyncio.AbstractEventLoop, _ReadGroup] = {}
"""The read group of each event loop that has endpoints open."""


def _group(loop: asyncio.AbstractEventLoop) -> _ReadGroup | None:
    """The loop's read group (made on first use); ``None`` where there is no epoll."""
    if not hasattr(select, "epoll"):
        return None
    group = _GROUPS.get(loop)
    if group is None:
        for stale in [g for other, g in _GROUPS.items() if other.is_closed()]:
            stale.close()
        group = _GROUPS[loop] = _ReadGroup(loop)
    return group


class UdpEndpoint:
    """One bound UDP socket on the event loop. Datagrams go to ``on_datagram(data, addr)``.

    Lean on purpose (RTP at thousands of streams per process): the sockets of one loop are read
    from one callback (:class:`_ReadGroup`: one datagram per ready socket per loop turn, where
    asyncio's datagram transport costs a callback per datagram), and :meth:`sendto` goes
    straight to the socket: a datagram the kernel cannot take right now is dropped and counted,
    never queued (late media is useless). Without epoll, a reader per socket drains it.
    """

    max_datagram = 4096
    """Bytes read per datagram; RTP over UDP stays far below this (the read group reads 4096)."""

    def __init__(
        self,
        sock: socket.socket,
        on_datagram: DatagramHandler | None = None,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.sock = sock
        self.on_datagram = on_datagram
        self.errors = 0
        """Send or receive errors (ICMP unreachable, full buffers): counted, never fatal."""
        self.last_error: OSError | None = None
        self._loop = loop if loop is not None else asyncio.get_running_loop()
        name = sock.getsockname()
        self.local_address: Address = (name[0], name[1])
        self._closed = False
        sock.setblocking(False)
        self._recvfrom = sock.recvfrom
        self._group = _group(self._loop)
        if self._group is not None:
            self._group.add(self)
        else:
            self._loop.add_reader(sock.fileno(), self._read_ready)

    def _read_ready(self) -> None:
        recvfrom = self.sock.recvfrom
        size = self.max_datagram
        while not self._closed:
            try:
                data, addr = recvfrom(size)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.errors += 1
                self.last_error = exc
                return
            handler = self.on_datagram
            if handler is not None:
                handler(data, addr)

    def read_now(self) -> None:
        """Hand every datagram already waiting in the socket to :attr:`on_datagram` now (a
        closer's last read: what arrived before the close is not thrown away with the socket,
        however late a loaded event loop got round to it)."""
        self._read_ready()

    def sendto(self, data: bytes, addr: Address) -> None:
        """Send one datagram now, or drop it (counted in :attr:`errors`)."""
        if self._closed:
            return
        try:
            self.sock.sendto(data, addr)
        except OSError as exc:
            self.errors += 1
            self.last_error = exc

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self) -> None:
        """Stop reading and close the socket (a coroutine, for symmetry with other closers)."""
        self.close_now()

    def close_now(self) -> None:
        if not self._closed:
            self._closed = True
            if self._group is not None:
                self._group.discard(self)
            elif not self._loop.is_closed():
                self._loop.remove_reader(self.sock.fileno())
            self.sock.close()


async def open_udp_endpoint(
    host: str = "127.0.0.1",
    port: int | PortRange = 0,
    *,
    on_datagram: DatagramHandler | None = None,
    rcvbuf: int | None = None,
    sndbuf: int | None = None,
) -> UdpEndpoint:
    """Bind a UDP socket (see :func:`bind_udp`) and read it on the running loop."""
    sock = bind_udp(host, port, rcvbuf=rcvbuf, sndbuf=sndbuf)
    try:
        return UdpEndpoint(sock, on_datagram)
    except BaseException:
        sock.close()
        raise


def open_rtcp_endpoint(rtp: UdpEndpoint) -> UdpEndpoint | None:
    """An endpoint on the port after ``rtp``'s, for its RTCP (RFC 3550 11), read on the running
    loop; ``None`` when that port is taken (the session then goes without RTCP)."""
    host, port = rtp.local_address
    if port >= 65535:
        return None
    try:
        sock = bind_udp(host, port + 1)
    except OSError as exc:
        if exc.errno in _BUSY:
            return None
        raise
    try:
        return UdpEndpoint(sock)
    except BaseException:
        sock.close()
        raise


def parse_address(text: str, *, default_host: str | None = None) -> Address:
    """Parse ``HOST:PORT`` (``[::1]:5004`` for IPv6); ``ValueError`` with a one-line reason."""
    host: str
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] != ":":
            raise ValueError(f"bad address {text!r}: expected [IPv6]:PORT")
        host, port_text = text[1:end], text[end + 2 :]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            if default_host is None:
                raise ValueError(f"bad address {text!r}: expected HOST:PORT")
            host, port_text = default_host, text
        if ":" in host:
            raise ValueError(f"bad address {text!r}: write IPv6 as [ADDR]:PORT")
    if not host:
        raise ValueError(f"bad address {text!r}: missing host")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"bad address {text!r}: port must be 1-65535")
    return host, int(port_text)
