"""The SIP driver's TCP side on real loopback sockets: framing errors, limits, a taken port."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from pathlib import Path

import pytest

from dtmfgraph.api.app import build_media
from dtmfgraph.media import Phone
from dtmfgraph.media.sip_transport import TcpLimits
from dtmfgraph.service.sip_media import SipMedia
from dtmfgraph.settings import Settings


async def _connect(phone: Phone) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = phone.sip_address
    return await asyncio.open_connection(host, port)


def _options(port: int, name: str = "tcp") -> bytes:
    """An OPTIONS from ``port``; ``name`` makes its branch and Call-ID (a new transaction)."""
    return (
        "OPTIONS sip:dtmfgraph@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/TCP 127.0.0.1:{port};branch=z9hG4bK{name}{port}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:probe@127.0.0.1:{port}>;tag=1\r\nTo: <sip:dtmfgraph@127.0.0.1>\r\n"
        f"Call-ID: {name}-{port}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()


async def _response(reader: asyncio.StreamReader) -> bytes:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    return head


async def test_options_over_tcp_in_pieces_and_two_per_segment(phone: Phone) -> None:
    reader, writer = await _connect(phone)
    port = writer.get_extra_info("sockname")[1]
    message = _options(port)
    for i in range(0, len(message), 7):  # dribbled in 7-byte pieces
        writer.write(message[i : i + 7])
        await writer.drain()
        await asyncio.sleep(0.001)
    first = await _response(reader)
    assert first.startswith(b"SIP/2.0 200 OK\r\n")
    assert b"Via: SIP/2.0/TCP" in first
    writer.write(b"\r\n\r\n" + _options(port, "one") + _options(port, "two"))
    second, third = await _response(reader), await _response(reader)
    assert b"Call-ID: one-" in second and b"Call-ID: two-" in third
    writer.close()
    assert phone.transport.stats.tcp_messages_in == 3
    assert phone.transport.stats.datagrams_in == 0


async def test_a_stream_that_is_not_sip_is_closed_and_counted(phone: Phone) -> None:
    reader, writer = await _connect(phone)
    writer.write(b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TCP 1.2.3.4\r\n\r\n")  # no length
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by us
    stats = phone.transport.stats
    assert stats.tcp_errors == 1 and stats.agent_errors == 0
    reader, writer = await _connect(phone)  # the phone still takes connections
    writer.write(_options(writer.get_extra_info("sockname")[1]))
    assert (await _response(reader)).startswith(b"SIP/2.0 200 OK")
    writer.close()


async def test_the_oldest_idle_connection_makes_room_past_the_limit(phone: Phone) -> None:
    """4,096 idle connections once locked every caller out: past ``max_tcp_connections`` the
    least recently active connection nothing needs is closed and the new one served."""
    phone.transport.max_tcp_connections = 2
    held = [await _connect(phone) for _ in range(2)]
    await asyncio.sleep(0.05)
    reader, writer = await _connect(phone)
    assert await asyncio.wait_for(held[0][0].read(), 5) == b""  # the oldest: closed by us
    writer.write(_options(writer.get_extra_info("sockname")[1]))
    assert (await _response(reader)).startswith(b"SIP/2.0 200 OK")
    stats = phone.transport.stats
    assert (stats.tcp_evicted, stats.tcp_refused) == (1, 0)
    for _, w in [*held, (reader, writer)]:
        w.close()


async def test_connections_past_the_limit_are_refused_when_all_are_needed(
    phone: Phone,
) -> None:
    phone.transport.limits.max_per_source = 2
    held = [await _connect(phone) for _ in range(2)]
    await asyncio.sleep(0.05)
    phone.ua.peer_in_use = lambda peer: True
    reader, writer = await _connect(phone)
    assert await asyncio.wait_for(reader.read(), 5) == b""
    assert (phone.transport.stats.tcp_refused, phone.transport.stats.tcp_evicted) == (1, 0)
    for _, w in held:
        w.close()
    writer.close()


async def test_one_source_has_a_connection_cap(phone: Phone) -> None:
    phone.transport.limits.max_per_source = 3
    held = [await _connect(phone) for _ in range(3)]
    await asyncio.sleep(0.05)
    _, writer = await _connect(phone)
    assert await asyncio.wait_for(held[0][0].read(), 5) == b""
    assert phone.transport.stats.tcp_evicted == 1
    assert len(phone.transport._streams) == 3
    for _, w in [*held, (None, writer)]:
        w.close()


async def test_a_slow_message_is_cut_off(phone: Phone) -> None:
    """Slowloris: a header block sent a byte at a time is closed ``message_timeout`` after it
    began (before: never), while the bytes still trickle in."""
    phone.transport.limits.message_timeout = 0.5
    reader, writer = await _connect(phone)
    message = _options(writer.get_extra_info("sockname")[1])
    with contextlib.suppress(ConnectionError):  # closed by us while we trickle
        for byte in message[:40]:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.05)
    with contextlib.suppress(ConnectionError):  # (a reset, having written after the close)
        assert await asyncio.wait_for(reader.read(), 5) == b""
    assert phone.transport.stats.tcp_slow == 1
    writer.close()


async def test_a_body_over_the_cap_closes_the_connection(phone: Phone) -> None:
    """A body announced over ``max_body_bytes`` (64 KiB by default; it was 1 MiB, held per
    connection without any overall cap) is refused before it is read."""
    reader, writer = await _connect(phone)
    head = _options(writer.get_extra_info("sockname")[1]).replace(
        b"Content-Length: 0", b"Content-Length: 100000"
    )
    writer.write(head + b"x" * 1000)
    assert await asyncio.wait_for(reader.read(), 5) == b""
    assert phone.transport.stats.tcp_errors == 1
    writer.close()


async def test_incomplete_messages_have_an_overall_cap(phone: Phone) -> None:
    """Bytes held for incomplete messages, all connections together, stay under
    ``max_buffered_bytes``: the connection that would go past it is closed."""
    phone.transport.limits.max_buffered_bytes = 10_000
    first = await _connect(phone)
    first[1].write(b"OPTIONS sip:x SIP/2.0\r\nX-Pad: " + b"a" * 6000)
    await asyncio.sleep(0.1)
    second = await _connect(phone)
    second[1].write(b"OPTIONS sip:x SIP/2.0\r\nX-Pad: " + b"b" * 6000)
    assert await asyncio.wait_for(second[0].read(), 5) == b""
    assert phone.transport.stats.tcp_overflow == 1
    assert phone.transport._buffered < 10_000
    first[1].close()
    second[1].close()
    await asyncio.sleep(0.1)
    assert phone.transport._buffered == 0


async def test_a_taken_tcp_port_leaves_udp_working(caplog: pytest.LogCaptureFixture) -> None:
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    try:
        with caplog.at_level(logging.WARNING):
            async with await Phone.start("127.0.0.1", port) as phone:
                assert phone.sip_address == ("127.0.0.1", port)
                assert not phone.transport.tcp_listening
        assert "SIP over TCP is not accepted" in caplog.text
    finally:
        blocker.close()


async def test_idle_connections_are_closed_unless_a_call_needs_them() -> None:
    """idle_timeout 0.4 s: a client that sent one OPTIONS and went quiet is disconnected; a
    call between two phones over TCP keeps its connection through 1.5 s of SIP silence (its
    keys by SIP INFO then go over the same connection), and loses it once the call is over."""
    a = await Phone.start("127.0.0.1", 0)
    b = await Phone.start("127.0.0.1", 0)
    try:
        for phone in (a, b):
            phone.transport.idle_timeout = 0.4
        reader, writer = await _connect(a)
        writer.write(_options(writer.get_extra_info("sockname")[1]))
        assert (await _response(reader)).startswith(b"SIP/2.0 200 OK")
        assert await asyncio.wait_for(reader.read(), 3) == b""  # closed by us, idle
        assert a.transport.stats.idle_closed == 1

        answered: asyncio.Future[object] = asyncio.get_running_loop().create_future()

        async def on_incoming(invite: object) -> None:
            answered.set_result(await invite.answer())  # type: ignore[attr-defined]

        b.on_incoming = on_incoming
        host, port = b.sip_address
        call = await a.dial(f"sip:bob@{host}:{port};transport=tcp", timeout=5)
        callee = await asyncio.wait_for(answered, 5)
        await asyncio.sleep(1.5)  # no SIP at all meanwhile (RTP only)
        await call.send_dtmf("5", method="sipinfo")
        assert (await callee.next_key(3)).key == "5"  # type: ignore[attr-defined]
        assert a.transport.stats.tcp_connections == 2  # the OPTIONS one, and the call's
        assert b.transport.stats.idle_closed == 0
        await call.hangup()

        def closed_idle() -> int:
            return a.transport.stats.idle_closed + b.transport.stats.idle_closed

        for _ in range(40):  # one side closes the call's connection, the other sees it go
            if closed_idle() == 2:
                break
            await asyncio.sleep(0.1)
        assert closed_idle() == 2  # the OPTIONS connection, then the call's
    finally:
        await a.close()
        await b.close()


async def test_the_tcp_limits_come_from_the_settings(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        media="sip",
        sip_host="127.0.0.1",
        sip_port=0,
        sip_tcp_message_timeout_s=3.0,
        sip_tcp_max_per_source=5,
        sip_tcp_max_connections=50,
        sip_tcp_idle_timeout_s=30.0,
        sip_tcp_max_body_bytes=4096,
        sip_tcp_max_buffered_bytes=1 << 20,
    )
    media = build_media(settings)
    assert isinstance(media, SipMedia)
    phone = await media.open()
    try:
        transport = phone.transport
        assert transport.limits == TcpLimits(3.0, 5, 4096, 1 << 20)
        assert (transport.idle_timeout, transport.max_tcp_connections) == (30.0, 50)
    finally:
        await media.close()


class _Queued:
    """Stands in for the agent: one datagram queued for ``addr``."""

    def __init__(self, addr: tuple[str, int]) -> None:
        self.queue = [(b"\r\n\r\nhello", addr)]

    def stream_messages_to_send(self, now: float) -> list[tuple[bytes, tuple[str, int]]]:
        return []

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, tuple[str, int]]]:
        out, self.queue = self.queue, []
        return out


async def test_a_datagram_to_a_host_name_is_resolved_off_the_loop(phone: Phone) -> None:
    """A dialog whose Contact names a host: asyncio's sendto would resolve the name on the
    event loop (a name server that never answers froze the process). The name is looked up
    off the loop (getaddrinfo in the executor, with a timeout), then the datagram sent."""
    transport = phone.transport
    assert transport._transport is not None
    seen: list[tuple[str, int]] = []
    real = transport._transport.sendto

    def sendto(data: bytes, addr: tuple[str, int]) -> None:
        seen.append(addr)
        real(data, addr)

    transport._transport.sendto = sendto  # type: ignore[method-assign]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        sink.setblocking(False)
        port = sink.getsockname()[1]
        transport._send(_Queued(("localhost", port)))  # type: ignore[arg-type]
        assert seen == []  # not sent from the loop with the name in it
        loop = asyncio.get_running_loop()
        data = await asyncio.wait_for(loop.sock_recv(sink, 100), 5)
    assert data.endswith(b"hello") and seen == [("127.0.0.1", port)]
