"""What the detector reports."""

from __future__ import annotations

from itertools import repeat
from typing import NamedTuple


class DigitEvent(NamedTuple):
    """One detected key (an immutable named tuple).

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


_NEW = tuple.__new__


def build_events(
    keys: list[str],
    starts: list[float],
    ends: list[float],
    levels: list[float],
    channels: list[int],
) -> list[DigitEvent]:
    """``DigitEvent``s from parallel lists: the same objects as the constructor's, made by
    ``map`` over zipped fields without a Python-level call per event (~0.1 us each)."""
    n = len(keys)
    if not n == len(starts) == len(ends) == len(levels) == len(channels):
        raise ValueError("build_events: lists of different lengths")
    return list(
        map(_NEW, repeat(DigitEvent, n), zip(keys, starts, ends, levels, channels, strict=True))
    )
