"""The sending side of one RTP stream: audio frames on a fixed clock, with DTMF jobs mixed in.

An :class:`OutboundStream` owns the SSRC, the sequence numbers and the media clock. Frame ``k``
is due at ``start + k * ptime`` and carries RTP timestamp ``timestamp0 + k * samples_per_frame``.
Each frame slot carries exactly one packet:

- idle: a frame of encoded silence;
- in-band DTMF: the frame of the synthesised tone (pre-encoded when the job is queued);
- RFC 4733 DTMF: a telephone-event packet *instead of* the audio frame, from the event's first
  update until its third end packet. Audio resumes afterwards on the same clock, so its timestamp
  jumps over the event, as it does after any stretch without audio.

Keys are separated by ``gap_ms`` measured from the end of one tone to the start of the next (at
least the two slots the end retransmissions need); the same gap separates consecutive jobs.

- audio (a prompt, :meth:`OutboundStream.play_audio`): the job's frames, pre-encoded, one per
  slot from its first slot on, with no gap before the next job (or before its own next round when
  it loops). A cancel ends it at the next slot with that frame faded out (no click).
"""

from __future__ import annotations

import itertools
import math
import random
from collections import deque
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final, Literal, TypeAlias

import numpy as np
import numpy.typing as npt

from dtmfgraph.tones import FLASH, UnknownKeyError, key_info, synthesize

from .codec import CLOCK_RATE, Codec
from .errors import BadKeyError, DtmfJobError, InbandFlashError
from .packet import HEADER
from .telephone_event import END_BIT, EVENT, MAX_DURATION, MAX_VOLUME

Method: TypeAlias = Literal["rfc4733", "inband"]
METHODS: Final[tuple[Method, ...]] = ("rfc4733", "inband")
MAX_TONE_MS: Final = 600_000
"""Longest tone a job may ask for (10 minutes: RFC 4733 events longer than ~8 s are segmented)."""
MAX_GAP_MS: Final = 600_000
END_PACKETS: Final = 3
"""How many times the final packet of an event (and of each segment) is sent."""
_EPS: Final = 1e-9
_U16: Final = 0xFFFF
_U32: Final = 0xFFFFFFFF
_V2: Final = 0x80
_pack = HEADER.pack

# One planned packet: (marker|payload-type byte, RTP timestamp or -1 for the slot's, payload).
_Slot: TypeAlias = tuple[int, int, bytes]


@dataclass(eq=False, slots=True)
class DtmfJob:
    """A queued key sequence and what became of it. Compared by identity.

    ``started_at`` is when its first packet was due; ``finished_at`` when its last packet was due
    (or when it was cancelled before starting). ``keys_sent`` counts keys put on the wire (a
    started key is always finished, end packets included); ``keys_left`` the keys not sent.
    """

    id: int
    keys: str
    method: Method
    tone_ms: int
    gap_ms: int
    volume: int
    queued_at: float
    started_at: float | None = None
    finished_at: float | None = None
    keys_sent: int = 0
    cancelled: bool = False
    key_times: list[float] = field(default_factory=list)
    """When each key sent so far left: the ``now`` of the :meth:`OutboundStream.packets_due`
    that returned its first packet (the pacer sends what that returns at once)."""
    _earliest: int = field(default=0, repr=False)
    _frames: tuple[tuple[bytes, ...], ...] = field(default=(), repr=False)
    _last_due: float | None = field(default=None, repr=False)

    @property
    def keys_left(self) -> int:
        return len(self.keys) - self.keys_sent

    @property
    def done(self) -> bool:
        return self.finished_at is not None


