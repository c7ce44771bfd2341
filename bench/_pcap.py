"""A caller's RTP as a pcap file that sipp replays (``play_pcap_audio``), made by our own sender.

:func:`write_dtmf_pcap` runs an :class:`~dtmfgraph.rtp.outbound.OutboundStream` (PCMU, the
telephone-event payload type 101) on a virtual clock: 20 ms silence frames, ``keys`` as RFC 4733
events from ``lead_s`` on, then silence up to ``seconds``, each packet stamped with its slot.
sipp rewrites the addresses and ports; the timestamps pace the replay.
"""

from __future__ import annotations

import struct
from pathlib import Path

from dtmfgraph.rtp.codec import Codec
from dtmfgraph.rtp.outbound import OutboundStream

_PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)  # LINKTYPE_ETHERNET
_ETHERNET = bytes.fromhex("0200000000020200000000010800")
_SRC, _DST = bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1])
_SPORT, _DPORT = 40000, 40002


def _frame(payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", _SPORT, _DPORT, 8 + len(payload), 0) + payload
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0, _SRC, _DST)
    total = sum(struct.unpack("!10H", head))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    head = head[:10] + struct.pack("!H", ~total & 0xFFFF) + head[12:]
    return _ETHERNET + head + udp


def write_dtmf_pcap(
    path: Path,
    keys: str,
    *,
    seconds: float,
    lead_s: float = 1.0,
    tone_ms: int = 100,
    gap_ms: int = 100,
) -> int:
    """Write ``seconds`` of one caller's RTP to ``path``; returns the number of packets."""
    stream = OutboundStream(start=0.0, codec=Codec.PCMU, event_pt=101, ssrc=0x5EED, sequence=1)
    stream.send_dtmf(keys, tone_ms=tone_ms, gap_ms=gap_ms, now=lead_s)
    records = [_PCAP_HEADER]
    slots = round(seconds / 0.02)
    count = 0
    for k in range(slots):
        at = k * 0.02
        for packet in stream.packets_due(at):
            frame = _frame(packet)
            micros = round(at * 1e6)
            records.append(struct.pack("<IIII", micros // 1_000_000, micros % 1_000_000,
                                       len(frame), len(frame)))  # fmt: skip
            records.append(frame)
            count += 1
    path.write_bytes(b"".join(records))
    return count
