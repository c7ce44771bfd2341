"""ITU-T Q.24 DTMF detector, streaming and vectorised across channels and time.

:class:`~dtmfgraph.tones.filterbank.FilterBank` marks every 12.75 ms block (hop 6.375 ms) as a
hit of one key or a miss. Here hits become digits, with run-length logic in numpy (no loop over
samples or blocks): consecutive hits of one key form a digit; :data:`END_MISSES` misses in a row,
or a hit of another key, end it; a digit counts if it has at least :data:`MIN_HITS` hits and its
tones' mean frequency error is within :data:`DIGIT_TOLERANCE_HZ`. The digit still sounding at the
end of a :meth:`Detector.feed` is carried to the next call as a small per-channel record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from .events import DigitEvent
from .filterbank import (
    CARRY,
    KEY_FREQS,
    KEY_TABLE,
    NATIVE_RATE,
    TOLERANCE,
    BlockHits,
    HalfBlocks,
    filter_bank,
)

MIN_HITS: Final = 4
"""Hit blocks a digit needs: a tone of >= 40 ms always gives 4, one of <= 29 ms at most 3."""
END_MISSES: Final = 6
"""Missed blocks in a row that end a digit: a 10 ms dropout misses at most 4, a 40 ms pause 7."""
DIGIT_TOLERANCE_HZ: Final = 3.0
"""Each tone's mean frequency error over a digit may be at most 1.5 % plus this (ETSI: 2 Hz)."""
_START_LEAD: Final = 0.3
"""A digit starts this many half-blocks before its first hit block."""
_END_LAG: Final = 2.3
"""A digit ends this many half-blocks after the start of its last hit block."""


class DetectorError(ValueError):
    """Bad detector parameters or input."""


class DetectorTypeError(DetectorError, TypeError):
    """Input samples of a type the detector cannot read (not a real numeric array)."""


I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


@dataclass(slots=True)
class _Digits:
    """Per-digit (or per-channel open digit) aggregates; ``key`` < 0 means no digit."""

    channel: I64
    key: I64
    first: I64
    last: I64
    hits: I64
    level: F64
    dev_low: F64
    dev_high: F64

    @classmethod
    def empty(cls, channels: int) -> _Digits:
        z = np.zeros(channels, dtype=np.int64)
        f = np.zeros(channels, dtype=np.float64)
        return cls(np.arange(channels), z - 1, z.copy(), z.copy(), z.copy(), f, f.copy(), f.copy())

    def take(self, index: npt.NDArray[np.intp]) -> _Digits:
        return _Digits(*(getattr(self, name)[index] for name in self.__slots__))


