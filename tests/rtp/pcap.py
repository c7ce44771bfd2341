"""A tiny pcap reader: the UDP payloads of a classic libpcap file, with their capture times."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

_LINKTYPE_NULL = 0
_LINKTYPE_ETHERNET = 1
_LINKTYPE_RAW = 101
_LINKTYPE_LINUX_SLL = 113


@dataclass(frozen=True)
class UdpDatagram:
    time: float
    src: tuple[str, int]
    dst: tuple[str, int]
    payload: bytes


def read_udp(path: str | Path) -> list[UdpDatagram]:
    """Every IPv4/UDP datagram in a pcap file (Ethernet, Linux cooked, raw IP or BSD null links)."""
    data = Path(path).read_bytes()
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise ValueError(f"{path}: not a pcap file")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack_from(endian + "I", data, 20)[0]
    out: list[UdpDatagram] = []
    pos = 24
    while pos + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack_from(endian + "IIII", data, pos)
        frame = data[pos + 16 : pos + 16 + incl]
        pos += 16 + incl
        ip = _ip_of(frame, linktype)
        if ip is None or len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 17:
            continue
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack_from("!H", ip, 2)[0]
        udp = ip[ihl:total]
        sport, dport, ulen = struct.unpack_from("!HHH", udp)
        src = ".".join(map(str, ip[12:16]))
        dst = ".".join(map(str, ip[16:20]))
        t = sec + frac / (1e9 if nano else 1e6)
        out.append(UdpDatagram(t, (src, sport), (dst, dport), bytes(udp[8:ulen])))
    return out


def _ip_of(frame: bytes, linktype: int) -> bytes | None:
    if linktype == _LINKTYPE_ETHERNET:
        ethertype = struct.unpack_from("!H", frame, 12)[0]
        offset = 14
        if ethertype == 0x8100:  # one VLAN tag
            ethertype = struct.unpack_from("!H", frame, 16)[0]
            offset = 18
        return frame[offset:] if ethertype == 0x0800 else None
    if linktype == _LINKTYPE_LINUX_SLL:
        return frame[16:] if struct.unpack_from("!H", frame, 14)[0] == 0x0800 else None
    if linktype == _LINKTYPE_RAW:
        return frame
    if linktype == _LINKTYPE_NULL:
        return frame[4:]
    return None
