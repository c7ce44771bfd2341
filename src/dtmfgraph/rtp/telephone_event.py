"""RFC 4733 telephone-event payloads (DTMF and flash as RTP events)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from dtmfgraph.tones import UnknownKeyError, by_event

from .errors import RtpError

EVENT: Final = struct.Struct("!BBH")
"""Event code, E|R|volume, duration."""
EVENT_SIZE: Final = EVENT.size
END_BIT: Final = 0x80
RESERVED_BIT: Final = 0x40
MAX_VOLUME: Final = 0x3F
MAX_DURATION: Final = 0xFFFF
FLASH_EVENT: Final = 16


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """One telephone-event payload.

    ``volume`` is the power level in -dBm0 (10 means -10 dBm0); ``duration`` is in RTP timestamp
    units since the event (or segment) started. The reserved bit is sent as 0 and ignored on
    reception, as RFC 4733 asks.
    """

    event: int
    end: bool
    volume: int
    duration: int

    @classmethod
    def parse(cls, payload: bytes | bytearray | memoryview) -> TelephoneEvent:
        """Read a 4-byte payload; raises :class:`RtpError` (and nothing else) if it is malformed."""
        if len(payload) != EVENT_SIZE:
            raise RtpError(
                f"telephone-event payload must be {EVENT_SIZE} bytes, got {len(payload)}"
            )
        event, flags, duration = EVENT.unpack_from(payload)
        return cls(event, bool(flags & END_BIT), flags & MAX_VOLUME, duration)

    def serialize(self) -> bytes:
        """The 4 payload bytes; raises :class:`RtpError` for a field out of range."""
        for name, value, top in (
            ("event", self.event, 0xFF),
            ("volume", self.volume, MAX_VOLUME),
            ("duration", self.duration, MAX_DURATION),
        ):
            if not isinstance(value, int) or not 0 <= value <= top:
                raise RtpError(f"telephone-event {name} must be an integer 0..{top}, got {value!r}")
        return EVENT.pack(self.event, (END_BIT if self.end else 0) | self.volume, self.duration)

    @property
    def key(self) -> str | None:
        """The keypad key (``0``-``9``, ``*``, ``#``, ``A``-``D``, ``F``); ``None`` for others."""
        try:
            return by_event(self.event).key
        except UnknownKeyError:
            return None
