"""The DTMF keypad: one table of keys, Graph tone names, RFC 4733 events and Q.23 frequencies."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

LOW_HZ: Final[tuple[float, ...]] = (697.0, 770.0, 852.0, 941.0)
"""Q.23 low-group (row) frequencies."""
HIGH_HZ: Final[tuple[float, ...]] = (1209.0, 1336.0, 1477.0, 1633.0)
"""Q.23 high-group (column) frequencies."""

_LAYOUT: Final = ("123A", "456B", "789C", "*0#D")


class KeypadError(ValueError):
    """Base of the keypad errors."""


class UnknownKeyError(KeypadError):
    """A key, tone name or event code that is not on the keypad."""


class NoTonePairError(KeypadError):
    """A key (``flash``) that exists only as a signalling event and cannot be sent as audio."""


@dataclass(frozen=True, slots=True)
class Key:
    """One keypad entry.

    ``low_hz``/``high_hz`` are ``None`` only for ``flash``, which exists as an RFC 4733 event
    (16) and a Graph tone but has no tone pair and so cannot be sent in-band.
    """

    key: str
    tone: str
    event: int
    low_hz: float | None
    high_hz: float | None

    @property
    def has_tones(self) -> bool:
        return self.low_hz is not None


def _tone_name(key: str) -> str:
    if key.isdigit():
        return f"tone{key}"
    return {"*": "star", "#": "pound"}.get(key, key.lower())


def _event_code(key: str) -> int:
    if key.isdigit():
        return int(key)
    return "*#ABCD".index(key) + 10


def _build() -> dict[str, Key]:
    table: dict[str, Key] = {}
    for row, keys in enumerate(_LAYOUT):
        for col, k in enumerate(keys):
            table[k] = Key(k, _tone_name(k), _event_code(k), LOW_HZ[row], HIGH_HZ[col])
    return dict(sorted(table.items(), key=lambda kv: kv[1].event))


KEYS: Final[Mapping[str, Key]] = MappingProxyType(_build())
"""The 16 keys with a tone pair, in RFC 4733 event order: ``0``-``9``, ``*``, ``#``, ``A``-``D``."""

FLASH: Final[Key] = Key("F", "flash", 16, None, None)
"""Hook flash: RFC 4733 event 16, Graph tone ``flash``. No tone pair."""

ALL_KEYS: Final[Mapping[str, Key]] = MappingProxyType({**KEYS, FLASH.key: FLASH})
"""Every key including flash (written ``F``)."""

_BY_TONE: Final = {k.tone: k for k in ALL_KEYS.values()}
_BY_EVENT: Final = {k.event: k for k in ALL_KEYS.values()}


def key_info(key: str) -> Key:
    """The entry for ``key``: ``0``-``9``, ``*``, ``#``, ``A``-``D``, ``F`` = flash (any case)."""
    entry = ALL_KEYS.get(key.upper()) if len(key) == 1 else None
    if entry is None:
        raise UnknownKeyError(
            f"unknown DTMF key {key!r}: expected one of 0-9 * # A-D, or F for flash"
        )
    return entry


def by_tone(tone: str) -> Key:
    """The entry for a Graph tone name (``tone0``..``tone9``, ``star``, ``pound``, ``a``..``d``,
    ``flash``)."""
    try:
        return _BY_TONE[tone]
    except KeyError:
        raise UnknownKeyError(f"unknown Graph tone {tone!r}") from None


def by_event(event: int) -> Key:
    """The entry for an RFC 4733 telephone-event code (0..16)."""
    try:
        return _BY_EVENT[event]
    except KeyError:
        raise UnknownKeyError(f"unknown DTMF event code {event!r}: expected 0..16") from None


def parse_keys(keys: str) -> list[Key]:
    """Parse a key string such as ``"159#*D"`` into entries; raises :class:`UnknownKeyError`."""
    if not keys:
        raise UnknownKeyError("empty key sequence")
    return [key_info(k) for k in keys]