class Detector:
    """Streaming Q.24 detector for ``channels`` independent signals at ``rate`` Hz.

    :meth:`feed` takes a ``channels x n`` block (any ``n``, 1-D when ``channels == 1``) of int16
    or float samples in int16 scale and returns the digits that ended, in time order (by end,
    then channel). :meth:`flush` reports the digits still sounding; the detector stays usable
    and its clock keeps running (a tone sounding across a flush is reported in two parts).
    """

    def __init__(self, channels: int = 1, rate: int = NATIVE_RATE) -> None:
        if isinstance(channels, bool) or not isinstance(channels, int | np.integer) or channels < 1:
            raise DetectorError(f"channels must be an integer >= 1, got {channels!r}")
        if isinstance(rate, bool) or not isinstance(rate, int | np.integer) or rate < NATIVE_RATE:
            raise DetectorError(f"rate must be an integer >= {NATIVE_RATE} Hz, got {rate!r}")
        self.channels = int(channels)
        self.rate = int(rate)
        self._bank = filter_bank(self.rate)
        self._pending = np.zeros((self.channels, 0), dtype=np.float32)
        self._carry = HalfBlocks.zeros(self.channels, CARRY)
        self._halves = 0  # half-blocks analysed so far; block k is half-blocks k and k + 1
        self._open = _Digits.empty(self.channels)

    def feed(self, block: npt.ArrayLike) -> list[DigitEvent]:
        """Analyse the next ``n`` samples of every channel; return the digits that ended."""
        x = self._check(block)
        frames = self._frames(x)
        if frames is None:
            return []
        half = self._bank.transform(frames, self._carry)
        self._carry = half.tail(CARRY)
        hits = self._bank.hits(half)
        first_block = self._halves - 1
        self._halves += half.energy.shape[1] - CARRY
        return self._track(hits, first_block, self._halves - 2)

    def flush(self) -> list[DigitEvent]:
        """End every digit still sounding and report it; the detector stays usable."""
        open_ = self._open.take(np.flatnonzero(self._open.key >= 0))
        self._open = _Digits.empty(self.channels)
        return self._events(open_)

    def _check(self, block: npt.ArrayLike) -> npt.NDArray[np.generic]:
        x = np.asarray(block)
        if x.dtype == np.bool_ or x.dtype.kind not in "iuf":
            raise DetectorTypeError(f"samples must be a real numeric array, got dtype {x.dtype}")
        if x.ndim == 1 and self.channels == 1:
            x = x.reshape(1, -1)
        if x.ndim != 2 or x.shape[0] != self.channels:
            raise DetectorError(
                f"expected a block shaped ({self.channels}, n), got shape {x.shape}"
            )
        return x

    def _frames(self, x: npt.NDArray[np.generic]) -> npt.NDArray[np.float32] | None:
        """Whole half-blocks (``channels * m x half``, float32); keeps the rest for later."""
        half = self._bank.half
        kept = self._pending.shape[1]
        m = (kept + x.shape[1]) // half
        used = m * half - kept
        if m == 0:
            self._pending = np.concatenate([self._pending, x.astype(np.float32)], axis=1)
            return None
        frames = np.empty((self.channels, m * half), dtype=np.float32)
        frames[:, :kept] = self._pending
        frames[:, kept:] = x[:, :used]
        self._pending = x[:, used:].astype(np.float32)
        return frames.reshape(-1, half)

    def _track(self, hits: BlockHits, first_block: int, last_block: int) -> list[DigitEvent]:
        """Merge the new hits into digits; return those that ended, keep the open ones."""
        open_ = self._open.take(np.flatnonzero(self._open.key >= 0))
        block = hits.block.astype(np.int64) + first_block
        ones = np.ones(len(block), dtype=np.int64)
        parts = _Digits(
            channel=np.concatenate([open_.channel, hits.channel]),
            key=np.concatenate([open_.key, hits.key]),
            first=np.concatenate([open_.first, block]),
            last=np.concatenate([open_.last, block]),
            hits=np.concatenate([open_.hits, ones]),
            level=np.concatenate([open_.level, hits.level]),
            dev_low=np.concatenate([open_.dev_low, hits.dev_low]),
            dev_high=np.concatenate([open_.dev_high, hits.dev_high]),
        )
        if len(parts.key) == 0:
            return []
        parts = parts.take(np.lexsort((parts.first, parts.channel)))
        digits = _merge(parts)
        last_in_channel = np.append(digits.channel[1:] != digits.channel[:-1], True)
        still_open = last_in_channel & (last_block - digits.last < END_MISSES)
        self._open = _Digits.empty(self.channels)
        carried = digits.take(np.flatnonzero(still_open))
        for name in _Digits.__slots__:
            getattr(self._open, name)[carried.channel] = getattr(carried, name)
        return self._events(digits.take(np.flatnonzero(~still_open)))

    def _events(self, digits: _Digits) -> list[DigitEvent]:
        """The digits that pass the digit-level tests, as events in time order."""
        hits = np.maximum(digits.hits, 1)
        ok = digits.hits >= MIN_HITS
        freqs = KEY_FREQS[digits.key]
        limit = TOLERANCE + DIGIT_TOLERANCE_HZ / freqs
        ok &= np.abs(digits.dev_low / hits) <= limit[:, 0]
        ok &= np.abs(digits.dev_high / hits) <= limit[:, 1]
        half = self._bank.half / self.rate
        start = np.maximum((digits.first - _START_LEAD) * half, 0.0)
        end = (digits.last + _END_LAG) * half
        level = np.round(digits.level / hits, 2)
        keep = np.flatnonzero(ok)
        events = [
            DigitEvent(KEY_TABLE[k], s, e, lv, c)
            for k, s, e, lv, c in zip(
                digits.key[keep].tolist(),
                start[keep].tolist(),
                end[keep].tolist(),
                level[keep].tolist(),
                digits.channel[keep].tolist(),
                strict=True,
            )
        ]
        events.sort(key=lambda e: (e.end, e.channel))
        return events


def _merge(parts: _Digits) -> _Digits:
    """Join time-sorted parts (per channel) of one key with fewer than END_MISSES misses between."""
    new = np.ones(len(parts.key), dtype=bool)
    new[1:] = (
        (parts.channel[1:] != parts.channel[:-1])
        | (parts.key[1:] != parts.key[:-1])
        | (parts.first[1:] - parts.last[:-1] > END_MISSES)
    )
    starts = np.flatnonzero(new)
    ends = np.append(starts[1:], len(new)) - 1
    return _Digits(
        channel=parts.channel[starts],
        key=parts.key[starts],
        first=parts.first[starts],
        last=parts.last[ends],
        hits=np.add.reduceat(parts.hits, starts),
        level=np.add.reduceat(parts.level, starts),
        dev_low=np.add.reduceat(parts.dev_low, starts),
        dev_high=np.add.reduceat(parts.dev_high, starts),
    )


def detect(samples: npt.ArrayLike, rate: int = NATIVE_RATE) -> list[DigitEvent]:
    """Detect the keys in a whole 1-D signal; events in time order."""
    x = np.asarray(samples)
    if x.ndim != 1:
        raise DetectorError(f"detect() takes a 1-D signal, got shape {x.shape}")
    det = Detector(channels=1, rate=rate)
    return det.feed(x) + det.flush()