@dataclass(eq=False, slots=True)
class AudioJob:
    """Queued audio (8 kHz int16 ``samples``, e.g. a prompt) and what became of it.

    ``loop``: play it again and again, without a gap, until cancelled. ``frames_sent`` counts the
    frames put on the wire (every round). Times as for :class:`DtmfJob`."""

    id: int
    samples: npt.NDArray[np.int16]
    loop: bool
    queued_at: float
    started_at: float | None = None
    finished_at: float | None = None
    frames_sent: int = 0
    cancelled: bool = False
    _earliest: int = field(default=0, repr=False)
    _frames: tuple[bytes, ...] = field(default=(), repr=False)
    _last_due: float | None = field(default=None, repr=False)

    keys = ""
    """No keys (what the echo suppression of a DTMF job looks at)."""

    @property
    def done(self) -> bool:
        return self.finished_at is not None

    @property
    def seconds(self) -> float:
        """The length of one round."""
        return len(self.samples) / CLOCK_RATE


Job: TypeAlias = DtmfJob | AudioJob


@dataclass(frozen=True, slots=True)
class JobStarted:
    """The first packet of ``job`` was due ``at``."""

    job: Job
    at: float


@dataclass(frozen=True, slots=True)
class JobFinished:
    """``job`` is over: its last packet was due ``at`` (cancelled or not: see ``job.cancelled``)."""

    job: Job
    at: float


OutboundEvent: TypeAlias = JobStarted | JobFinished


