"""Our RFC 4733 packets as the far end receives them: dumpcap on the loopback interface, and the
pacing error read from the capture.

dumpcap keeps only UDP packets to the far ends' media ports whose RTP payload type is the
telephone-event one (a BPF filter on the RTP header's second byte), so a thousand calls' audio
does not flood the capture. Each packet carries the kernel's timestamp from the moment it crossed
``lo``, before the far end's socket queue: the far end's own scheduling does not blur it.

Pacing error: our sender puts one packet in each 20 ms slot of a stream (``start + k * 20 ms``,
``k`` counted by the RTP sequence number, audio and events alike). For every packet of a stream
(one call: one source port) ``t - k * 20 ms`` is its slot's offset; the stream's earliest offset
is "on time", and each packet's error is how much later than that it crossed the wire. A constant
delay is no error; a packet sent 30 ms late is 30 ms, whatever its neighbours did.
"""

from __future__ import annotations

import contextlib
import re
import struct
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SLOT_S = 0.020
_GLOBAL = struct.Struct("<IHHiIII")
_RECORD = struct.Struct("<IIII")
_LINK_ETHERNET = 1
_LINK_LINUX_SLL = 113
_LINK_NULL = 0


@dataclass(frozen=True, slots=True)
class EventPacket:
    """One telephone-event packet seen on the wire."""

    t: float
    src_port: int
    seq: int
    timestamp: int
    event: int
    end: bool
    duration: int


@dataclass(slots=True)
class Pacing:
    """What the capture says about one run."""

    packets: int = 0
    streams: int = 0
    errors_ms: np.ndarray = field(default_factory=lambda: np.zeros(0))
    keys_by_port: dict[int, list[int]] = field(default_factory=dict)
    dropped: int | None = None

    def p(self, q: float) -> float:
        return float(np.percentile(self.errors_ms, q)) if self.errors_ms.size else float("nan")

    @property
    def late_20ms(self) -> int:
        return int((self.errors_ms > 20.0).sum())


@contextlib.contextmanager
def capture(ports: list[int], path: Path, payload_type: int = 101) -> Iterator[list[int | None]]:
    """dumpcap writing telephone-event packets to ``ports`` on ``lo`` into ``path`` (pcap) while
    the block runs; yields a one-element list that holds the packets dumpcap dropped once the
    block is done (None when it did not say)."""
    to = " or ".join(f"udp dst port {p}" for p in ports)
    bpf = f"({to}) and (udp[9] & 0x7f) = {payload_type}"
    proc = subprocess.Popen(
        ["dumpcap", "-i", "lo", "-f", bpf, "-P", "-B", "64", "-w", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 15
    seen = ""
    while "File:" not in seen and "Capturing on" not in seen:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            raise RuntimeError(f"dumpcap exited {proc.returncode}: {seen.strip()}")
        seen += line
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"dumpcap did not start: {seen.strip()}")
    time.sleep(0.3)  # the filter is attached once it says so; a margin for the first packets
    dropped: list[int | None] = [None]
    try:
        yield dropped
    finally:
        time.sleep(0.3)  # the last packets reach the ring buffer
        proc.send_signal(2)
        try:
            _, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        match = re.search(r"Packets received/dropped on interface '[^']+': \d+/(\d+)", err)
        dropped[0] = int(match.group(1)) if match else None


def read_events(path: Path) -> list[EventPacket]:
    """The telephone-event packets of a classic pcap file (as ``dumpcap -P`` writes)."""
    data = path.read_bytes()
    if len(data) < _GLOBAL.size:
        return []
    magic, _, _, _, _, _, link = _GLOBAL.unpack_from(data)
    nano = magic == 0xA1B23C4D
    if magic not in (0xA1B2C3D4, 0xA1B23C4D):
        raise ValueError(f"{path}: not a little-endian pcap file")
    skip = {_LINK_ETHERNET: 14, _LINK_LINUX_SLL: 16, _LINK_NULL: 4}[link]
    scale = 1e-9 if nano else 1e-6
    out: list[EventPacket] = []
    pos = _GLOBAL.size
    while pos + _RECORD.size <= len(data):
        sec, frac, incl, _ = _RECORD.unpack_from(data, pos)
        frame = data[pos + _RECORD.size : pos + _RECORD.size + incl]
        pos += _RECORD.size + incl
        ip = frame[skip:]
        if len(ip) < 20 or ip[0] >> 4 != 4:
            continue
        udp = ip[(ip[0] & 0x0F) * 4 :]
        rtp = udp[8:]
        if len(rtp) < 16:
            continue
        src_port = struct.unpack_from("!H", udp)[0]
        seq, timestamp = struct.unpack_from("!HI", rtp, 2)
        event, flags, duration = struct.unpack_from("!BBH", rtp, 12)
        out.append(
            EventPacket(
                sec + frac * scale, src_port, seq, timestamp, event, bool(flags & 0x80), duration
            )
        )
    return out


def pacing(packets: list[EventPacket]) -> Pacing:
    """Each packet's lateness against its stream's 20 ms grid, and each stream's keys in the
    order they started (RFC 4733 event codes, one per distinct event timestamp)."""
    streams: dict[int, list[EventPacket]] = defaultdict(list)
    for p in packets:
        streams[p.src_port].append(p)
    errors: list[np.ndarray] = []
    keys: dict[int, list[int]] = {}
    for port, got in streams.items():
        got.sort(key=lambda p: p.t)
        seq = np.array([p.seq for p in got], dtype=np.int64)
        steps = np.diff(seq)
        steps = (steps + 0x8000) % 0x10000 - 0x8000  # across the 16-bit wrap
        slots = np.concatenate(([0], np.cumsum(steps)))
        offsets = np.array([p.t for p in got]) - slots * SLOT_S
        errors.append((offsets - offsets.min()) * 1000.0)
        order: dict[int, int] = {}
        for p in got:
            order.setdefault(p.timestamp, p.event)
        keys[port] = list(order.values())
    return Pacing(
        packets=len(packets),
        streams=len(streams),
        errors_ms=np.concatenate(errors) if errors else np.zeros(0),
        keys_by_port=keys,
    )
