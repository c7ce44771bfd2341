"""RTP packets (RFC 3550 section 5.1): parse and serialise, with strict validation."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from .errors import RtpError

RTP_VERSION: Final = 2
HEADER: Final = struct.Struct("!BBHII")
"""The fixed 12-byte header: V/P/X/CC, M/PT, sequence, timestamp, SSRC."""
HEADER_SIZE: Final = HEADER.size
_EXT_HEADER: Final = struct.Struct("!HH")
_U16: Final = 0xFFFF
_U32: Final = 0xFFFFFFFF
MAX_CSRCS: Final = 15


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP packet.

    ``extension`` is ``(profile, data)`` with ``len(data)`` a multiple of 4; ``padding`` is the
    number of padding bytes including the final count byte (0 = no padding).
    """

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False
    csrcs: tuple[int, ...] = ()
    extension: tuple[int, bytes] | None = None
    padding: int = 0

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> RtpPacket:
        """Read one packet; raises :class:`RtpError` (and nothing else) if it is malformed."""
        size = len(data)
        if size < HEADER_SIZE:
            raise RtpError(f"RTP packet too short: {size} bytes, the header needs {HEADER_SIZE}")
        first, second, sequence, timestamp, ssrc = HEADER.unpack_from(data)
        version = first >> 6
        if version != RTP_VERSION:
            raise RtpError(f"RTP version {version}, expected {RTP_VERSION}")
        count = first & 0x0F
        pos = HEADER_SIZE + 4 * count
        if pos > size:
            raise RtpError(f"RTP packet too short for its {count} CSRCs: {size} bytes")
        csrcs: tuple[int, ...] = (
            struct.unpack_from(f"!{count}I", data, HEADER_SIZE) if count else ()
        )
        extension: tuple[int, bytes] | None = None
        if first & 0x10:
            if pos + 4 > size:
                raise RtpError("RTP packet too short for its header extension")
            profile, words = _EXT_HEADER.unpack_from(data, pos)
            start = pos + 4
            pos = start + 4 * words
            if pos > size:
                raise RtpError(f"RTP header extension of {words} words overruns the packet")
            extension = (profile, bytes(data[start:pos]))
        end = size
        padding = 0
        if first & 0x20:
            padding = data[size - 1]
            if padding == 0:
                raise RtpError("RTP padding bit set but the padding count is 0")
            if pos + padding > size:
                raise RtpError(f"RTP padding of {padding} bytes overruns the payload")
            end = size - padding
        return cls(
            second & 0x7F,
            sequence,
            timestamp,
            ssrc,
            bytes(data[pos:end]),
            bool(second & 0x80),
            csrcs,
            extension,
            padding,
        )

    def serialize(self) -> bytes:
        """The packet's bytes; raises :class:`RtpError` for a field out of range."""
        self._check()
        first = (RTP_VERSION << 6) | len(self.csrcs)
        if self.padding:
            first |= 0x20
        if self.extension is not None:
            first |= 0x10
        parts = [
            HEADER.pack(
                first,
                (0x80 if self.marker else 0) | self.payload_type,
                self.sequence,
                self.timestamp,
                self.ssrc,
            )
        ]
        if self.csrcs:
            parts.append(struct.pack(f"!{len(self.csrcs)}I", *self.csrcs))
        if self.extension is not None:
            profile, data = self.extension
            parts.append(_EXT_HEADER.pack(profile, len(data) // 4))
            parts.append(data)
        parts.append(self.payload)
        if self.padding:
            parts.append(bytes(self.padding - 1) + bytes((self.padding,)))
        return b"".join(parts)

    def _check(self) -> None:
        _field("payload_type", self.payload_type, 0x7F)
        _field("sequence", self.sequence, _U16)
        _field("timestamp", self.timestamp, _U32)
        _field("ssrc", self.ssrc, _U32)
        _field("padding", self.padding, 0xFF)
        if len(self.csrcs) > MAX_CSRCS:
            raise RtpError(f"at most {MAX_CSRCS} CSRCs, got {len(self.csrcs)}")
        for csrc in self.csrcs:
            _field("csrc", csrc, _U32)
        if self.extension is not None:
            profile, data = self.extension
            _field("extension profile", profile, _U16)
            if len(data) % 4 or len(data) // 4 > _U16:
                raise RtpError(
                    f"extension data must be a multiple of 4 bytes, at most {4 * _U16}: {len(data)}"
                )


def _field(name: str, value: int, top: int) -> None:
    if not isinstance(value, int) or not 0 <= value <= top:
        raise RtpError(f"RTP {name} must be an integer 0..{top}, got {value!r}")
