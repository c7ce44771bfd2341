"""SIP INFO DTMF bodies: ``application/dtmf-relay`` and ``application/dtmf``.

Keys are written as on the keypad: ``0``-``9``, ``*``, ``#``, ``A``-``D``, and ``F`` for hook
flash (RFC 4733 event 16), the same spelling as :mod:`dtmfgraph.tones.keypad`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from dtmfgraph.sip.errors import SipParseError

DTMF_RELAY: Final = "application/dtmf-relay"
DTMF: Final = "application/dtmf"
CONTENT_TYPES: Final = (DTMF_RELAY, DTMF)

_EVENT_KEYS: Final = "0123456789*#ABCDF"
"""Index = RFC 4733 event code (16 = flash)."""


class DtmfBodyError(SipParseError):
    """An INFO body whose signal cannot be read."""


@dataclass(frozen=True, slots=True)
class DtmfSignal:
    """One key and its duration in ms (``None`` when the body gave none)."""

    key: str
    duration_ms: int | None = None

    @property
    def event(self) -> int:
        """The RFC 4733 event code (0-16)."""
        return _EVENT_KEYS.index(self.key)


def normalize_key(key: str | int) -> str:
    """A key as ``0``-``9``, ``*``, ``#``, ``A``-``D`` or ``F``; event codes and ``flash`` too."""
    if isinstance(key, int):
        if 0 <= key < len(_EVENT_KEYS):
            return _EVENT_KEYS[key]
        raise DtmfBodyError(f"no DTMF event {key}")
    text = key.strip().upper()
    if text == "FLASH":
        return "F"
    if len(text) == 1 and text in _EVENT_KEYS:
        return text
    if len(text) <= 2 and text.isascii() and text.isdigit() and int(text) < len(_EVENT_KEYS):
        return _EVENT_KEYS[int(text)]
    raise DtmfBodyError(f"unreadable DTMF signal {key!r}")


def encode_dtmf_relay(key: str | int, duration_ms: int) -> bytes:
    """An ``application/dtmf-relay`` body; flash is sent as ``Signal=16``."""
    normal = normalize_key(key)
    if not 0 < duration_ms <= 65535:
        raise ValueError(f"DTMF duration out of range: {duration_ms} ms")
    signal = "16" if normal == "F" else normal
    return f"Signal={signal}\r\nDuration={duration_ms}\r\n".encode()


def decode(content_type: str | None, body: bytes) -> DtmfSignal:
    """Read an INFO body of either DTMF content type; raises :class:`DtmfBodyError`."""
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError as exc:
        raise DtmfBodyError("DTMF body is not ASCII") from exc
    if content_type == DTMF:
        return DtmfSignal(normalize_key(text.strip()))
    if content_type != DTMF_RELAY:
        raise DtmfBodyError(f"not a DTMF content type: {content_type!r}", status=415)
    fields: dict[str, str] = {}
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            continue
        name, sep, value = line.partition("=")
        if sep:
            fields[name.strip().lower()] = value.strip()
    if "signal" not in fields:
        raise DtmfBodyError("dtmf-relay body without Signal")
    key = normalize_key(fields["signal"])
    duration: int | None = None
    if "duration" in fields:
        value = fields["duration"]
        if not value.isascii() or not value.isdigit() or len(value) > 6:
            raise DtmfBodyError(f"unreadable Duration {value!r}")
        duration = int(value)
    return DtmfSignal(key, duration)
