"""Free loopback ports for tests that start real peers (chosen at random so parallel runs rarely
collide; a peer that still loses a race should be restarted on fresh ports)."""

from __future__ import annotations

import contextlib
import random
import socket
from collections.abc import Iterator


def free_port(kind: int = socket.SOCK_DGRAM, host: str = "127.0.0.1") -> int:
    """A port the kernel says is free right now (UDP or TCP; IPv4 or, for ``::1``, IPv6)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_sip_port(host: str = "127.0.0.1", *, tls_next: bool = False) -> int:
    """A port free right now for UDP and TCP (and, with ``tls_next``, the next one for TCP:
    where baresip puts its TLS listener)."""
    for _ in range(100):
        port = free_port(socket.SOCK_DGRAM, host)
        wanted = [(socket.SOCK_STREAM, port)] + (
            [(socket.SOCK_STREAM, port + 1)] if tls_next else []
        )
        try:
            for kind, p in wanted:
                with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, kind) as s:
                    s.bind((host, p))
        except OSError:
            continue
        return port
    raise RuntimeError("no free SIP port found")


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port that is free right now."""
    return free_port(socket.SOCK_DGRAM, host)


def free_udp_run(size: int, low: int, high: int, host: str = "127.0.0.1") -> int:
    """The first port of a run of ``size`` UDP ports, all free now, starting at an even port in
    ``low``..``high``."""
    rng = random.Random()
    for _ in range(200):
        first = rng.randrange(low, high - size) & ~1
        socks: list[socket.socket] = []
        try:
            for port in range(first, first + size):
                s = socket.socket(
                    socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM
                )
                socks.append(s)
                s.bind((host, port))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        return first
    raise RuntimeError(f"no run of {size} free UDP ports found in {low}-{high}")


@contextlib.contextmanager
def silent_udp_port(host: str = "127.0.0.1") -> Iterator[int]:
    """A UDP port held by a socket that never reads: a SIP server that is down. Holding it
    keeps a program started meanwhile (binding port 0) from being given it, and so from
    calling itself."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        yield int(s.getsockname()[1])
