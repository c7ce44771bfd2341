"""Speech or silence, 20 ms at a time: a frame-energy detector with onset and hangover (sans-I/O).

A frame is *voiced* when its RMS level is above :data:`SPEECH_DBFS` (-40 dBFS, about the level
of quiet speech on a phone line; line noise and comfort noise sit well below). Speech *starts*
after :data:`ONSET_FRAMES` voiced frames in a row (60 ms: a click or a single loud frame is not
speech); once started, it is *going on* until a run of unvoiced frames longer than the
:data:`HANGOVER_FRAMES` (200 ms: the pauses between words) — :attr:`SpeechDetector.silent_for`
tells how long the current silence has lasted, which is what a silence timeout needs.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

FRAME: Final = 160
"""Samples per frame at 8 kHz (20 ms)."""
SPEECH_DBFS: Final = -40.0
ONSET_FRAMES: Final = 3
HANGOVER_FRAMES: Final = 10
_FULL_SCALE: Final = 32768.0


def frame_levels(samples: npt.ArrayLike, frame: int = FRAME) -> npt.NDArray[np.float64]:
    """RMS level in dBFS of each whole ``frame`` of ``samples`` (int16 scale), vectorised."""
    x = np.asarray(samples, dtype=np.float64)
    n = len(x) // frame
    if n == 0:
        return np.zeros(0)
    power = np.mean(np.square(x[: n * frame].reshape(n, frame) / _FULL_SCALE), axis=1)
    return np.asarray(10.0 * np.log10(np.maximum(power, 1e-12)), dtype=np.float64)


class SpeechDetector:
    """Feed int16 samples at 8 kHz with :meth:`push`; read :attr:`started`, :attr:`speaking`,
    :attr:`silent_for` (seconds since the last voiced frame once speech has started)."""

    def __init__(self, *, rate: int = 8000, threshold_dbfs: float = SPEECH_DBFS) -> None:
        self.rate = rate
        self.threshold = threshold_dbfs
        self.frames = 0
        """Whole frames seen."""
        self.started = False
        """Speech has started (ONSET_FRAMES voiced frames in a row)."""
        self.started_at_frame: int | None = None
        self._run = 0
        self._last_voiced = -1
        self._rest = np.zeros(0, dtype=np.float64)

    def push(self, samples: npt.ArrayLike) -> None:
        x = np.concatenate([self._rest, np.asarray(samples, dtype=np.float64)])
        levels = frame_levels(x)
        self._rest = x[len(levels) * FRAME :]
        voiced = levels > self.threshold
        for i, v in enumerate(voiced.tolist()):  # one bool per 20 ms: cheap
            index = self.frames + i
            if v:
                self._run += 1
                self._last_voiced = index
                if not self.started and self._run >= ONSET_FRAMES:
                    self.started = True
                    self.started_at_frame = index - ONSET_FRAMES + 1
            else:
                self._run = 0
        self.frames += len(levels)

    @property
    def speaking(self) -> bool:
        """Speech has started and the current pause is within the hangover."""
        return self.started and self.frames - 1 - self._last_voiced < HANGOVER_FRAMES

    @property
    def silent_for(self) -> float:
        """Seconds of frames since the last voiced one (0 before speech has started)."""
        if not self.started:
            return 0.0
        return (self.frames - 1 - self._last_voiced) * FRAME / self.rate


__all__ = [
    "FRAME",
    "HANGOVER_FRAMES",
    "ONSET_FRAMES",
    "SPEECH_DBFS",
    "SpeechDetector",
    "frame_levels",
]
