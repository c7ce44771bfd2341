"""A call's audio as the in-band detector was fed it, kept for the console's spectrogram.

Chunks arrive from the detector's tap (a frame at a time, on the pacer's clock) with the wall
time of their first sample; :meth:`AudioRing.samples` lays them out on one 8 kHz timeline
(silence where nothing came). The ring keeps at most ``max_seconds``: the oldest goes first.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Final

import numpy as np
import numpy.typing as npt

RATE: Final = 8000
I16 = npt.NDArray[np.int16]


class AudioRing:
    def __init__(self, max_seconds: float) -> None:
        self.max_samples = int(max_seconds * RATE)
        self._chunks: deque[tuple[float, I16]] = deque()
        self._held = 0
        self.dropped_s = 0.0
        """Seconds of audio dropped as the oldest (the ring was full)."""

    def push(self, samples: npt.NDArray[Any], at: float) -> None:
        chunk = np.asarray(samples, dtype=np.int16).copy()  # the caller reuses its block
        self._chunks.append((at, chunk))
        self._held += len(chunk)
        while self._held > self.max_samples and self._chunks:
            _, old = self._chunks.popleft()
            self._held -= len(old)
            self.dropped_s += len(old) / RATE

    @property
    def seconds(self) -> float:
        return self._held / RATE

    @property
    def start(self) -> float | None:
        """Wall time of the oldest sample held."""
        return self._chunks[0][0] if self._chunks else None

    def samples(self, since: float | None = None, until: float | None = None) -> tuple[float, I16]:
        """(wall time of the first sample, samples) between ``since`` and ``until``."""
        if not self._chunks:
            return (since or 0.0), np.zeros(0, dtype=np.int16)
        first = self._chunks[0][0]
        last_at, last = self._chunks[-1]
        end = last_at + len(last) / RATE
        t0 = first if since is None else max(first, since)
        t1 = end if until is None else min(end, until)
        n = max(0, min(round((t1 - t0) * RATE), self.max_samples))
        out = np.zeros(n, dtype=np.int16)
        for at, chunk in self._chunks:
            offset = round((at - t0) * RATE)
            lo, hi = max(offset, 0), min(offset + len(chunk), n)
            if lo < hi:
                out[lo:hi] = chunk[lo - offset : hi - offset]
        return t0, out
