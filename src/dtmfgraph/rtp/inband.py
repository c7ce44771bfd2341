"""In-band DTMF detection for inbound streams: one detector per stream, or one bank for many.

Both are fed G.711 payload bytes through ``push(codes, now)`` and call back
``on_digit(key, start, end)`` with times on the caller's clock (the ``now`` given to the stream).

- :class:`SoloInband` runs a single-channel :class:`~dtmfgraph.tones.Detector` on every push.
- :class:`InbandBank` holds one ``Detector(channels=N)``. Each attached stream owns one
  :class:`InbandChannel` and pushes its audio into that channel's buffer; once per frame slot
  (:meth:`InbandBank.handle_deadline`) the bank takes one frame from every channel and feeds the
  whole block to the detector in a single call, then hands each digit to its channel's owner.
  A channel starts playing out once it holds ``prebuffer_ms`` of audio (absorbing arrival
  jitter); when it runs dry it plays silence and buffers again; a channel still holding more
  than ``max_buffer_ms`` after the block due now (a sender faster than our clock, a burst) has
  its oldest audio dropped. A bank woken late (its driver's event loop stalled) first feeds
  every block it missed, up to 2 s of them at once, and a channel takes that much audio meanwhile,
  so a stall that short loses no audio whichever of the bank and its streams runs first after
  it; a late bank that finds a playing channel empty puts its catch-up off by a quarter slot
  once (the audio is likely waiting in a socket the same stall held up) rather than feed it
  silence, which would split a key. Times reported through the bank are accurate to about one
  frame.
  A bank tells its owner (:attr:`InbandBank.on_use`) when its first channel is taken and when its
  last one is given back, so that an empty bank can leave the clock (an idle process costs
  nothing) and come back re-anchored (:meth:`InbandBank.restart`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeAlias

import numpy as np
import numpy.typing as npt

from dtmfgraph.tones import Detector, alaw_decode, ulaw_decode

from .codec import CLOCK_RATE, Codec
from .errors import BankFullError

DigitSink: TypeAlias = Callable[[str, float, float, float], None]
"""Called with ``(key, start, end, level_dbm0)`` for each key the detector heard."""
AudioTap: TypeAlias = Callable[[npt.NDArray[np.float32], float], None]
"""Observer of what a detector channel is fed: float samples and the time of the first one."""
_REANCHOR_S: Final = 1.0
_MAX_BLOCKS_PER_CALL: Final = 100
"""Blocks a late :meth:`InbandBank.handle_deadline` catches up at most (2 s of 20 ms frames);
beyond, it skips ahead. A channel takes that much audio (and the prebuffer) before the bank's
catch-up, whatever ``max_buffer_ms`` is: audio is trimmed only once the bank is on time."""


class SoloInband:
    """A single-channel detector fed on every push (for a stream without a bank)."""

    def __init__(self, codec: Codec, on_digit: DigitSink) -> None:
        self._codec = codec
        self._on_digit = on_digit
        self._detector = Detector(channels=1, rate=CLOCK_RATE)
        self._origin: float | None = None
        self._fed = 0
        self.tap: AudioTap | None = None
        """Observer of the samples fed to the detector (see :data:`AudioTap`)."""

    def set_tap(self, tap: AudioTap | None) -> None:
        """Observe the samples fed to the detector (``None``: stop)."""
        self.tap = tap

    def push(self, codes: bytes, now: float) -> None:
        """Feed audio that arrived at ``now`` and follows the previous push without a gap."""
        n = len(codes)
        if not n:
            return
        if self._origin is None:
            self._origin = now - n / CLOCK_RATE
        else:
            drift = now - (self._origin + (self._fed + n) / CLOCK_RATE)
            if abs(drift) > _REANCHOR_S:  # a long pause: keep reporting on the arrival clock
                self._origin += drift
        block = self._codec.decode(codes).reshape(1, n)
        if self.tap is not None:
            self.tap(block[0], self._origin + self._fed / CLOCK_RATE)
        self._fed += n
        for digit in self._detector.feed(block):
            self._report(digit.key, digit.start, digit.end, digit.level_dbm0)

    def flush(self) -> None:
        """Report a digit still sounding at the end of the audio."""
        if self._origin is None:
            return
        for digit in self._detector.flush():
            self._report(digit.key, digit.start, digit.end, digit.level_dbm0)

    def close(self) -> None:
        self.flush()

    def _report(self, key: str, start: float, end: float, level: float) -> None:
        origin = self._origin if self._origin is not None else 0.0
        self._on_digit(key, origin + start, origin + end, level)


@dataclass(slots=True)
class BankStats:
    """Counters of an :class:`InbandBank`."""

    blocks: int = 0
    """Frame slots fed to the detector."""
    underruns: int = 0
    """Times a playing channel ran dry (silence played until it buffered again)."""
    overflow_bytes: int = 0
    """Audio dropped because a channel held more than ``max_buffer_ms``."""
    digits: int = 0
    """Digits handed to streams."""
    discarded: int = 0
    """Digits from a free channel, or that began before the channel's owner attached."""


