"""Shared helpers for the media tests: a loopback receiver, fake paced streams, tshark capture."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import shutil
import signal
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dtmfgraph.media import UdpEndpoint, open_udp_endpoint

TSHARK_MISSING = (
    "tshark is not installed: run the test command, which installs the judges "
    "(apt-get install -y --no-install-recommends tshark)"
)


@dataclass
class Receiver:
    """A loopback UDP sink that timestamps every datagram with the loop clock."""

    endpoint: UdpEndpoint
    packets: list[tuple[float, bytes]] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.endpoint.local_address[1]

    @property
    def address(self) -> tuple[str, int]:
        return self.endpoint.local_address

    async def wait_for(self, n: int, timeout: float) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.packets) < n and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)


async def open_receiver(host: str = "127.0.0.1", port: int = 0) -> Receiver:
    loop = asyncio.get_running_loop()
    endpoint = await open_udp_endpoint(host, port, rcvbuf=8 << 20)
    rx = Receiver(endpoint)
    endpoint.on_datagram = lambda data, addr: rx.packets.append((loop.time(), data))
    return rx


FAKE = struct.Struct("!IId")


class FakeStream:
    """Stands in for an OutboundStream: ``count`` frames of ``ptime`` from ``start``.

    Each packet carries (stream id, frame index, due time); after its last frame it emits "done".
    """

    def __init__(self, sid: int, start: float, count: int, ptime: float = 0.020) -> None:
        self.sid = sid
        self.start = start
        self.count = count
        self.ptime = ptime
        self.k = 0
        self.events: list[object] = []

    def next_deadline(self) -> float:
        return self.start + self.k * self.ptime

    def packets_due(self, now: float) -> list[bytes]:
        out = []
        while self.k < self.count and self.start + self.k * self.ptime <= now:
            out.append(FAKE.pack(self.sid, self.k, self.start + self.k * self.ptime))
            self.k += 1
            if self.k == self.count:
                self.events.append(("done", self.sid))
        return out

    def next_event(self) -> object | None:
        return self.events.pop(0) if self.events else None


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


# -- tshark -----------------------------------------------------------------------------------
def tshark() -> str:
    path = shutil.which("tshark")
    if path is None:
        pytest.fail(TSHARK_MISSING, pytrace=False)
    return path


@contextlib.contextmanager
def capture(
    port: int, path: Path, timeout: float = 20.0, *, protocol: str = "udp"
) -> Iterator[None]:
    """Capture ``protocol`` (``udp`` or ``tcp``) port ``port`` on loopback into ``path`` while
    the block runs."""
    exe = tshark()
    proc = subprocess.Popen(
        [exe, "-i", "lo", "-f", f"{protocol} port {port}", "-w", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    seen = b""
    deadline = time.monotonic() + timeout
    fd = proc.stderr.fileno()
    while b"Capture started" not in seen:
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            proc.kill()
            pytest.fail(f"tshark did not start capturing: {seen.decode(errors='replace')}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk and proc.poll() is not None:
                continue
            seen += chunk
    try:
        yield
    finally:
        time.sleep(0.3)  # let the last packets reach the capture buffer
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stderr.close()


RTP_FIELDS = (
    "frame.time_epoch",
    "rtp.ssrc",
    "rtp.seq",
    "rtp.marker",
    "rtp.timestamp",
    "rtp.p_type",
    "rtpevent.event_id",
    "rtpevent.end_of_event",
    "rtpevent.volume",
    "rtpevent.duration",
    "rtp.payload",
)


@dataclass(frozen=True)
class Row:
    """One RTP packet as tshark decoded it."""

    time: float
    ssrc: int
    seq: int
    marker: bool
    timestamp: int
    pt: int
    event: int | None
    end: bool | None
    volume: int | None
    duration: int | None
    payload: bytes


def _flag(text: str) -> bool:
    return text.strip().lower() in {"1", "true", "yes", "set"}


def decode_rtp(path: Path, port: int, event_pt: int = 101) -> list[Row]:
    """Decode a capture as RTP on ``port`` (``event_pt`` as telephone-event) with tshark."""
    cmd = [tshark(), "-r", str(path), "-d", f"udp.port=={port},rtp"]
    if event_pt not in (100, 101):
        cmd += ["-d", f"rtp.pt=={event_pt},rtpevent"]
    cmd += ["-T", "fields", "-E", "separator=\t", "-E", "occurrence=f"]
    for f in RTP_FIELDS:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout
    rows = []
    for line in out.splitlines():
        c = line.split("\t")
        if len(c) < len(RTP_FIELDS) or not c[2]:
            continue
        has_event = c[6] != ""
        rows.append(
            Row(
                time=float(c[0]),
                ssrc=int(c[1], 16) if c[1].startswith("0x") else int(c[1]),
                seq=int(c[2]),
                marker=_flag(c[3]),
                timestamp=int(c[4]),
                pt=int(c[5]),
                event=int(c[6]) if has_event else None,
                end=_flag(c[7]) if has_event else None,
                volume=int(c[8]) if has_event else None,
                duration=int(c[9]) if has_event else None,
                payload=bytes.fromhex(c[10].replace(":", "")),
            )
        )
    return rows
