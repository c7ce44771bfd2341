"""What the detector reports."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DigitEvent:
    """One detected key.

    ``start``/``end`` are seconds from the first sample fed to the channel; ``level_dbm0`` is the
    mean level of the two tones (per tone, dBm0); ``channel`` is the row of the fed block.
    """

    key: str
    start: float
    end: float
    level_dbm0: float
    channel: int = 0

    @property
    def duration(self) -> float:
        return self.end - self.start


_NEW = object.__new__
_SET_KEY, _SET_START, _SET_END, _SET_LEVEL, _SET_CHANNEL = (
    DigitEvent.__dict__[name].__set__ for name in ("key", "start", "end", "level_dbm0", "channel")
)


def build_events(
    keys: list[str],
    starts: list[float],
    ends: list[float],
    levels: list[float],
    channels: list[int],
) -> list[DigitEvent]:
    """``DigitEvent``s from parallel lists, built through the slots directly: the same objects
    as the constructor's (which sets frozen fields the slow way), in ~60 % of the time."""
    out: list[DigitEvent] = []
    append = out.append
    for key, start, end, level, channel in zip(keys, starts, ends, levels, channels, strict=True):
        event = _NEW(DigitEvent)
        _SET_KEY(event, key)
        _SET_START(event, start)
        _SET_END(event, end)
        _SET_LEVEL(event, level)
        _SET_CHANNEL(event, channel)
        append(event)
    return out
