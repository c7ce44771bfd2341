"""Block analysis for the DTMF detector: which key, if any, sounds in each analysis block.

The signal of every channel is cut into *half-blocks* of ``L`` samples (51 at 8 kHz, 6.375 ms).
One matrix product gives, for every half-block, its DFT at the eight Q.23 frequencies and its
DFT under the cosine term of a Hann window. An analysis *block* is two consecutive half-blocks
(102 samples, 12.75 ms) with a hop of one half-block, so each half-block is transformed once and
the block's DFT is the sum of its halves' (the second one phase-rotated). From the two halves we
also get:

* the phase advance of each tone between the Hann-windowed previous block and this one, i.e. its
  true frequency (unambiguous within ``rate / 2L`` = ±78 Hz), which enforces the Q.24 frequency
  tolerance that a 102-sample filter bank alone cannot (a block's Hann spectrum is a sum of its
  halves' DFTs and cosine DFTs, as the window's cosine changes sign between the halves);
* the tone's power in each half: a block is a hit only if the tone fills it, so a hit does not
  depend on the level and durations can be judged by counting hits.

Everything is vectorised over channels and blocks: :meth:`FilterBank.screen` runs cheap energy
tests on every block, :meth:`FilterBank.refine` the fine ones on the survivors only. Per-block
arrays are laid out ``quantity x n`` so that every numpy operation runs one long inner loop;
buffers live in a :class:`Workspace` reused across calls of the same shape.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Final

import numpy as np
import numpy.typing as npt

from .keypad import HIGH_HZ, KEYS, LOW_HZ
from .synth import DBM0_PEAK

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
C64 = npt.NDArray[np.complex64]
Index = npt.NDArray[np.intp]

NATIVE_RATE: Final = 8000
CARRY: Final = 2
"""Half-blocks each call keeps for the next: block ``k`` needs half-blocks ``k - 1``..``k + 1``."""
HALF_BLOCK_8K: Final = 51
"""Half-block length at 8 kHz; other rates scale it so that a block always lasts 12.75 ms."""

FREQS: Final[tuple[float, ...]] = LOW_HZ + HIGH_HZ

MIN_LEVEL_DBM0: Final = -45.0
"""Weakest tone (per tone) that can make a hit. Q.24: accept -36, reject -55 dBm0."""
NORMAL_TWIST_DB: Final = 9.0
"""Low tone louder than the high one by more than this: no hit (Q.24: accept 8, reject 10)."""
REVERSE_TWIST_DB: Final = 7.0
"""High tone louder than the low one by more than this: no hit (Q.24: accept 4, reject 10)."""
DOMINANCE_DB: Final = 6.0
"""Each tone must beat the other frequencies of its group by this much."""
ENERGY_SHARE: Final = 0.75
"""The two tones must hold this share of the block's energy (rejects noise, speech, music)."""
BALANCE_DB: Final = 2.0
"""Each tone's power in the two half-blocks may differ by at most this: the tone fills the block."""
TOLERANCE: Final = 0.015
"""Q.24 frequency tolerance a detector must accept (it must reject 3.5 %)."""
BLOCK_TOLERANCE_HZ: Final = 5.0
"""A hit block's tones may be off by at most TOLERANCE plus this (the estimate is good to ~1 Hz)."""
MAX_DEVIATION: Final = 0.025
"""Deviations are clipped to this before they correct the tone separation."""

_PREFILTER_SHARE: Final = 0.5
"""Energy share for the cheap first pass, before the frequency-error correction of the powers."""

KEY_FREQS: Final[F64] = np.array([[lo, hi] for lo in LOW_HZ for hi in HIGH_HZ])
"""Low and high frequency of each entry of :data:`KEY_TABLE`."""
KEY_TABLE: Final[tuple[str, ...]] = tuple(
    next(k.key for k in KEYS.values() if k.low_hz == lo and k.high_hz == hi)
    for lo in LOW_HZ
    for hi in HIGH_HZ
)
"""Key of the pair (low index ``i``, high index ``j``) at ``4 * i + j``."""

RECORD_FIELDS: Final = ("channel", "key", "first", "last", "hits", "level", "dev_low", "dev_high")
"""Columns of a hit or digit record (float64 rows): channel, key (index into :data:`KEY_TABLE`),
first and last hit block, number of hits, and the sums over the hits of the mean per-tone level
(dBm0) and of the two tones' relative frequency errors."""

