"""ITU-T Q.24 DTMF detector, streaming and vectorised across channels and time.

:class:`~dtmfgraph.tones.filterbank.FilterBank` marks every 12.75 ms block (hop 6.375 ms) as a
hit of one key or a miss. Here hits become digits, with run-length logic in numpy (no loop over
samples or blocks): consecutive hits of one key form a digit; :data:`END_MISSES` misses in a row,
or a hit of another key, end it; a digit counts if it has at least :data:`MIN_HITS` hits and its
tones' mean frequency error is within :data:`DIGIT_TOLERANCE_HZ`. The digit still sounding at the
end of a :meth:`Detector.feed` is carried to the next call as a small per-channel record.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from .events import DigitEvent, build_events
from .filterbank import (
    KEY_FREQS,
    KEY_TABLE,
    NATIVE_RATE,
    NO_RECORDS,
    RECORD_FIELDS,
    TOLERANCE,
    filter_bank,
)
from .stream import BlockStream

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

Records = npt.NDArray[np.float64]
"""Hit or digit records, float64 ``fields x n``: one row per field of :data:`RECORD_FIELDS`."""
CHANNEL, KEY, FIRST, LAST, HITS, LEVEL, DEV_LOW, DEV_HIGH = range(len(RECORD_FIELDS))
_KEY_NAMES: Final = np.array(KEY_TABLE, dtype=object)
_DIGIT_LIMIT: Final = TOLERANCE + DIGIT_TOLERANCE_HZ / KEY_FREQS  # per key: low, high


class DetectorError(ValueError):
    """Bad detector parameters or input."""


class DetectorTypeError(DetectorError, TypeError):
    """Input samples of a type the detector cannot read (not a real numeric array)."""


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
        self._stream = BlockStream(filter_bank(self.rate), self.channels)
        self._half_seconds = self._stream.bank.half / self.rate
        self._halves = 0  # half-blocks analysed so far; block k is half-blocks k and k + 1
        self._state: Records = np.zeros((len(RECORD_FIELDS), self.channels))
        """The digit sounding in each channel (column ``c``; key -1: none)."""
        self._state[CHANNEL] = np.arange(self.channels)
        self._state[KEY] = -1.0

    def feed(self, block: npt.ArrayLike) -> list[DigitEvent]:
        """Analyse the next ``n`` samples of every channel; return the digits that ended."""
        hits, blocks = self._stream.hits(self._check(block))
        if blocks == 0:
            return []
        first_block = self._halves - 1
        self._halves += blocks
        hits[FIRST:HITS] += first_block  # block numbers from the first sample
        return self._events(self._track(hits, self._halves - 2))

    def flush(self) -> list[DigitEvent]:
        """End every digit still sounding and report it; the detector stays usable."""
        state = self._state
        sounding = (state[KEY] >= 0).nonzero()[0]
        digits = state.take(sounding, axis=1)
        state[KEY, sounding] = -1.0
        return self._events(digits)

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

    def _track(self, hits: Records, last_block: int) -> Records:
        """Merge the new hits (sorted by channel, then block) into the sounding digits; return
        the digits that ended (in no particular order).

        Per channel, a hit continues the digit of the hit before it (or the channel's sounding
        digit, for its first hit in this call) if it has the same key and at most
        :data:`END_MISSES` blocks lie between; otherwise it starts a new digit and the one
        before ends. A channel's last digit ends once :data:`END_MISSES` blocks have passed
        without a hit.
        """
        state = self._state
        ended: list[Records] = []
        if hits.shape[1]:
            channel = hits[CHANNEL].astype(np.intp)
            key = hits[KEY]
            head = np.empty(len(channel), dtype=bool)  # a channel's first hit in this call
            head[0] = True
            np.not_equal(channel[1:], channel[:-1], out=head[1:])
            heads = head.nonzero()[0]
            head_channel = channel.take(heads)
            before = np.empty((2, len(channel)))  # key and last block of the hit before
            before[:, 1:] = hits[KEY : LAST + 1 : LAST - KEY, :-1]
            before[:, heads] = state[KEY : LAST + 1 : LAST - KEY].take(head_channel, axis=1)
            new = key != before[0]
            new |= hits[FIRST] - before[1] > END_MISSES
            replaced = head_channel.compress(new.take(heads) & (before[0].take(heads) >= 0))
            if len(replaced):
                ended.append(state.take(replaced, axis=1))
            starts = (new | head).nonzero()[0]
            digits = hits.take(starts, axis=1)
            if len(starts) < len(channel):
                digits[HITS:] = np.add.reduceat(hits[HITS:], starts, axis=1)
                digits[LAST, :-1] = hits[LAST].take(starts[1:] - 1)
                digits[LAST, -1] = hits[LAST, -1]
            going_on = (head & ~new).take(starts).nonzero()[0]  # continue a sounding digit
            if len(going_on):
                on = channel.take(starts.take(going_on))
                digits[FIRST, going_on] = state[FIRST].take(on)
                digits[HITS:, going_on] += state[HITS:].take(on, axis=1)
            last = np.empty(len(starts), dtype=bool)  # a channel's last digit
            last[-1] = True
            np.take(head, starts[1:], out=last[:-1])
            if not last.all():
                ended.append(digits.compress(~last, axis=1))
            state[:, digits[CHANNEL, last].astype(np.intp)] = digits.compress(last, axis=1)
        timed_out = state[LAST] <= last_block - END_MISSES
        timed_out &= state[KEY] >= 0
        if timed_out.any():
            out = timed_out.nonzero()[0]
            ended.append(state.take(out, axis=1))
            state[KEY, out] = -1.0
        if len(ended) == 1:
            return ended[0]
        return np.concatenate(ended, axis=1) if ended else NO_RECORDS

    def _events(self, digits: Records) -> list[DigitEvent]:
        """The digits that pass the digit-level tests, as events in time order."""
        if digits.shape[1] == 0:
            return []
        key = digits[KEY].astype(np.intp)
        hits = digits[HITS]
        limit = _DIGIT_LIMIT[key]
        ok = hits >= MIN_HITS
        ok &= np.abs(digits[DEV_LOW] / hits) <= limit[:, 0]
        ok &= np.abs(digits[DEV_HIGH] / hits) <= limit[:, 1]
        keep = ok.nonzero()[0]
        digits, key, hits = digits.take(keep, axis=1), key[keep], hits[keep]
        start = np.maximum((digits[FIRST] - _START_LEAD) * self._half_seconds, 0.0)
        end = (digits[LAST] + _END_LAG) * self._half_seconds
        order = np.lexsort((digits[CHANNEL], end))
        return build_events(
            _KEY_NAMES[key[order]].tolist(),
            start[order].tolist(),
            end[order].tolist(),
            np.round(digits[LEVEL, order] / hits[order], 2).tolist(),
            digits[CHANNEL, order].astype(np.intp).tolist(),
        )


def detect(samples: npt.ArrayLike, rate: int = NATIVE_RATE) -> list[DigitEvent]:
    """Detect the keys in a whole 1-D signal; events in time order."""
    x = np.asarray(samples)
    if x.ndim != 1:
        raise DetectorError(f"detect() takes a 1-D signal, got shape {x.shape}")
    det = Detector(channels=1, rate=rate)
    return det.feed(x) + det.flush()
