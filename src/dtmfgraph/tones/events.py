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