_SINGLE_THREAD_MNK: Final = 262_144
"""OpenBLAS runs a product of at most this many multiply-adds on one thread. Larger ones it
splits over threads that spin-wait: a large slowdown (measured 5-10x) when the cores are busy,
and little gain when idle for products this thin."""


def _blas_is_single_threaded() -> bool:
    """Whether BLAS was told (before numpy loaded it) to use one thread, or has one core."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        if os.environ.get(var, "").strip() == "1":
            return True
    return len(os.sched_getaffinity(0)) == 1 if hasattr(os, "sched_getaffinity") else False


_UNCHUNKED: Final = _blas_is_single_threaded()


def _product(frames: F32, matrix: F32, out: F32 | None = None) -> F32:
    """``frames @ matrix`` (into ``out``), in row chunks small enough for OpenBLAS to stay on
    one thread (one call when BLAS is single-threaded anyway)."""
    rows = frames.shape[0]
    if out is None:
        out = np.empty((rows, matrix.shape[1]), dtype=np.float32)
    step = max(1, _SINGLE_THREAD_MNK // (matrix.shape[0] * matrix.shape[1]))
    if _UNCHUNKED or rows <= step:
        return np.matmul(frames, matrix, out=out)
    for i in range(0, rows, step):
        np.matmul(frames[i : i + step], matrix, out=out[i : i + step])
    return out


def _real_columns(basis: npt.NDArray[np.complex128]) -> F32:
    """Complex basis ``n x k`` as ``n x 2k`` float32, (re, im) interleaved."""
    return np.ascontiguousarray(basis.view(np.float64).astype(np.float32))


def half_block(rate: int) -> int:
    """Half-block length in samples at ``rate`` (51 at 8 kHz)."""
    return max(1, round(HALF_BLOCK_8K * rate / NATIVE_RATE))


class Workspace:
    """Buffers for one analysis call: ``channels`` channels (``C``), ``m`` new half-blocks each.

        ``frames`` (set by the caller for each call) holds the new half-blocks (``C m x half``);
        ``carried_frames`` and ``carried_m`` say where the :data:`CARRY` half-blocks kept from the
        previous call are: kept half-block ``h`` of channel ``c`` is row ``c carried_m + carried_m -
        CARRY + h`` of ``carried_frames`` (the previous call's frames, not copied). ``spectra``
        holds, per half-block, its DFT at the 8 frequencies as 8 complex64 values stored as (re, im)
        float32 pairs; it has ``CARRY * C + C m`` rows: first the kept half-blocks (row ``2 c + h``
        for channel ``c``), then the new ones (row ``2 C + c m + i``), so that the new part is one
        contiguous matrix for BLAS. ``power`` (``5 x C m``: the DFT's ``|X|^2`` summed over the low
        and over the high group, the sum of squares, and the largest ``|X|^2`` of the low and of the
        high group) covers the new half-blocks, ``carried_power`` (``5 x C``) the last kept one (the
    only kept half-block a block of this call starts with).
        Block ``j`` of channel ``c`` (flat index ``k = c m + j``) is made of the channel's
        half-blocks ``j + 1`` and ``j + 2`` counting the kept ones; column ``k`` of ``rows`` is (row
        of half-block ``j``, of ``j + 1``, of ``j + 2``, ``c``, ``j``).

        A workspace made ``like`` another shares its stores (the kept rows, ``carried_power`` and
        the per-half-block scratch) when they have room, so that alternating between workspaces
        (160-sample feeds bring 3 or 4 half-blocks) copies nothing; stores get room for one more
        half-block per channel than the workspace that makes them.
    """

    _store_rows: int
    """Rows of the stores behind ``spectra`` and the other per-half-block arrays."""

    def __init__(self, half: int, channels: int, m: int, like: Workspace | None = None) -> None:
        self.channels, self.m = channels, m
        top = CARRY * channels
        self.top = top
        rows = top + channels * m
        if like is None or like._store_rows < rows:  # room for one more half-block per channel
            like = None
            self._store_rows = rows + channels
            self._spectra_store = np.empty((self._store_rows, 16), dtype=np.float32)
            self._spectra_store[:top] = 0.0  # the kept half-blocks start silent
            self._cos_store = np.empty((self._store_rows, 16), dtype=np.float32)
            self._needed_store = np.empty(self._store_rows, dtype=bool)
            self._position_store = np.empty(self._store_rows, dtype=np.intp)
            self.carried_power = np.zeros((_POWERS, channels), dtype=np.float32)
        else:  # share the kept rows (and scratch) with ``like``: switching needs no copy
            self._store_rows = like._store_rows
            self._spectra_store, self._cos_store = like._spectra_store, like._cos_store
            self._needed_store, self._position_store = like._needed_store, like._position_store
            self.carried_power = like.carried_power
        self.spectra = self._spectra_store[:rows]
        self.cos_spectra = self._cos_store[:rows]
        self.needed = self._needed_store[:rows]
        self.position = self._position_store[:rows]
        self.frames = np.empty((channels * m, half), dtype=np.float32)
        self._frame_buffers = [self.frames]  # a second one is made when first needed
        self.carried_frames = np.zeros((top, half), dtype=np.float32)
        self.carried_m = CARRY
        self.power = np.empty((_POWERS, channels * m), dtype=np.float32)
        self.squares = np.empty((channels * m, 16), dtype=np.float32)
        self.bins_t = np.empty((8, channels * m), dtype=np.float32)
        self.block_power = np.empty((_POWERS, channels * m), dtype=np.float32)
        self.scratch = np.empty((2, channels * m), dtype=np.float32)
        self.candidate = np.empty((2, channels * m), dtype=bool)
        self.cos_all = False  # cos_spectra computed for all the new half-blocks in this call
        self.dense = False  # the last call needed most half-blocks: compute all cosine DFTs
        self.carried_cos = False  # cos_spectra valid for the kept half-blocks
        self.rows: Index = np.empty((5, channels * m), dtype=np.intp)
        channel = np.arange(channels)
        self.rows[3].reshape(channels, m)[:] = channel[:, None]
        self.rows[4].reshape(channels, m)[:] = np.arange(m)
        for h in range(3):  # the new rows; a channel's first blocks start in the kept ones
            row = self.rows[h]
            np.add(np.arange(channels * m), top - 2 + h, out=row)
            for j in range(min(2 - h, m)):
                np.add(CARRY * channel, j + h, out=row[j::m])

    def fresh_frames(self) -> F32:
        """Point ``frames`` at a buffer that does not hold the kept half-blocks; return it."""
        a = self._frame_buffers[0]
        if a is not self.carried_frames:
            self.frames = a
        else:
            if len(self._frame_buffers) == 1:
                self._frame_buffers.append(np.empty_like(a))
            self.frames = self._frame_buffers[1]
        return self.frames

    def keep_tail(self) -> None:
        """Move each channel's last :data:`CARRY` half-blocks to the kept rows."""
        c, m, top = self.channels, self.m, self.top
        power = self.power.reshape(_POWERS, c, m)
        kept = self.spectra[:top].reshape(c, CARRY, 16)
        if m >= CARRY:
            kept[:] = self.spectra[top:].reshape(c, m, 16)[:, -CARRY:]
            np.copyto(self.carried_power, power[..., -1])
            self.carried_frames, self.carried_m = self.frames, m
            self.carried_cos, self.cos_all = self.cos_all, False
            if self.carried_cos:
                cos = self.cos_spectra
                cos[:top].reshape(c, CARRY, 16)[:] = cos[top:].reshape(c, m, 16)[:, -CARRY:]
            return
        self.carried_cos = self.cos_all = False
        kept[:, 0] = kept[:, 1]  # m == 1: shift by one half-block
        kept[:, 1] = self.spectra[top:]
        np.copyto(self.carried_power, power[..., 0])
        frames = np.empty((c, CARRY, self.frames.shape[1]), dtype=np.float32)
        frames[:, 0] = self.carried_raw(np.arange(1, top, CARRY))
        frames[:, 1] = self.frames
        self.carried_frames, self.carried_m = frames.reshape(top, -1), CARRY

    def carried_raw(self, rows: Index) -> F32:
        """The samples of kept half-blocks (rows ``2 c + h`` of ``spectra``)."""
        c, h = np.divmod(rows, CARRY)
        c *= self.carried_m
        c += h
        c += self.carried_m - CARRY
        return self.carried_frames.take(c, axis=0)

    def carry_from(self, other: Workspace) -> None:
        """Take over the kept half-blocks of ``other`` (same channels)."""
        self.carried_frames, self.carried_m = other.carried_frames, other.carried_m
        self.carried_cos = other.carried_cos
        if self._spectra_store is other._spectra_store:
            return
        self.spectra[: self.top] = other.spectra[: other.top]
        self.carried_power[:] = other.carried_power
        if self.carried_cos:
            self.cos_spectra[: self.top] = other.cos_spectra[: other.top]


class FilterBank:
    """DFT of half-blocks at the eight DTMF frequencies, and the per-block hit tests."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.half = half_block(rate)
        self.block = 2 * self.half
        freqs = np.asarray(FREQS)
        n = np.arange(self.half)
        local = np.exp(-2j * np.pi * np.outer(n, freqs) / rate)
        # A 102-sample Hann window is 1/2 - cos(2 pi (n + 1/2) / 102) / 2; the cosine changes
        # sign between the block's halves. With C the half-block DFT under that cosine, a
        # block's Hann spectrum is (R1 - C1 + rotation (R2 + C2)) / 2 from its halves'.
        cosine = np.cos(2.0 * np.pi * (n + 0.5) / self.block)
        # Interleaved (re, im) columns: a product viewed as complex64 is the DFTs.
        self.matrix: F32 = _real_columns(local)
        self.cosine_matrix: F32 = _real_columns(cosine[:, None] * local)
        rotation = np.exp(-2j * np.pi * freqs * self.half / rate)
        self.rotation: C64 = rotation.astype(np.complex64)
        # Complex multiplication by the rotation, as a real matrix on (re, im) columns.
        self.rotation_matrix = np.zeros((16, 16), dtype=np.float32)
        for b, r in enumerate(rotation):
            self.rotation_matrix[2 * b : 2 * b + 2, 2 * b : 2 * b + 2] = [
                [r.real, r.imag],
                [-r.imag, r.real],
            ]
        self.freqs32 = freqs.astype(np.float32)
        hz_per_radian = rate / (2.0 * np.pi * self.half)
        self.deviation_per_radian = (hz_per_radian / freqs).astype(np.float32)
        block_limit = TOLERANCE + BLOCK_TOLERANCE_HZ / freqs
        self.angle_limit = (block_limit / self.deviation_per_radian).astype(np.float32)
        full_scale = (DBM0_PEAK * self.block / 2.0) ** 2  # |X|^2 of a 0 dBm0 tone at its bin
        # Cheap tests on the sum over a block's two halves of their squared group DFTs, which
        # is at least half the block's |X|^2 (block DFT power -> tone energy is 2 / N).
        self.min_power_half = np.float32(full_scale * 10.0 ** (MIN_LEVEL_DBM0 / 10.0) / 2.0)
        self.prefilter = np.float32(_PREFILTER_SHARE * self.block / 4.0)
        self.zero_dbm0 = DBM0_PEAK**2 / 2.0  # mean power of a 0 dBm0 sine
        self.min_tone = np.float32(self.zero_dbm0 * 10.0 ** (MIN_LEVEL_DBM0 / 10.0))
        # A tone of mean power p has energy p N in a block: the share test is
        # (p_low + p_high) >= ENERGY_SHARE / N * energy.
        self.share_per_energy = np.float32(ENERGY_SHARE / self.block)
        self.dominance = np.float32(10.0 ** (DOMINANCE_DB / 10.0))
        self.balance = np.float32(10.0 ** (BALANCE_DB / 10.0))
        self.normal_twist = np.float32(10.0 ** (NORMAL_TWIST_DB / 10.0))
        self.reverse_twist = np.float32(10.0 ** (-REVERSE_TWIST_DB / 10.0))
        self.kernel_coef, self.kernel_phase = _kernel_table(rate, self.half)
        # Screen on the groups' largest bins. A hit needs |a_low|^2 + |a_high|^2 summed over the
        # halves >= ENERGY_SHARE * energy / N (the power test, ``a`` the unmixed amplitudes,
        # ``a = M^-1 x`` with ``x`` the half-block DFT at the two tones' bins and ``M`` the
        # kernel matrix at the block's frequency errors). Since |x|^2 = |M a|^2 >= s^2 |a|^2
        # for ``s`` the smallest singular value of ``M``, and each of |x_low|^2, |x_high|^2 is at
        # most its group's largest bin power in that half, a hit needs the sum over the halves
        # of the two groups' largest bin powers >= s_min^2 ENERGY_SHARE energy / N, ``s_min``
        # over all keys and the frequency errors a hit allows (in_band). A 0.9 margin covers the
        # grid and float32 rounding.
        self.max_share = np.float32(
            0.9 * ENERGY_SHARE * _min_singular_value(self.kernel_coef, rate) ** 2 / self.block
        )

    def transform(self, ws: Workspace) -> None:
        """DFTs, group powers and energy of the new half-blocks in ``ws.frames``."""
        spectra = _product(ws.frames, self.matrix, ws.spectra[ws.top :])
        squares = np.square(spectra, out=ws.squares).T  # (re^2, im^2) x C m
        np.add(squares[0::2], squares[1::2], out=ws.bins_t)  # |X|^2, bin x C m
        bins = ws.bins_t.reshape(2, 4, -1)  # group x bin x C m
        power = ws.power
        np.add.reduce(bins, axis=1, out=power[:2])
        np.maximum.reduce(bins, axis=1, out=power[3:])
        np.einsum("ij,ij->i", ws.frames, ws.frames, out=power[2])

    def screen(self, ws: Workspace) -> Index:
        """Cheap necessary conditions on every block; flat indices ``c m + j`` of the survivors.

        From per-half-block sums: ``|X + Y|^2 <= 2 (|X|^2 + |Y|^2)`` for the block's DFT ``X + Y``
        from its halves, so both groups must pass the level floor and hold a share of the energy;
        and the groups' largest bins must hold ``max_share`` of it (see ``__init__``).
        """
        low, high, energy = _block_sums(ws.power, ws.carried_power, ws.m, ws.block_power)[:3]
        level, share = ws.scratch
        passes, also = ws.candidate
        np.minimum(low, high, out=level)
        np.greater(level, self.min_power_half, out=passes)
        np.add(low, high, out=level)
        np.multiply(energy, self.prefilter, out=share)
        np.greater(level, share, out=also)
        passes &= also
        largest = ws.block_power[3:]
        np.add(largest[0], largest[1], out=level)
        np.multiply(energy, self.max_share, out=share)
        np.greater_equal(level, share, out=also)
        passes &= also
        return passes.nonzero()[0]

    def refine(self, ws: Workspace, candidates: Index) -> F64:
        """The fine tests on the ``candidates`` blocks; the hits as records (``fields x n``,
        see :data:`RECORD_FIELDS`; ``first`` = ``last`` = the block within this call).

        Arrays here are ``... x n`` (one column per candidate) so that every numpy operation
        runs one long inner loop.
        """
        rows = ws.rows.take(candidates, axis=1)  # 5 x n
        tones, ok = self._winners(ws, rows)
        keep = ok.nonzero()[0]
        if len(keep) < 0.75 * len(ok):  # drop the losers when that saves work
            rows, tones = rows.take(keep, axis=1), tones.take(keep, axis=1)
            candidates, ok = candidates[keep], ok[keep]
        rect, angle = self._phase_advance(ws, rows, tones, self._cosine(ws, rows))
        in_band = np.abs(angle) <= self.angle_limit[tones]
        ok &= in_band[0] & in_band[1]
        deviation = angle * self.deviation_per_radian[tones]
        key = tones[0] * 4 + tones[1] - 4
        power, det2 = self._unmix(rect[1:], key, tones, deviation)  # tone x half x n, * det2
        passed, total = self._power_tests(power, det2, ws.block_power[2, candidates])
        keep = (ok & passed).nonzero()[0]
        det4 = np.square(det2[keep], dtype=np.float64)
        out = np.empty((len(RECORD_FIELDS), len(keep)))
        where = rows[3:].take(keep, axis=1)  # channel, block
        out[0] = where[0]
        out[1] = key.take(keep)
        out[2] = out[3] = where[1]
        out[4] = 1.0
        level = total.take(keep, axis=1)
        np.multiply(level[0], level[1], out=out[5], dtype=np.float64)
        out[5] /= det4 * self.zero_dbm0**2
        np.log10(out[5], out=out[5])
        out[5] *= 5.0
        out[6:8] = deviation.take(keep, axis=1)
        return out

    def _winners(self, ws: Workspace, rows: Index) -> tuple[Index, npt.NDArray[np.bool_]]:
        """Strongest bin of each group in the block's DFT (``2 x n``, 0..7) and whether each
        beats the other bins of its group by :data:`DOMINANCE_DB`."""
        block = _product(ws.spectra.take(rows[2], axis=0), self.rotation_matrix)
        block += ws.spectra.take(rows[1], axis=0)
        parts = np.square(block, out=block)
        parts = np.ascontiguousarray(parts.T)  # (re^2, im^2) x n
        power = np.add(parts[0::2], parts[1::2]).reshape(2, 4, -1)  # re^2 + im^2
        top = np.maximum.reduce(power, axis=1)  # group x bin x n
        power *= self.dominance
        near = (power >= top[:, None]).view(np.int8)  # the winner, and bins within 6 dB
        ok = np.add.reduce(near, axis=1, dtype=np.int8) == 1
        # The only near bin where ok (1 n1 + 2 n2 + 3 n3), and a valid bin anyway.
        number = near[:, 2] + near[:, 3]
        number += number
        number += near[:, 1]
        number += near[:, 3]
        np.minimum(number, 3, out=number)
        tones = number.astype(np.intp)
        tones += _GROUP_FIRST_BIN
        return tones, ok[0] & ok[1]

    def _cosine(self, ws: Workspace, rows: Index) -> tuple[C64, Index | None]:
        """The cosine DFTs of the half-blocks the candidates need (``rows[:3]``), as 8 complex64
        per half-block, and each row's place in that array (``None``: the row itself). Computed
        only for the needed ones when they are few; else for all the new half-blocks (no
        gathering) and the needed kept ones, also in the next call while it has many candidates
        (:data:`_DENSE_BLOCKS`)."""
        needed = ws.needed
        if ws.dense:  # the last call needed most half-blocks: compute all, skip the bookkeeping
            cos = ws.cos_spectra
            _product(ws.frames, self.cosine_matrix, cos[ws.top :])
            ws.cos_all = True
            if not ws.carried_cos:
                needed[: ws.top] = False
                needed[rows[:2]] = True  # a block's third half is never a kept one
                kept_rows = needed[: ws.top].nonzero()[0]
                if len(kept_rows):
                    cos[kept_rows] = _product(ws.carried_raw(kept_rows), self.cosine_matrix)
            ws.dense = len(rows[0]) > _DENSE_BLOCKS * ws.m * ws.channels
            return cos.view(np.complex64), None
        needed[:] = False
        needed[rows[:3]] = True
        which = needed.nonzero()[0]
        kept = int(np.searchsorted(which, ws.top))
        if len(which) > _GATHER_SHARE * len(needed):
            cos = ws.cos_spectra
            _product(ws.frames, self.cosine_matrix, cos[ws.top :])
            ws.cos_all = ws.dense = True
            if kept and not ws.carried_cos:
                cos[which[:kept]] = _product(ws.carried_raw(which[:kept]), self.cosine_matrix)
            return cos.view(np.complex64), None
        frames = np.empty((len(which), self.half), dtype=np.float32)
        frames[:kept] = ws.carried_raw(which[:kept])
        ws.frames.take(which[kept:] - ws.top, axis=0, out=frames[kept:])
        ws.position[which] = np.arange(len(which))
        return _product(frames, self.cosine_matrix).view(np.complex64), ws.position

    def _phase_advance(
        self, ws: Workspace, rows: Index, tones: Index, cosine: tuple[C64, Index | None]
    ) -> tuple[C64, F32]:
        """The DFTs of the candidates' three half-blocks at their tones (``3 x tone x n``), and
        each tone's phase advance (radians, ``2 x n``) from the Hann-windowed block before this
        one to this one, beyond the nominal frequency's."""
        # Complex index, half-block x tone x n (grouped so that every operation broadcasts
        # over whole rows of n).
        half_rows = rows[:3, None]
        index = half_rows * 8 + tones
        rect = ws.spectra.view(np.complex64).take(index)
        cos_spectra, position = cosine
        if position is not None:  # cosine DFTs of the needed half-blocks only
            index = position.take(half_rows) * 8 + tones
        cos = cos_spectra.take(index)
        rotation = self.rotation[tones]
        # Hann spectra (times 2) of the block before (halves 0, 1) and this one (1, 2).
        hann = (rect[1:] + cos[1:]) * rotation
        hann += rect[:2]
        hann -= cos[:2]
        cross = hann[1] * hann[0].conj()
        cross *= rotation
        return rect, np.arctan2(cross.imag, cross.real)

    def _unmix(self, rect: C64, key: Index, tones: Index, deviation: F32) -> tuple[F32, F32]:
        """Separate the two tones in each half-block; from ``rect`` (``half x tone x n``)
        return their ``|a|^2`` times ``det^2`` (``tone x half x n``), and ``det^2``.

        A 51-sample window leaks each tone into the other's bin by up to -14 dB. With the
        tones' true frequencies known (from ``deviation``), the bins are a 2 x 2 linear mix
        ``x = M a`` of the tones' complex amplitudes ``a`` (a tone ``A cos`` has ``|a| = A / 2``).
        ``M`` is ``[[D00, D01 P], [D10 conj(P), D11]]``: real Dirichlet kernels ``D`` (quadratics
        in the frequency offset, fitted at construction) and one unit phase ``P`` per key, so
        ``det M`` is real and ``a = adj(M) x / det``; the tests only compare powers, so the
        division by ``det^2`` is left to them.
        """
        hz = np.minimum(deviation, MAX_DEVIATION)
        np.maximum(hz, -MAX_DEVIATION, out=hz)
        hz *= self.freqs32[tones]
        coef = self.kernel_coef.take(key, axis=0).T.reshape(3, 4, -1)  # 3 x 4 x n (view)
        d = hz[_KERNEL_TONE]  # the tone of each kernel m00, m01, m10, m11
        kernel = d * coef[2]
        kernel += coef[1]
        kernel *= d
        kernel += coef[0]
        d00, d01, d10, d11 = kernel
        low = rect[:, 0]
        high = rect[:, 1] * self.kernel_phase[key]
        amp = np.empty((2, 2, len(key)), dtype=np.complex64)  # tone x half x n, times det
        np.multiply(low, d11, out=amp[0])
        amp[0] -= high * d01
        np.multiply(high, d00, out=amp[1])
        amp[1] -= low * d10
        parts = np.square(amp.view(np.float32))
        det = d00 * d11
        det -= d01 * d10
        return parts[..., 0::2] + parts[..., 1::2], np.square(det, out=det)

    def _power_tests(self, power: F32, det2: F32, energy: F32) -> tuple[npt.NDArray[np.bool_], F32]:
        """Balance, level, energy share and twist on ``power`` (``|a|^2 det^2``, tone x half
        x n), for blocks of ``energy``; also each tone's mean power times ``det2``."""
        first, second = power[:, 0], power[:, 1]
        balanced = np.maximum(first, second) <= self.balance * np.minimum(first, second)
        ok = balanced[0] & balanced[1]
        total = first + second  # per tone: 2 |a|^2 det^2 = mean power times det^2
        low, high = total
        ok &= np.minimum(low, high) > self.min_tone * det2
        energy = energy * det2
        energy *= self.share_per_energy
        ok &= low + high >= energy
        ok &= low <= self.normal_twist * high
        ok &= low >= self.reverse_twist * high
        return ok, total


_GROUP_FIRST_BIN: Final[Index] = np.array([[0], [4]], dtype=np.intp)
_GATHER_SHARE: Final = 0.4
"""Above this share of half-blocks needed, the cosine DFTs are computed for all the new ones."""
_DENSE_BLOCKS: Final = 0.25
"""After a call that computed them all, the next one does too (without finding the needed
half-blocks first) while more than this share of its blocks are candidates (each needs three
half-blocks, so this is about the share of needed half-blocks above which the all path wins)."""
NO_RECORDS: Final[F64] = np.empty((len(RECORD_FIELDS), 0))
"""No hit or digit records (``fields x 0``)."""
_POWERS: Final = 5
"""Rows of ``Workspace.power``: low and high group power, energy, largest low and high bin."""
_KERNEL_TONE: Final[Index] = np.array([0, 1, 0, 1], dtype=np.intp)


def _block_sums(new: F32, kept: F32, m: int, out: F32) -> F32:
    """Per block (``... x C m``), the sum over its two half-blocks of ``new`` (``... x C m``),
    the first block of each channel taking its first half from ``kept`` (``... x C``)."""
    np.add(new[..., :-1], new[..., 1:], out=out[..., 1:])
    np.add(kept, new[..., ::m], out=out[..., ::m])
    return out


def _min_singular_value(coef: F32, rate: int) -> float:
    """Smallest singular value of the kernel matrix ``[[D00, D01], [D10, D11]]`` (the mix up to
    unit phases, which do not change singular values) over all keys and the frequency errors a
    hit block allows (each tone within TOLERANCE + BLOCK_TOLERANCE_HZ, clipped as in unmixing)."""
    table = coef.astype(np.float64).reshape(16, 3, 4)
    grid = np.linspace(-1.0, 1.0, 81)
    worst = np.inf
    for key in range(16):
        pair = KEY_FREQS[key]
        limit = np.minimum(TOLERANCE + BLOCK_TOLERANCE_HZ / pair, MAX_DEVIATION) * pair
        d_low, d_high = np.meshgrid(grid * limit[0], grid * limit[1], indexing="ij")
        d = (d_low, d_high, d_low, d_high)  # the tone of m00, m01, m10, m11
        m = [
            table[key, 0, i] + (table[key, 1, i] + table[key, 2, i] * d[i]) * d[i] for i in range(4)
        ]
        squares = m[0] ** 2 + m[1] ** 2 + m[2] ** 2 + m[3] ** 2
        det = m[0] * m[3] - m[1] * m[2]
        small = (squares - np.sqrt(np.maximum(squares**2 - 4.0 * det**2, 0.0))) / 2.0
        worst = min(worst, float(np.sqrt(np.maximum(small, 0.0)).min()))
    return worst


@cache
def filter_bank(rate: int) -> FilterBank:
    """The (immutable, shared) filter bank for ``rate``."""
    return FilterBank(rate)


def _kernel_table(rate: int, half: int) -> tuple[F32, C64]:
    """Leakage kernels of the 2 x 2 tone mix in a half-block DFT, per key.

    A tone near frequency ``j`` leaks into bin ``i`` as ``sum_n exp(i 2 pi (f_j - f_i + d) n /
    rate)`` = Dirichlet(d) * phase(d); the part of the phase that depends on ``d`` is common to a
    tone's column of the mix, so it only rotates the solution and is left out. For each key and
    kernel (m00, m01, m10, m11: bin low/low/high/high, tone low/high/low/high) this returns the
    quadratic coefficients in ``d`` (Hz) of the real Dirichlet kernel, ``16 x 12`` (three
    groups of four, constant term first), and the constant phase ``P`` of m01 (m10's is its
    conjugate, m00's and m11's are 1), ``16``.
    """
    coef = np.zeros((16, 3, 4))
    phase = np.zeros(16, dtype=np.complex128)
    for key in range(16):
        pair = (LOW_HZ[key // 4], HIGH_HZ[key % 4])
        for k, (i, j) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
            f_bin, f_tone = pair[i], pair[j]
            d = np.linspace(-MAX_DEVIATION * f_tone, MAX_DEVIATION * f_tone, 101)
            theta = 2.0 * np.pi * (f_tone - f_bin + d) / rate
            s = np.sin(theta / 2)
            small = np.abs(s) < 1e-12
            dirichlet = np.where(small, half, np.sin(theta * half / 2) / np.where(small, 1.0, s))
            coef[key, :, k] = np.polyfit(d, dirichlet, 2)[::-1]
        phase[key] = np.exp(1j * np.pi * (pair[1] - pair[0]) * (half - 1) / rate)
    return coef.reshape(16, 12).astype(np.float32), phase.astype(np.complex64)