class OutboundStream:
    """One outgoing RTP stream (sans-I/O): ask :meth:`packets_due` on the media clock.

    ``start`` is when frame 0 is due (seconds, the caller's clock). ``ssrc``, ``sequence`` and
    ``timestamp`` are the first values used (random when not given, as RFC 3550 asks).
    """

    def __init__(
        self,
        *,
        start: float,
        codec: Codec = Codec.PCMU,
        event_pt: int | None = 101,
        ptime_ms: int = 20,
        ssrc: int | None = None,
        sequence: int | None = None,
        timestamp: int | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not isinstance(ptime_ms, int) or not 1 <= ptime_ms <= 1000:
            raise ValueError(f"ptime_ms must be an integer 1..1000, got {ptime_ms!r}")
        if event_pt is not None and (not 0 <= event_pt <= 127 or event_pt == codec.payload_type):
            raise ValueError(f"bad telephone-event payload type {event_pt!r}")
        rng = rng or random.Random()
        self._start = float(start)
        self._codec = codec
        self._audio_pt = codec.payload_type
        self._event_pt = event_pt
        self._ptime_ms = ptime_ms
        self._ptime = ptime_ms / 1000.0
        self._spf = CLOCK_RATE * ptime_ms // 1000
        self._silence = codec.silence(self._spf)
        self._ssrc = _u32(ssrc, "ssrc") if ssrc is not None else rng.getrandbits(32)
        self._seq = _u16(sequence) if sequence is not None else rng.getrandbits(16)
        self._ts0 = _u32(timestamp, "timestamp") if timestamp is not None else rng.getrandbits(32)
        self._tick = 0
        self._octets_off = 0
        """Payload octets sent beyond one silence frame per packet (events are shorter)."""
        self._now = 0.0
        """The ``now`` of the :meth:`packets_due` running (when a key's first packet leaves)."""
        self._ready = 0
        """First slot where the next key may start (the gap after the previous key)."""
        self._jobs: deque[Job] = deque()
        self._plan: list[_Slot] | None = None
        self._pos = 0
        self._events: deque[OutboundEvent] = deque()
        self._ids = itertools.count(1)
        self.muted = False
        """Audio jobs go out as silence, on their own clock (they still start and finish);
        DTMF jobs, in-band ones too, are not muted."""

    # -- properties -----------------------------------------------------------------------------
    @property
    def ssrc(self) -> int:
        return self._ssrc

    @property
    def sequence(self) -> int:
        """The sequence number of the next packet."""
        return self._seq

    @property
    def timestamp(self) -> int:
        """The RTP timestamp of the next frame slot."""
        return (self._ts0 + self._tick * self._spf) & _U32

    @property
    def codec(self) -> Codec:
        return self._codec

    @property
    def event_pt(self) -> int | None:
        return self._event_pt

    @property
    def ptime_ms(self) -> int:
        return self._ptime_ms

    @property
    def start(self) -> float:
        return self._start

    @property
    def jobs(self) -> tuple[Job, ...]:
        """Jobs not finished yet, the running one first."""
        return tuple(self._jobs)

    # -- jobs -----------------------------------------------------------------------------------
    def send_dtmf(
        self,
        keys: str,
        *,
        method: Method = "rfc4733",
        tone_ms: int = 100,
        gap_ms: int = 100,
        volume: int = 10,
        now: float,
    ) -> DtmfJob:
        """Queue ``keys`` (FIFO after earlier jobs), to start on the first frame slot from ``now``.

        ``volume`` is the level in -dBm0 (the event's volume field; in-band, the low tone's level).
        Raises :class:`BadKeyError`, :class:`InbandFlashError` or :class:`DtmfJobError`.
        """
        if method not in METHODS:
            raise DtmfJobError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        if not isinstance(keys, str) or not keys:
            raise BadKeyError("no keys to send")
        try:
            entries = [key_info(k) for k in keys]
        except UnknownKeyError as exc:
            raise BadKeyError(str(exc)) from None
        _check_int("tone_ms", tone_ms, 1, MAX_TONE_MS)
        _check_int("gap_ms", gap_ms, 0, MAX_GAP_MS)
        _check_int("volume", volume, 0, MAX_VOLUME)
        frames: tuple[tuple[bytes, ...], ...] = ()
        if method == "rfc4733":
            if self._event_pt is None:
                raise DtmfJobError(
                    "rfc4733 needs a telephone-event payload type, and none was negotiated"
                )
        else:
            if any(e is FLASH for e in entries):
                raise InbandFlashError(
                    "flash has no tone pair and cannot be sent in-band: "
                    "send it as an RFC 4733 event (or SIP INFO)"
                )
            n_tone = _samples(tone_ms)
            frames = tuple(
                _inband_frames(self._codec, e.key, n_tone, volume, self._spf) for e in entries
            )
        earliest = max(0, math.ceil((now - self._start) / self._ptime - _EPS))
        job = DtmfJob(
            id=next(self._ids),
            keys="".join(e.key for e in entries),
            method=method,
            tone_ms=tone_ms,
            gap_ms=gap_ms,
            volume=volume,
            queued_at=now,
            _earliest=earliest,
            _frames=frames,
        )
        self._jobs.append(job)
        return job

    def play_audio(self, samples: npt.ArrayLike, *, loop: bool = False, now: float) -> AudioJob:
        """Queue ``samples`` (int16, 8 kHz, 1-D; FIFO after earlier jobs) to start on the first
        frame slot from ``now`` (or right after the job before it). Raises :class:`DtmfJobError`
        for an empty or non-1-D array."""
        pcm = np.asarray(samples, dtype=np.int16)
        if pcm.ndim != 1 or len(pcm) == 0:
            raise DtmfJobError("audio to play must be a non-empty 1-D array of samples")
        data = self._codec.encode(pcm)
        data += self._silence[: -len(data) % self._spf]
        frames = tuple(data[i : i + self._spf] for i in range(0, len(data), self._spf))
        job = AudioJob(
            id=next(self._ids),
            samples=pcm,
            loop=loop,
            queued_at=now,
            _earliest=max(0, math.ceil((now - self._start) / self._ptime - _EPS)),
            _frames=frames,
        )
        self._jobs.append(job)
        return job

    def cancel(self, job: Job, now: float) -> None:
        """Stop ``job`` at a key boundary: a key on the wire is finished, end packets included;
        audio ends at the next slot, with that frame faded out.

        A job that has not started is dropped at once (finished ``now``); a job between two keys
        finishes at its last packet. Either way a :class:`JobFinished` follows.
        """
        if job.done or job not in self._jobs:
            return
        job.cancelled = True
        running = self._jobs[0] is job and job.started_at is not None
        if running and self._plan is not None:
            if isinstance(job, AudioJob):
                self._fade_out(job)
            return  # finishes when the current key's last packet is out
        self._jobs.remove(job)
        self._finish(job, job._last_due if running and job._last_due is not None else now)

    def next_event(self) -> OutboundEvent | None:
        """The next :class:`JobStarted` / :class:`JobFinished`, oldest first, or ``None``."""
        return self._events.popleft() if self._events else None

    # -- the clock ------------------------------------------------------------------------------
    def next_deadline(self) -> float:
        """When the next packet is due."""
        return self._start + self._tick * self._ptime

    def packets_due(self, now: float) -> list[bytes]:
        """Every packet due at or before ``now`` not yet returned, in order (one per frame slot)."""
        k = self._tick
        start = self._start
        ptime = self._ptime
        limit = now + _EPS
        if start + k * ptime > limit:
            return []
        out: list[bytes] = []
        while start + k * ptime <= limit:
            if self._plan is None and not self._jobs:  # idle: the fast path
                seq = self._seq
                self._seq = (seq + 1) & _U16
                out.append(
                    _pack(_V2, self._audio_pt, seq, (self._ts0 + k * self._spf) & _U32, self._ssrc)
                    + self._silence
                )
            else:
                self._now = now
                out.append(self._slot(k))
            k += 1
        self._tick = k
        return out

    @property
    def packets_sent(self) -> int:
        """Packets returned by :meth:`packets_due` (what RTCP sender reports count): one per
        frame slot so far."""
        return self._tick

    @property
    def octets_sent(self) -> int:
        """Their payload octets (headers not counted, as RFC 3550 6.4.1 says)."""
        return self._tick * len(self._silence) + self._octets_off

    def timestamp_at(self, now: float) -> int:
        """The RTP timestamp of the instant ``now`` on this stream's clock (for an SR)."""
        return (self._ts0 + round((now - self._start) * CLOCK_RATE)) & _U32

    # -- internals ------------------------------------------------------------------------------
    def _slot(self, k: int) -> bytes:
        ts = (self._ts0 + k * self._spf) & _U32
        if self._plan is None:
            self._start_key(k, ts)
        seq = self._seq
        self._seq = (seq + 1) & _U16
        plan = self._plan
        if plan is None:
            return _pack(_V2, self._audio_pt, seq, ts, self._ssrc) + self._silence
        second, planned_ts, payload = plan[self._pos]
        if self.muted and isinstance(self._jobs[0], AudioJob):
            payload = self._silence
        self._octets_off += len(payload) - len(self._silence)
        self._pos += 1
        packet = _pack(_V2, second, seq, ts if planned_ts < 0 else planned_ts, self._ssrc) + payload
        if self._pos == len(plan):
            self._end_key(k)
        return packet

    def _fade_out(self, job: AudioJob) -> None:
        """End the plan of ``job`` (sounding) with its next frame faded to zero."""
        plan = self._plan
        assert plan is not None
        pos, spf = self._pos, self._spf
        chunk = job.samples[pos * spf : (pos + 1) * spf].astype(np.float64)
        chunk = np.concatenate([chunk, np.zeros(spf - len(chunk))])
        faded = np.rint(chunk * np.linspace(1.0, 0.0, spf, endpoint=False)).astype(np.int16)
        self._plan = [*plan[:pos], (self._audio_pt, -1, self._codec.encode(faded))]
        self._ready = min(self._ready, self._tick + 1)

    def _start_key(self, k: int, ts: int) -> None:
        job = self._jobs[0]
        if k < self._ready or k < job._earliest:
            return
        due = self._start + k * self._ptime
        if isinstance(job, AudioJob):
            self._plan = [(self._audio_pt, -1, frame) for frame in job._frames]
            self._pos = 0
            self._ready = k + len(self._plan)
            if job.started_at is None:
                job.started_at = due
                self._events.append(JobStarted(job, due))
            return
        index = job.keys_sent
        n_tone = _samples(job.tone_ms)
        if job.method == "rfc4733":
            assert self._event_pt is not None
            plan = _event_plan(
                key_info(job.keys[index]).event, job.volume, n_tone, self._spf, ts, self._event_pt
            )
        else:
            plan = [(self._audio_pt, -1, frame) for frame in job._frames[index]]
        self._plan = plan
        self._pos = 0
        frames_to_next = -(-(n_tone + _samples(job.gap_ms)) // self._spf)
        self._ready = k + max(len(plan), frames_to_next)
        if index == 0:
            job.started_at = due
            self._events.append(JobStarted(job, due))
        job.keys_sent = index + 1
        job.key_times.append(self._now)

    def _end_key(self, k: int) -> None:
        plan = self._plan
        self._plan = None
        job = self._jobs[0]
        job._last_due = self._start + k * self._ptime
        if isinstance(job, AudioJob):
            job.frames_sent += len(plan) if plan is not None else 0
            if job.loop and not job.cancelled:
                return  # the next round starts in the next slot
            self._jobs.popleft()
            self._finish(job, job._last_due)
            return
        if job.cancelled or job.keys_sent == len(job.keys):
            self._jobs.popleft()
            self._finish(job, job._last_due)

    def _finish(self, job: Job, at: float) -> None:
        job.finished_at = at
        self._events.append(JobFinished(job, at))


def _event_plan(event: int, volume: int, total: int, spf: int, ts0: int, pt: int) -> list[_Slot]:
    """The telephone-event packets of one key, one per frame slot from its first slot on.

    Updates carry the duration up to the end of their slot; the first packet (marker) is never an
    end packet; the final packet goes out 3 times. Past ``MAX_DURATION`` the event is split into
    segments of a whole number of frames: a segment's final packet (E=0) also goes out 3 times,
    then the next segment continues at the segment's end timestamp.
    """
    seg_max = MAX_DURATION // spf * spf
    plan: list[_Slot] = []
    seg_start = 0
    marked = pt | 0x80
    while True:
        elapsed = min((len(plan) + 1) * spf, total)
        seg_dur = elapsed - seg_start
        ts = (ts0 + seg_start) & _U32
        if elapsed == total and plan:
            final = EVENT.pack(event, END_BIT | volume, seg_dur)
            plan.extend([(pt, ts, final)] * END_PACKETS)
            return plan
        if seg_dur == seg_max:
            final = EVENT.pack(event, volume, seg_dur)
            plan.append((marked if not plan else pt, ts, final))
            plan.extend([(pt, ts, final)] * (END_PACKETS - 1))
            seg_start += seg_max
            continue
        plan.append((marked if not plan else pt, ts, EVENT.pack(event, volume, seg_dur)))


@lru_cache(maxsize=1024)
def _inband_frames(codec: Codec, key: str, n_tone: int, volume: int, spf: int) -> tuple[bytes, ...]:
    """One key's tone, G.711-encoded and cut into frames (the last padded with silence)."""
    audio = synthesize(key, rate=CLOCK_RATE, tone_ms=n_tone * 1000 / CLOCK_RATE, level_dbm0=-volume)
    data = codec.encode(audio)
    data += codec.silence(-len(data) % spf)
    return tuple(data[i : i + spf] for i in range(0, len(data), spf))


def _samples(ms: int) -> int:
    return ms * CLOCK_RATE // 1000


def _check_int(name: str, value: int, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise DtmfJobError(f"{name} must be an integer {low}..{high}, got {value!r}")


def _u16(value: int) -> int:
    if not 0 <= value <= _U16:
        raise ValueError(f"sequence must be 0..65535, got {value!r}")
    return value


def _u32(value: int, name: str) -> int:
    if not 0 <= value <= _U32:
        raise ValueError(f"{name} must be 0..2**32-1, got {value!r}")
    return value
