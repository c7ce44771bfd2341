"""Ports, processes and dropped datagrams, for the end-to-end benchmarks (``capacity.py``)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

from _proc import tree_cpu
from _report import stop


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_media_port() -> int:
    """An even UDP port with the next three free too (sipp's -rtp_echo takes port and port+2)."""
    for _ in range(200):
        base = free_port(socket.SOCK_DGRAM) & ~1
        socks: list[socket.socket] = []
        try:
            for p in range(base, base + 4):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free media port run")


def udp_drops(port: int) -> int:
    """Datagrams dropped by the sockets bound to ``port`` (IPv4), from /proc/net/udp."""
    total = 0
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        cols = line.split()
        if int(cols[1].rsplit(":", 1)[1], 16) == port:
            total += int(cols[-1])
    return total


def service_drops(root: int) -> int:
    """Datagrams dropped by the UDP sockets of ``root``'s process tree (its RTP sockets' queues
    overflowing while nobody read them), from /proc/net/udp by socket inode."""
    inodes: set[str] = set()
    for pid in tree_cpu(root):
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("socket:["):
                        inodes.add(link[8:-1])
    total = 0
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        cols = line.split()
        if cols[9] in inodes:
            total += int(cols[-1])
    return total


@contextlib.contextmanager
def running(
    argv: list[str], log: Path, cwd: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, stdin=subprocess.DEVNULL
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            stop(proc, timeout=10)
