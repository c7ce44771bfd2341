"""Streaming front end of the detector: cut each channel into half-blocks across calls.

:class:`BlockStream` keeps the samples that do not yet fill a half-block and the last
:data:`~dtmfgraph.tones.filterbank.CARRY` half-blocks of every channel, reuses its buffers
across calls of the same shape, and hands the blocks of each call to the filter bank.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from .filterbank import NO_RECORDS, FilterBank, Workspace

_WORKSPACES: Final = 4
"""Workspaces (one per number of new half-blocks per call) kept for reuse."""
_CACHED_ROWS: Final = 1 << 16
"""Workspaces for more half-blocks than this (a whole file at once) are not kept."""


class BlockStream:
    """Half-blocks of ``channels`` signals fed in pieces of any length."""

    def __init__(self, bank: FilterBank, channels: int) -> None:
        self.bank = bank
        self.channels = channels
        self._pending = np.zeros((channels, bank.half), dtype=np.float32)
        self._kept = 0  # samples of each channel in _pending
        self._workspaces: dict[int, Workspace] = {}
        self._last: Workspace | None = None  # holds the carried half-blocks

    def hits(self, x: npt.NDArray[np.generic]) -> tuple[npt.NDArray[np.float64], int]:
        """Analyse ``x`` (``channels x n``); return the hit records of the blocks it completes
        (block numbers counted from this call's first block) and the number of those blocks."""
        ws = self._frames(x)
        if ws is None:
            return NO_RECORDS, 0
        bank = self.bank
        bank.transform(ws)
        candidates = bank.screen(ws)
        hits = bank.refine(ws, candidates) if len(candidates) else NO_RECORDS
        ws.keep_tail()
        self._last = ws
        return hits, ws.m

    def _frames(self, x: npt.NDArray[np.generic]) -> Workspace | None:
        """A workspace holding the whole new half-blocks; the rest of ``x`` is kept."""
        half, kept, n = self.bank.half, self._kept, x.shape[1]
        m = (kept + n) // half
        if m == 0:
            self._pending[:, kept : kept + n] = x
            self._kept += n
            return None
        ws = self._workspace(m)
        used = m * half - kept
        frames = ws.fresh_frames().reshape(self.channels, m * half)
        frames[:, :kept] = self._pending[:, :kept]
        frames[:, kept:] = x[:, :used]
        self._kept = n - used
        self._pending[:, : self._kept] = x[:, used:]
        return ws

    def _workspace(self, m: int) -> Workspace:
        """The buffers for ``m`` new half-blocks per channel, with the carry in place."""
        ws = self._workspaces.get(m)
        if ws is None:
            ws = Workspace(self.bank.half, self.channels, m, like=self._last)
            if self.channels * m <= _CACHED_ROWS:
                if len(self._workspaces) >= _WORKSPACES:
                    stale = next(w for w in self._workspaces.values() if w is not self._last)
                    del self._workspaces[stale.m]
                self._workspaces[m] = ws
        if self._last is not None and ws is not self._last:
            ws.carry_from(self._last)
        return ws
