"""Block analysis for the DTMF detector: which key, if any, sounds in each analysis block.

The signal of every channel is cut into *half-blocks* of ``L`` samples (51 at 8 kHz, 6.375 ms).
One matrix product gives the DFT of every half-block at the eight Q.23 frequencies. An analysis
*block* is two consecutive half-blocks (102 samples, 12.75 ms) with a hop of one half-block, so
each half-block is transformed once and the block's DFT is the sum of its halves' (the second
one phase-rotated). From the two halves we also get, for free:

* the phase advance of each tone between the halves, i.e. its true frequency (unambiguous within
  ``rate / 2L`` = ±78 Hz), which enforces the Q.24 frequency tolerance that a 102-sample filter
  bank alone cannot;
* the tone's power in each half: a block is a hit only if the tone fills it, so a hit does not
  depend on the level and durations can be judged by counting hits.

Everything is vectorised over channels and blocks; blocks that fail the cheap energy tests are
dropped before the finer ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Final

import numpy as np
import numpy.typing as npt

from .keypad import HIGH_HZ, KEYS, LOW_HZ
from .synth import DBM0_PEAK

F32 = npt.NDArray[np.float32]
C64 = npt.NDArray[np.complex64]

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

KEY_FREQS: Final[npt.NDArray[np.float64]] = np.array([[lo, hi] for lo in LOW_HZ for hi in HIGH_HZ])
"""Low and high frequency of each entry of :data:`KEY_TABLE`."""
KEY_TABLE: Final[tuple[str, ...]] = tuple(
    next(k.key for k in KEYS.values() if k.low_hz == lo and k.high_hz == hi)
    for lo in LOW_HZ
    for hi in HIGH_HZ
)
"""Key of the pair (low index ``i``, high index ``j``) at ``4 * i + j``."""


@dataclass(frozen=True, slots=True)
class BlockHits:
    """The hit blocks of one analysis call, sorted by channel then block.

    ``channel`` and ``block`` locate the hit (``block`` counts from the call's first block);
    ``key`` indexes :data:`KEY_TABLE`; ``level`` is the mean per-tone level in dBm0;
    ``dev_low``/``dev_high`` are the tones' relative frequency errors.
    """

    channel: npt.NDArray[np.intp]
    block: npt.NDArray[np.intp]
    key: npt.NDArray[np.intp]
    level: F32
    dev_low: F32
    dev_high: F32


@dataclass(frozen=True, slots=True)
class HalfBlocks:
    """Per-half-block analysis of ``channels`` signals, arrays shaped ``channels x halves ...``.

    ``rect``: DFT at the 8 frequencies; ``hann``: the DFTs with the first half of a 102-sample
    Hann window (8) and with its second half, time origin one half-block earlier (8);
    ``energy``: sum of squares; ``groups``: ``|rect|^2`` summed over the low and the high group.
    """

    rect: C64
    hann: C64
    energy: F32
    groups: F32

    @classmethod
    def empty(cls, channels: int, halves: int) -> HalfBlocks:
        return cls(
            np.empty((channels, halves, 8), dtype=np.complex64),
            np.empty((channels, halves, 16), dtype=np.complex64),
            np.empty((channels, halves), dtype=np.float32),
            np.empty((channels, halves, 2), dtype=np.float32),
        )

    @classmethod
    def zeros(cls, channels: int, halves: int) -> HalfBlocks:
        return cls(
            np.zeros((channels, halves, 8), dtype=np.complex64),
            np.zeros((channels, halves, 16), dtype=np.complex64),
            np.zeros((channels, halves), dtype=np.float32),
            np.zeros((channels, halves, 2), dtype=np.float32),
        )

    def tail(self, halves: int) -> HalfBlocks:
        """The last ``halves`` half-blocks (copied)."""
        return HalfBlocks(
            self.rect[:, -halves:].copy(),
            self.hann[:, -halves:].copy(),
            self.energy[:, -halves:].copy(),
            self.groups[:, -halves:].copy(),
        )


def _fields(h: HalfBlocks) -> tuple[C64, C64, F32, F32]:
    return h.rect, h.hann, h.energy, h.groups


_SINGLE_THREAD_MNK: Final = 262_144
"""OpenBLAS runs a product of at most this many multiply-adds on one thread. Larger ones it
splits over threads that spin-wait: a large slowdown (measured 5-10x) when the cores are busy,
and little gain when idle for products this thin."""


def _product(
    frames: F32, matrix: F32, out: npt.NDArray[np.float32] | None = None
) -> npt.NDArray[np.float32]:
    """``frames @ matrix`` in row chunks small enough for OpenBLAS to stay single-threaded."""
    if out is None:
        out = np.empty((frames.shape[0], matrix.shape[1]), dtype=np.float32)
    step = max(1, _SINGLE_THREAD_MNK // (matrix.shape[0] * matrix.shape[1]))
    for i in range(0, frames.shape[0], step):
        np.matmul(frames[i : i + step], matrix, out=out[i : i + step])
    return out


def _real_columns(basis: npt.NDArray[np.complex128]) -> F32:
    """Complex basis ``n x k`` as ``n x 2k`` float32, (re, im) interleaved."""
    return np.ascontiguousarray(basis.view(np.float64).astype(np.float32))


def half_block(rate: int) -> int:
    """Half-block length in samples at ``rate`` (51 at 8 kHz)."""
    return max(1, round(HALF_BLOCK_8K * rate / NATIVE_RATE))


class FilterBank:
    """DFT of half-blocks at the eight DTMF frequencies, and the per-block hit tests."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.half = half_block(rate)
        self.block = 2 * self.half
        freqs = np.asarray(FREQS)
        n = np.arange(self.half)
        local = np.exp(-2j * np.pi * np.outer(n, freqs) / rate)
        shifted = np.exp(-2j * np.pi * np.outer(n + self.half, freqs) / rate)
        hann = np.sin(np.pi * (np.arange(self.block) + 0.5) / self.block) ** 2
        windowed = np.concatenate(
            [hann[: self.half, None] * local, hann[self.half :, None] * shifted], axis=1
        )
        # Interleaved (re, im) columns: a product viewed as complex64 is the DFT.
        self.rect_matrix: F32 = _real_columns(local)
        self.hann_matrix: F32 = _real_columns(windowed)
        self.rotation: C64 = np.exp(-2j * np.pi * freqs * self.half / rate).astype(np.complex64)
        self.freqs32 = freqs.astype(np.float32)
        self.hz_per_radian = np.float32(rate / (2.0 * np.pi * self.half))
        self.block_limit = (TOLERANCE + BLOCK_TOLERANCE_HZ / freqs).astype(np.float32)
        self.group_sum = np.zeros((16, 2), dtype=np.float32)
        self.group_sum[:8, 0] = self.group_sum[8:, 1] = 1.0
        full_scale = (DBM0_PEAK * self.block / 2.0) ** 2  # |X|^2 of a 0 dBm0 tone at its bin
        # Cheap tests on the sum over a block's two halves of their squared group DFTs, which
        # is at least half the block's |X|^2 (block DFT power -> tone energy is 2 / N).
        self.min_power_half = np.float32(full_scale * 10.0 ** (MIN_LEVEL_DBM0 / 10.0) / 2.0)
        self.prefilter = np.float32(_PREFILTER_SHARE * self.block / 4.0)
        self.zero_dbm0 = DBM0_PEAK**2 / 2.0  # mean power of a 0 dBm0 sine
        self.min_tone = np.float32(self.zero_dbm0 * 10.0 ** (MIN_LEVEL_DBM0 / 10.0))
        self.tone_to_energy = np.float32(self.block)  # tone of mean power p: energy p N
        self.dominance = np.float32(10.0 ** (DOMINANCE_DB / 10.0))
        self.balance = np.float32(10.0 ** (BALANCE_DB / 10.0))
        self.normal_twist = np.float32(10.0 ** (NORMAL_TWIST_DB / 10.0))
        self.reverse_twist = np.float32(10.0 ** (-REVERSE_TWIST_DB / 10.0))
        self.kernel_coef, self.kernel_phase = _kernel_table(rate, self.half)

    def transform(self, frames: F32, carry: HalfBlocks) -> HalfBlocks:
        """Analyse the half-blocks in ``frames`` (``channels * m x half``) and return them
        after the ``carry`` half-blocks of the previous call."""
        channels, kept = carry.energy.shape
        m = frames.shape[0] // channels
        out = HalfBlocks.empty(channels, kept + m)
        for dest, src in zip(_fields(out), _fields(carry), strict=True):
            dest[:, :kept] = src
        rect = out.rect.view(np.float32)
        hann = out.hann.view(np.float32)
        if channels == 1:  # whole-file case: write in place, no copy
            _product(frames, self.rect_matrix, rect[0, kept:])
            _product(frames, self.hann_matrix, hann[0, kept:])
            np.einsum("ij,ij->i", frames, frames, out=out.energy[0, kept:])
            np.matmul(np.square(rect[0, kept:]), self.group_sum, out=out.groups[0, kept:])
        else:
            rect[:, kept:] = _product(frames, self.rect_matrix).reshape(channels, m, 16)
            hann[:, kept:] = _product(frames, self.hann_matrix).reshape(channels, m, 32)
            out.energy[:, kept:] = np.einsum("ij,ij->i", frames, frames).reshape(channels, m)
            out.groups[:, kept:] = np.square(rect[:, kept:]) @ self.group_sum
        return out

    def hits(self, half: HalfBlocks) -> BlockHits:
        """Test every block of every channel.

        ``half`` holds the half-blocks in order, starting with the last :data:`CARRY` ones of
        the previous call. Block ``j`` is made of half-blocks ``j + 1`` and ``j + 2``.
        """
        _channels, halves = half.energy.shape
        blocks = halves - CARRY
        # Cheap necessary conditions on all blocks, from per-half-block sums:
        # |X + Y|^2 <= 2 (|X|^2 + |Y|^2) for the block's DFT X + Y from its halves.
        groups = (half.groups[:, 1:-1] + half.groups[:, 2:]).reshape(-1, 2)
        low, high = groups[:, 0], groups[:, 1]
        block_energy = (half.energy[:, 1:-1] + half.energy[:, 2:]).reshape(-1)
        candidate = np.minimum(low, high) > self.min_power_half
        candidate &= low + high > self.prefilter * block_energy
        index = np.flatnonzero(candidate)
        channel, block = np.divmod(index, blocks)
        return self._refine(channel, block, half, channel * halves + block, block_energy[index])

    def _refine(
        self,
        channel: npt.NDArray[np.intp],
        block: npt.NDArray[np.intp],
        half: HalfBlocks,
        row: npt.NDArray[np.intp],
        block_energy: F32,
    ) -> BlockHits:
        """The fine tests on the candidate blocks. A block's half-blocks are rows ``row + 1``
        and ``row + 2`` of the flattened ``half`` arrays (``row``: the one before)."""
        n = len(channel)
        rect = half.rect.reshape(-1, 8)
        spectrum = half.hann.reshape(-1, 16)
        full = rect[row + 1] + rect[row + 2] * self.rotation
        power = full.real**2 + full.imag**2
        rows = np.arange(n)[:, None]
        tones = np.stack([np.argmax(power[:, :4], axis=1), np.argmax(power[:, 4:], axis=1) + 4], 1)
        # Each tone must beat the other bins of its group.
        winner = power[rows, tones]
        power[rows, tones] = 0.0
        runner_up = np.stack(
            [
                np.maximum(
                    np.maximum(power[:, 0], power[:, 1]), np.maximum(power[:, 2], power[:, 3])
                ),
                np.maximum(
                    np.maximum(power[:, 4], power[:, 5]), np.maximum(power[:, 6], power[:, 7])
                ),
            ],
            axis=1,
        )
        dominant = winner > self.dominance * runner_up
        ok = dominant[:, 0] & dominant[:, 1]

        r0, r1, r2 = row[:, None], row[:, None] + 1, row[:, None] + 2
        # Frequency: phase advance between the Hann-windowed previous block and this one.
        hann_prev = spectrum[r0, tones] + spectrum[r1, tones + 8]
        hann_this = spectrum[r1, tones] + spectrum[r2, tones + 8]
        cross = hann_this * np.conj(hann_prev) * self.rotation[tones]
        deviation = np.angle(cross) * self.hz_per_radian / self.freqs32[tones]
        in_band = np.abs(deviation) <= self.block_limit[tones]
        ok &= in_band[:, 0] & in_band[:, 1]

        halves = np.stack([rect[r1, tones], rect[r2, tones]], axis=1)  # n x half x tone
        low, high = self._unmix(halves, tones, deviation)  # |a|^2 in each half
        for amp2 in (low, high):
            ok &= (amp2[:, 0] <= self.balance * amp2[:, 1]) & (
                amp2[:, 1] <= self.balance * amp2[:, 0]
            )
        p_low = low[:, 0] + low[:, 1]  # mean power of the tone (a tone A sin has A^2 / 2)
        p_high = high[:, 0] + high[:, 1]
        ok &= np.minimum(p_low, p_high) > self.min_tone
        ok &= (p_low + p_high) * self.tone_to_energy >= ENERGY_SHARE * block_energy
        twist = p_low / (p_high + np.float32(1e-20))
        ok &= (twist <= self.normal_twist) & (twist >= self.reverse_twist)

        keep = np.flatnonzero(ok)
        level = 5.0 * np.log10(p_low[keep] * p_high[keep] / self.zero_dbm0**2)
        return BlockHits(
            channel=channel[keep],
            block=block[keep],
            key=tones[keep, 0] * 4 + tones[keep, 1] - 4,
            level=level.astype(np.float32),
            dev_low=deviation[keep, 0],
            dev_high=deviation[keep, 1],
        )

    def _unmix(self, halves: C64, tones: npt.NDArray[np.intp], deviation: F32) -> tuple[F32, F32]:
        """Separate the two tones in each half-block; return their ``|a|^2`` (``n x half`` each).

        A 51-sample window leaks each tone into the other's bin by up to -14 dB. With the
        tones' true frequencies known (from ``deviation``), the bins are a 2 x 2 linear mix
        of the tones' complex amplitudes ``a`` (a tone ``A cos`` has ``|a| = A / 2``); solve it.
        The leakage kernels are quadratics in the frequency offset, fitted at construction.
        """
        hz = np.clip(deviation, -MAX_DEVIATION, MAX_DEVIATION) * self.freqs32[tones]
        d = hz[:, [0, 1, 0, 1]]  # the tone of each kernel m00, m01, m10, m11
        key = tones[:, 0] * 4 + tones[:, 1] - 4
        coef = self.kernel_coef[key]  # n x 3 x 4
        mix = (coef[:, 0] + d * (coef[:, 1] + d * coef[:, 2])) * self.kernel_phase[key]
        m00, m01, m10, m11 = (mix[:, i : i + 1] for i in range(4))
        det = m00 * m11 - m01 * m10
        x_low, x_high = halves[..., 0], halves[..., 1]
        a_low = (m11 * x_low - m01 * x_high) / det
        a_high = (m00 * x_high - m10 * x_low) / det
        return _abs2(a_low), _abs2(a_high)


def _abs2(a: C64) -> F32:
    return a.real**2 + a.imag**2


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
    quadratic coefficients in ``d`` (Hz) of the real Dirichlet kernel, ``16 x 3 x 4`` (constant
    term first), and the constant phases, ``16 x 4``.
    """
    coef = np.zeros((16, 3, 4))
    phase = np.zeros((16, 4), dtype=np.complex128)
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
            phase[key, k] = np.exp(1j * np.pi * (f_tone - f_bin) * (half - 1) / rate)
    return coef.astype(np.float32), phase.astype(np.complex64)