class InbandChannel:
    """One stream's channel of an :class:`InbandBank` (from :meth:`InbandBank.attach`)."""

    __slots__ = (
        "_bank",
        "buf",
        "codec",
        "on_digit",
        "playing",
        "refill",
        "silence",
        "since",
        "slot",
    )

    def __init__(self, bank: InbandBank, slot: int, codec: Codec, on_digit: DigitSink) -> None:
        self._bank: InbandBank | None = bank
        self.slot = slot
        self.codec = codec
        self.on_digit = on_digit
        self.since = bank._fed * bank._ptime
        """Detector time (s) when the owner attached: earlier digits are not its own."""
        self.silence = codec.silence(bank._frame)
        self.buf = bytearray()
        self.playing = False
        self.refill: Callable[[int], None] | None = None
        """Called with the samples missing when the bank finds the channel short of a frame:
        the owner may push audio it holds back (a jitter buffer's next packets) at once."""

    def push(self, codes: bytes, now: float) -> None:
        """Append audio (payload bytes in the channel's codec) that arrived at ``now``."""
        bank = self._bank
        if bank is None:
            return
        buf = self.buf
        buf += codes
        excess = len(buf) - bank._hard_buffer
        if excess > 0:
            del buf[:excess]
            bank.stats.overflow_bytes += excess

    def flush(self) -> None:
        """Nothing to do: the bank plays the buffered audio out on its own clock."""

    def set_tap(self, tap: AudioTap | None) -> None:
        """Observe the samples the bank feeds the detector for this channel (``None``: stop)."""
        bank = self._bank
        if bank is not None:
            if tap is None:
                bank._taps.pop(self.slot, None)
            else:
                bank._taps[self.slot] = tap

    def close(self) -> None:
        """Give the channel back to the bank; digits it still reports are discarded."""
        bank = self._bank
        if bank is not None:
            self._bank = None
            bank._detach(self.slot)


