"""UDP endpoints: binding on 127.0.0.1 / ::1, port ranges, exhaustion, addresses."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from dtmfgraph.media import (
    PortRange,
    PortRangeExhaustedError,
    bind_udp,
    open_udp_endpoint,
    parse_address,
)

from ..judges.ports import free_udp_port, free_udp_run


def test_port_range_allocates_each_port_once_then_fails_clearly() -> None:
    base = free_udp_run(4, 30000, 60000)
    ports = PortRange(base, base + 3)
    socks = [bind_udp("127.0.0.1", ports) for _ in range(4)]
    try:
        assert sorted(s.getsockname()[1] for s in socks) == list(range(base, base + 4))
        with pytest.raises(
            PortRangeExhaustedError, match=rf"no free UDP port on 127.0.0.1 in {base}-{base + 3}"
        ):
            bind_udp("127.0.0.1", ports)
        socks.pop(1).close()  # a port comes free again: the range finds it
        again = bind_udp("127.0.0.1", ports)
        socks.append(again)
        assert again.getsockname()[1] == base + 1
    finally:
        for s in socks:
            s.close()


def test_even_ports_only() -> None:
    base = free_udp_run(6, 30000, 60000)
    ports = PortRange(base + 1, base + 5, even=True)  # even ports base+2, base+4
    assert len(ports) == 2
    socks = [bind_udp("127.0.0.1", ports) for _ in range(2)]
    try:
        assert sorted(s.getsockname()[1] for s in socks) == [base + 2, base + 4]
        with pytest.raises(PortRangeExhaustedError, match="even ports only"):
            bind_udp("127.0.0.1", ports)
    finally:
        for s in socks:
            s.close()


def test_ports_taken_by_someone_else_are_skipped() -> None:
    base = free_udp_run(3, 30000, 60000)
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    squatter.bind(("127.0.0.1", base))
    try:
        s = bind_udp("127.0.0.1", PortRange(base, base + 2))
        assert s.getsockname()[1] == base + 1
        s.close()
    finally:
        squatter.close()


def test_port_range_validation_and_parse() -> None:
    assert PortRange.parse("10000-10099").first == 10000
    assert len(PortRange.parse("10000-10099")) == 100
    assert len(PortRange.parse("10001-10099", even=True)) == 49
    assert len(PortRange.parse("5004")) == 1
    for bad in ("", "x-y", "10-"):
        with pytest.raises(ValueError, match="bad port range"):
            PortRange.parse(bad)
    with pytest.raises(ValueError):
        PortRange(2000, 1000)
    with pytest.raises(ValueError):
        PortRange(0, 10)
    with pytest.raises(ValueError, match="no even port"):
        PortRange(5001, 5001, even=True)


def test_a_fixed_port_in_use_is_an_os_error() -> None:
    port = free_udp_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.0.1", port))
        with pytest.raises(OSError):
            bind_udp("127.0.0.1", port)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
async def test_endpoints_exchange_datagrams(host: str) -> None:
    got: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()
    a = await open_udp_endpoint(host, 0, on_datagram=lambda d, addr: got.put_nowait((d, addr)))
    b = await open_udp_endpoint(host, 0)
    assert a.local_address[0] == host and a.local_address[1] > 0
    b.sendto(b"hello", a.local_address)
    data, addr = await asyncio.wait_for(got.get(), 2)
    assert data == b"hello"
    assert addr[:2] == b.local_address
    await a.close()
    await b.close()
    assert a.closed and b.closed


async def test_sending_to_a_closed_port_counts_an_error_and_goes_on() -> None:
    a = await open_udp_endpoint("127.0.0.1", 0)
    dead = free_udp_port()
    for _ in range(3):
        a.sendto(b"x", ("127.0.0.1", dead))
        await asyncio.sleep(0.01)
    assert not a.closed  # ICMP port unreachable does not kill the endpoint
    await a.close()


def test_parse_address() -> None:
    assert parse_address("127.0.0.1:5004") == ("127.0.0.1", 5004)
    assert parse_address("[::1]:5004") == ("::1", 5004)
    assert parse_address("localhost:9") == ("localhost", 9)
    for bad in (
        "127.0.0.1",
        "127.0.0.1:",
        ":5004",
        "h:0",
        "h:70000",
        "h:x",
        "::1:5004",
        "[::1]5004",
    ):
        with pytest.raises(ValueError, match="bad address"):
            parse_address(bad)


async def test_many_endpoints_each_get_their_own_datagrams_in_order_and_leave_no_fd() -> None:
    """Every endpoint of a loop is read from one callback: each still gets exactly its own
    datagrams, in order, however many wait at once; one closed by another's handler in the
    same turn gets nothing more; when all are closed no descriptor is left behind."""
    fds_before = len(os.listdir("/proc/self/fd"))
    got: dict[int, list[bytes]] = {}
    endpoints = []
    for i in range(40):
        endpoint = await open_udp_endpoint("127.0.0.1")
        got[i] = []
        endpoint.on_datagram = lambda data, addr, i=i: got[i].append(data)
        endpoints.append(endpoint)
    victim = endpoints[39]
    first = endpoints[0]

    def close_victim(data: bytes, addr: tuple[str, int]) -> None:
        got[0].append(data)
        victim.close_now()

    first.on_datagram = close_victim
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for n in range(5):  # several waiting per socket before the loop gets to read
            for i, endpoint in enumerate(endpoints):
                sender.sendto(f"{i}:{n}".encode(), endpoint.local_address)
        deadline = asyncio.get_running_loop().time() + 10.0
        while any(len(got[i]) < 5 for i in range(39)):
            assert asyncio.get_running_loop().time() < deadline, got
            await asyncio.sleep(0.01)
    finally:
        sender.close()
    for i in range(39):
        assert got[i] == [f"{i}:{n}".encode() for n in range(5)]
    assert len(got[39]) <= 1 and victim.closed  # closed on the first turn: nothing after
    for endpoint in endpoints:
        await endpoint.close()
    assert len(os.listdir("/proc/self/fd")) == fds_before
