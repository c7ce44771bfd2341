"""What the detector reports."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import repeat


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
_consume: Callable[[Iterable[object]], None] = deque[object](maxlen=0).extend
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
    as the constructor's (which sets frozen fields the slow way), in ~50 % of the time (the
    fields are set by ``map`` over the slot setters, without a Python-level loop)."""
    n = len(keys)
    if not n == len(starts) == len(ends) == len(levels) == len(channels):
        raise ValueError("build_events: lists of different lengths")
    out = list(map(_NEW, repeat(DigitEvent, n)))
    for setter, values in (
        (_SET_KEY, keys),
        (_SET_START, starts),
        (_SET_END, ends),
        (_SET_LEVEL, levels),
        (_SET_CHANNEL, channels),
    ):
        _consume(map(setter, out, values))
    return out