class InbandBank:
    """One multi-channel detector shared by up to ``channels`` inbound streams (sans-I/O).

    ``start`` is when the first block is due; blocks are due every ``ptime_ms``. The driver calls
    :meth:`handle_deadline` at (or after) :meth:`next_deadline`, before it polls the streams.
    """

    def __init__(
        self,
        channels: int,
        *,
        start: float,
        ptime_ms: int = 20,
        prebuffer_ms: int = 40,
        max_buffer_ms: int = 1000,
    ) -> None:
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        if not 0 <= prebuffer_ms < max_buffer_ms:
            raise ValueError("need 0 <= prebuffer_ms < max_buffer_ms")
        self.channels = channels
        self._detector = Detector(channels=channels, rate=CLOCK_RATE)
        self._start = float(start)
        self._ptime = ptime_ms / 1000.0
        self._frame = CLOCK_RATE * ptime_ms // 1000
        self._prebuffer = CLOCK_RATE * prebuffer_ms // 1000
        self._max_buffer = max(CLOCK_RATE * max_buffer_ms // 1000, self._frame)
        self._hard_buffer = max(
            self._max_buffer, (_MAX_BLOCKS_PER_CALL + 1) * self._frame + self._prebuffer
        )
        """What a channel holds at most while the bank may be behind (``InbandChannel.push``)."""
        self._latency = prebuffer_ms / 1000.0
        self._slots: list[InbandChannel | None] = [None] * channels
        self._free = list(range(channels - 1, -1, -1))
        self._idle = Codec.PCMU.silence(self._frame)
        self._alaw = np.zeros(channels, dtype=bool)
        self._tick = 0
        """Blocks due so far (the clock: block ``k`` is due at ``start + k * ptime``)."""
        self._fed = 0
        """Blocks fed to the detector: its time base (fewer than ``_tick`` after a skip)."""
        self._deferred: float | None = None
        """A late catch-up put off until then (the audio it needs may not have been read)."""
        self._taps: dict[int, AudioTap] = {}
        """Observers of channels' detector input, by slot (a console's spectrogram)."""
        self.stats = BankStats()
        self.on_use: Callable[[bool], None] | None = None
        """Called with ``True`` when the first channel is attached to the empty bank, and with
        ``False`` when the last one is detached (the driver may stop and restart the bank). The
        call with ``True`` comes before the channel is taken, so the bank is still empty."""

    @property
    def empty(self) -> bool:
        """No channel attached."""
        return len(self._free) == self.channels

    def restart(self, start: float) -> None:
        """Re-anchor an empty bank: the next block is due at ``start`` (after a pause off the
        clock); the detector starts afresh. Raises ``RuntimeError`` unless the bank is empty."""
        if not self.empty:
            raise RuntimeError("only an empty bank can be restarted")
        self._start = float(start)
        self._tick = 0
        if self._fed:
            self._fed = 0
            self._detector = Detector(channels=self.channels, rate=CLOCK_RATE)

    @property
    def free(self) -> int:
        """Channels not attached."""
        return len(self._free)

    def attach(self, codec: Codec, on_digit: DigitSink) -> InbandChannel:
        """Take a free channel for a stream. Raises :class:`BankFullError`."""
        if not self._free:
            raise BankFullError(f"all {self.channels} in-band detector channels are taken")
        if self.empty and self.on_use is not None:
            self.on_use(True)  # (before the channel is taken: the owner may restart the bank)
        slot = self._free.pop()
        channel = InbandChannel(self, slot, codec, on_digit)
        self._slots[slot] = channel
        self._alaw[slot] = codec is Codec.PCMA
        return channel

    def _detach(self, slot: int) -> None:
        self._taps.pop(slot, None)
        if self._slots[slot] is not None:
            self._slots[slot] = None
            self._alaw[slot] = False
            self._free.append(slot)
            if self.empty and self.on_use is not None:
                self.on_use(False)

    def next_deadline(self) -> float:
        """When the next block is due (or a catch-up put off is)."""
        if self._deferred is not None:
            return self._deferred
        return self._start + self._tick * self._ptime

    def _starved(self) -> bool:
        """Some playing channel is short of a frame, even after asking its owner for more."""
        frame = self._frame
        for channel in self._slots:
            if channel is None or not channel.playing:
                continue
            if len(channel.buf) < frame and channel.refill is not None:
                channel.refill(frame - len(channel.buf))
            if len(channel.buf) < frame:
                return True
        return False

    def handle_deadline(self, now: float) -> None:
        """Feed every block due by ``now`` (at most 100 at once) and deliver the digits heard."""
        fed = 0
        last = math.floor((now + 1e-9 - self._start) / self._ptime)  # the block due now
        if self._deferred is None and self._tick < last and self._starved():
            # Woken late and a channel has nothing to play: its audio is likely still in a
            # socket (the stall that made us late held the reads up too). Catch up a quarter
            # slot later, once the event loop has read it, rather than feed silence now.
            self._deferred = now + self._ptime / 4
            return
        self._deferred = None
        while self._tick <= last:
            if fed == _MAX_BLOCKS_PER_CALL:  # far behind: skip ahead rather than stall
                self._tick = last + 1
                break
            self._feed_block(trim=self._tick == last)
            fed += 1

    def _feed_block(self, *, trim: bool) -> None:
        """Feed the next block; ``trim``: the bank is on time (this block is due now), so a
        channel left holding more than ``max_buffer_ms`` is trimmed to it."""
        frame = self._frame
        keep = self._max_buffer
        prebuffer = max(self._prebuffer, 1)
        rows: list[bytes | bytearray] = [self._idle] * self.channels
        for slot, channel in enumerate(self._slots):  # (per channel per tick: kept lean)
            if channel is None:
                continue
            buf = channel.buf
            held = len(buf)
            if channel.playing:
                if held < frame and channel.refill is not None:
                    channel.refill(frame - held)
                    held = len(buf)
            elif held >= prebuffer:
                channel.playing = True
            else:
                rows[slot] = channel.silence
                continue
            if held >= frame:
                rows[slot] = buf[:frame]
                del buf[:frame]
                if trim and held - frame > keep:  # more than a late bank needed: drop the oldest
                    del buf[: held - frame - keep]
                    self.stats.overflow_bytes += held - frame - keep
            else:  # ran dry: play what is left, then buffer again
                rows[slot] = bytes(buf) + channel.silence[held:]
                buf.clear()
                channel.playing = False
                self.stats.underruns += 1
        codes = np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(self.channels, frame)
        pcm = ulaw_decode(codes)
        if self._alaw.any():
            pcm = np.where(self._alaw[:, None], alaw_decode(codes), pcm)
        # detector time -> the clock's: blocks skipped while far behind moved the clock on alone
        shift = self._start + (self._tick - self._fed) * self._ptime - self._latency + self._ptime
        if self._taps:
            for slot, tap in list(self._taps.items()):
                tap(pcm[slot], shift + self._fed * self._ptime)
        self._tick += 1
        self._fed += 1
        self.stats.blocks += 1
        for digit in self._detector.feed(pcm):
            channel = self._slots[digit.channel]
            if channel is None or digit.start < channel.since:
                self.stats.discarded += 1
                continue
            self.stats.digits += 1
            channel.on_digit(digit.key, shift + digit.start, shift + digit.end, digit.level_dbm0)
