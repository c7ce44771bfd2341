"""The receiving side of one RTP stream: keys heard as RFC 4733 events or as in-band tones.

:class:`InboundStream` takes datagrams with their arrival times and reports each key once, as a
:class:`KeyHeard` when the key is over. It never raises for bad input: every datagram it cannot
use is counted in :class:`InboundStats` by reason.

Order. Packets are put back in sequence order per SSRC: a packet after a gap waits at most
``reorder_window`` seconds for the missing ones (those still missing then count as ``lost``).
A telephone-event packet arriving after its place was passed is still used (events are
deduplicated anyway); audio takes the jitter buffer's way (below), which has its own ``late``.
A repeated sequence number is a ``duplicate``.

Events. One event is keyed by (SSRC, RTP timestamp, event code). It starts on its first packet
and ends on its first end (E) packet; the other packets only update it. If no packet of an
unfinished event arrives for ``event_timeout`` seconds (all end packets lost), it ends at the
last duration seen; a new event also ends the previous one. A packet with a new timestamp that
continues the event after a full segment (~0xFFFF units) belongs to the same event. Reported
times: ``start`` = arrival of the first packet less the duration it already carried;
``end`` = ``start`` + the event's total duration.

In-band. Audio goes through an adaptive :class:`~dtmfgraph.rtp.jitter.JitterBuffer` (play-out
delay ``min_delay``..``max_delay``, default 20..120 ms) that puts it back in timestamp order;
what was lost is concealed by a :class:`~dtmfgraph.tones.plc.Concealer` (from both sides of the
gap), and the result is decoded and run through the tone detector (its own, or a channel of a
shared :class:`~dtmfgraph.rtp.inband.InbandBank`) and given to :attr:`InboundStream.tap` (a
recording: concealed audio as a receiver plays it). Many phones send a key both as
events and as in-band audio: so an in-band detection is ignored (counted as
``inband_suppressed``) while an event is active, or if it overlaps an event's span widened by
``inband_guard`` seconds on each side.

Echo. Keys we send ourselves can come back as audio: a line's echo (a PSTN hybrid that the
gateways' cancellers do not fully remove), or a gateway that plays our RFC 4733 events into a
line that echoes. While we send keys (:meth:`InboundStream.sending`) and for
:data:`ECHO_TAIL` seconds after (:meth:`InboundStream.sent`), an in-band detection of one of
those keys is taken as our echo and ignored (``inband_echo``); other keys get through.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, fields
from math import inf
from typing import Final, Literal, Protocol

import numpy as np
import numpy.typing as npt

from dtmfgraph.tones import by_event
from dtmfgraph.tones.plc import HISTORY, conceal

from .codec import CLOCK_RATE, Codec
from .errors import RtpError
from .inband import InbandBank, SoloInband
from .jitter import MAX_DELAY, MIN_DELAY, JitterBuffer, Played
from .packet import HEADER, HEADER_SIZE, RtpPacket
from .rtcp import ReceptionStats
from .telephone_event import FLASH_EVENT, MAX_DURATION, TelephoneEvent

_U32: Final = 0xFFFFFFFF
MAX_DROPOUT: Final = 3000
"""A sequence jump forward beyond this restarts the stream's ordering (RFC 3550 A.1)."""
MAX_MISORDER: Final = 100
"""A sequence jump backward beyond this restarts the stream's ordering (RFC 3550 A.1)."""
MAX_PENDING: Final = 16
"""Packets held while waiting for a gap; past this the gap is given up at once."""
_RECENT: Final = 128
"""Sequence numbers behind the next expected one that are remembered (for duplicates)."""
_RECENT_MASK: Final = (1 << _RECENT) - 1
_MAX_SOURCES: Final = 8
_MAX_EVENTS: Final = 64
_MAX_HISTORY: Final = 16
_JITTER_SPAN: Final = float(1 << 30)
"""A transit-time change this large is a timestamp wrap (or a restart), not jitter."""
ECHO_TAIL: Final = 0.6
"""Seconds after our last key during which an in-band copy of our keys is taken as echo (echo
paths are under ~0.5 s round trip; ITU-T G.131)."""
_SEGMENT_SLACK: Final = 1600
"""How far short of 0xFFFF a segment may end and still be continued by the next timestamp."""


@dataclass(frozen=True, slots=True)
class KeyHeard:
    """One key heard, reported when it is over. Times are on the clock of ``now``."""

    key: str
    method: Literal["rfc4733", "inband"]
    start: float
    end: float
    ssrc: int
    level_dbm0: float | None = None
    """Its level (dBm0): the event's volume field for RFC 4733 (its sign flipped), the mean of
    the two tones the detector measured for in-band."""

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(slots=True)
class InboundStats:
    """Counters of an :class:`InboundStream`; the drop reasons are listed in :attr:`DROPS`."""

    received: int = 0
    """Datagrams given to ``receive``."""
    audio: int = 0
    """Audio packets used."""
    events: int = 0
    """Telephone-event packets used (first, updates, end repeats)."""
    malformed: int = 0
    """Not RTP, or a telephone-event payload that is not 4 bytes."""
    unknown_pt: int = 0
    """A payload type that is neither the codec's nor the telephone-event's."""
    duplicate: int = 0
    """A sequence number already received."""
    too_late: int = 0
    """A stale telephone-event packet (older than the event in progress)."""
    unknown_event: int = 0
    """A telephone-event code that is no key (not 0..16)."""
    lost: int = 0
    """Sequence numbers never received (gaps given up on)."""
    reordered: int = 0
    """Packets received out of order and put back in order."""
    event_timeouts: int = 0
    """Events ended by timeout because no end packet arrived."""
    events_superseded: int = 0
    """Events ended early because a newer event began."""
    inband_suppressed: int = 0
    """In-band detections ignored because RFC 4733 events carried the key."""
    inband_echo: int = 0
    """In-band detections ignored as the echo of keys we were sending."""
    keys: int = 0
    """Keys reported."""
    late: int = 0
    """Audio that came after its place had been played out (the jitter buffer's view)."""
    concealed: int = 0
    """Packets' worth of lost audio concealed for the detector and the recording."""
    playout_delay: float = 0.0
    """The jitter buffer's play-out delay now, in seconds."""
    jitter: float = 0.0
    """Interarrival jitter of the audio (RFC 3550 6.4.1, A.8), in timestamp units (1/8000 s):
    how much the spacing of arrivals wanders from the spacing of the packets' timestamps."""

    DROPS = ("malformed", "unknown_pt", "duplicate", "too_late", "unknown_event")

    @property
    def jitter_ms(self) -> float:
        """:attr:`jitter` in milliseconds."""
        return self.jitter * 1000.0 / CLOCK_RATE

    @property
    def dropped(self) -> int:
        """All datagrams dropped, whatever the reason."""
        return sum(getattr(self, name) for name in self.DROPS)

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(slots=True)
class _Event:
    ssrc: int
    event: int
    start: float
    seg_ts: int
    seg_dur: int
    base: int
    """Duration of the segments before the current one."""
    last_arrival: float
    ended: bool = False
    volume: int = 0


# A packet waiting in the reorder buffer: (timestamp, payload, event or None, arrival).
_Held = tuple[int, bytes, TelephoneEvent | None, float]


@dataclass(slots=True)
class _Source:
    """Ordering state of one SSRC."""

    ssrc: int
    expected: int
    """Extended sequence number of the next packet to release."""
    pending: dict[int, _Held]
    received: int = 0
    """Bit ``i`` set: extended sequence number ``expected - 1 - i`` was received."""


class _Sink(Protocol):
    def set_tap(self, tap: Callable[[npt.NDArray[np.float32], float], None] | None) -> None: ...

    def push(self, codes: bytes, now: float) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class InboundStream:
    """One incoming RTP stream (sans-I/O): feed :meth:`receive`, drain :meth:`next_event`.

    ``codec`` is the audio codec negotiated (``None``: audio packets are unknown payload types);
    ``event_pt`` the telephone-event payload type (``None``: not negotiated). With ``inband`` the
    audio goes to a tone detector: a channel of ``bank`` if given, else one of the stream's own.
    ``min_delay``/``max_delay`` bound the audio jitter buffer's play-out delay (seconds).
    """

    def __init__(
        self,
        *,
        codec: Codec | None = Codec.PCMU,
        event_pt: int | None = 101,
        inband: bool = True,
        bank: InbandBank | None = None,
        reorder_window: float = 0.06,
        event_timeout: float = 0.25,
        inband_guard: float = 0.15,
        min_delay: float = MIN_DELAY,
        max_delay: float = MAX_DELAY,
    ) -> None:
        if event_pt is not None and codec is not None and event_pt == codec.payload_type:
            raise ValueError("the telephone-event payload type must differ from the codec's")
        self._codec = codec
        self._audio_pt = codec.payload_type if codec is not None else -1
        self._event_pt = event_pt if event_pt is not None else -1
        self._window = reorder_window
        self._timeout = event_timeout
        self._guard = inband_guard
        self.stats = InboundStats()
        self._sources: OrderedDict[int, _Source] = OrderedDict()
        self._source: _Source | None = None
        """The source of the last packet (the usual case: one SSRC)."""
        self._gaps = False
        """Some source may hold packets behind a gap (else the per-tick calls skip them)."""
        self._events: OrderedDict[tuple[int, int, int], _Event] = OrderedDict()
        self._current: _Event | None = None
        self._history: deque[tuple[float, float]] = deque(maxlen=_MAX_HISTORY)
        self._out: deque[KeyHeard] = deque()
        self._out_since = 0.0
        self._audio_ssrc = -1
        self._jb = JitterBuffer(min_delay=min_delay, max_delay=max_delay)
        self._played: deque[bytes] = deque(maxlen=HISTORY)
        """The last stretches of codes played (each at least one byte: together at least the
        48.75 ms of history the concealment uses, joined only when a gap needs them)."""
        self._closed = False
        self.reception: ReceptionStats | None = None
        """The far end's sequence numbers as RTCP reports them (RFC 3550 A.1; the last SSRC
        heard, a new SSRC starting anew)."""
        self._jit_ssrc = -1
        self._transit = 0.0
        """SSRC and transit time (arrival less timestamp, in timestamp units) of the last audio
        packet: the jitter follows the change of transit time between packets."""
        self._own: dict[int, tuple[str, float, float]] = {}
        """Our own sends, by job: keys, start, end (+ the echo tail; ``inf`` while sending)."""
        self.tap: Callable[[bytes], None] | None = None
        """Optional observer of the audio as it is played out: the codec's codes in order,
        gaps concealed as for the detector (a recording)."""
        self._sink: _Sink | None = None
        self._banked = bank is not None
        self._lag = 0.0
        """How long after its would-be arrival the latest audio was played out."""
        if inband and codec is not None:
            if bank is not None:
                channel = bank.attach(codec, self._on_inband)
                channel.refill = self._refill
                self._sink = channel
            else:
                self._sink = SoloInband(codec, self._on_inband)

    @property
    def codec(self) -> Codec | None:
        return self._codec

    @property
    def event_pt(self) -> int | None:
        return self._event_pt if self._event_pt >= 0 else None

    # -- input ----------------------------------------------------------------------------------
    def receive(self, data: bytes, now: float) -> None:
        """Take one datagram that arrived at ``now``. Never raises for bad bytes."""
        stats = self.stats
        stats.received += 1
        if len(data) >= HEADER_SIZE and data[0] == 0x80:  # V=2, no P/X/CSRC: nothing to check
            _, second, seq, ts, ssrc = HEADER.unpack_from(data)
            pt = second & 0x7F
            payload = bytes(data[HEADER_SIZE:])
        else:
            try:
                packet = RtpPacket.parse(data)
            except RtpError:
                stats.malformed += 1
                return
            pt, seq, ts, ssrc = packet.payload_type, packet.sequence, packet.timestamp, packet.ssrc
            payload = packet.payload
        reception = self.reception  # RTCP's loss figures (RFC 3550 A.1), inline: per packet
        if (
            reception is not None
            and reception.ssrc == ssrc
            and seq == (reception.max_seq + 1) & 0xFFFF
        ):
            if not seq:
                reception.cycles += 0x10000
            reception.max_seq = seq
            reception.received += 1
        elif reception is None or reception.ssrc != ssrc:
            self.reception = ReceptionStats.first(ssrc, seq)
        else:
            reception.update(seq)
        event: TelephoneEvent | None = None
        if pt == self._audio_pt:  # interarrival jitter, RFC 3550 A.8 (inline: per packet)
            transit = now * CLOCK_RATE - ts
            d = transit - self._transit
            if (
                -_JITTER_SPAN < d < _JITTER_SPAN and ssrc == self._jit_ssrc
            ):  # else a wrap, a new SSRC
                stats.jitter += ((d if d >= 0 else -d) - stats.jitter) * 0.0625
            self._transit, self._jit_ssrc = transit, ssrc
        else:
            if pt != self._event_pt:
                stats.unknown_pt += 1
                return
            try:
                event = TelephoneEvent.parse(payload)
            except RtpError:
                stats.malformed += 1
                return
        source = self._source
        if source is None or source.ssrc != ssrc:
            source = self._source = self._source_of(ssrc, seq)
        delta = ((seq - source.expected + 0x8000) & 0xFFFF) - 0x8000
        if delta == 0 and not source.pending:  # in order: the usual case
            source.expected += 1
            source.received = ((source.received << 1) | 1) & _RECENT_MASK
            if event is not None:
                if ssrc == self._audio_ssrc:  # its sequence number is no lost audio
                    self._jb.skip(seq)
                self._on_event(ssrc, ts, event, now)
                return
            stats.audio += 1
        elif not self._order(source, delta, ts, payload, event, now):
            return
        elif event is not None:
            if ssrc == self._audio_ssrc:
                self._jb.skip(seq)
            return
        if (self._sink is not None or self.tap is not None) and payload:
            jb = self._jb  # the jitter buffer's way (inline: per packet)
            if ssrc != self._audio_ssrc:
                self._new_audio_source(ssrc, now)
            jb.put(seq, ts, payload, now)
            stats.late = jb.stats.late
            stats.playout_delay = jb.delay

    def handle_deadline(self, now: float) -> None:
        """Play out the audio due, give up on reordering gaps and time out events whose deadline
        has passed."""
        jb = self._jb
        if jb.due <= now + 1e-9:
            self._play(jb.pop(now), now)
        if self._gaps:
            gaps = False
            for source in self._sources.values():  # (giving up a gap adds or drops no source)
                if source.pending and _oldest(source) + self._window <= now + 1e-9:
                    self._give_up_gap(source)
                gaps = gaps or bool(source.pending)
            self._gaps = gaps
        current = self._current
        if (
            current is not None
            and not current.ended
            and current.last_arrival + self._timeout <= now + 1e-9
        ):
            self.stats.event_timeouts += 1
            self._finish(current)

    def next_deadline(self) -> float | None:
        """When :meth:`handle_deadline` is next needed (already past while keys wait to be read)."""
        if self._out:
            return self._out_since
        due = self._jb.due
        deadline = None if due == inf else due
        if self._gaps:
            for source in self._sources.values():
                if source.pending:
                    t = _oldest(source) + self._window
                    deadline = t if deadline is None else min(deadline, t)
        current = self._current
        if current is not None and not current.ended:
            t = current.last_arrival + self._timeout
            deadline = t if deadline is None else min(deadline, t)
        return deadline

    def next_event(self) -> KeyHeard | None:
        """The next key heard, oldest first, or ``None``."""
        return self._out.popleft() if self._out else None

    def flush(self, now: float) -> None:
        """Release everything held: pending packets, the active event, a digit still sounding."""
        self._play(self._jb.flush(), now)
        for source in list(self._sources.values()):
            while source.pending:
                self._give_up_gap(source)
        current = self._current
        if current is not None and not current.ended:
            self.stats.event_timeouts += 1
            self._finish(current)
        if self._sink is not None:
            self._sink.flush()

    def close(self, now: float) -> None:
        """Flush, and give an in-band bank channel back. Later datagrams are still counted."""
        if self._closed:
            return
        self.flush(now)
        if self._sink is not None:
            self._sink.close()
            self._sink = None
        self._closed = True

    # -- ordering -------------------------------------------------------------------------------
    def _source_of(self, ssrc: int, seq: int) -> _Source:
        source = self._sources.get(ssrc)
        if source is not None:
            self._sources.move_to_end(ssrc)
            return source
        if len(self._sources) >= _MAX_SOURCES:
            _, old = self._sources.popitem(last=False)
            while old.pending:
                self._give_up_gap(old)
        source = _Source(ssrc, seq, {})
        self._sources[ssrc] = source
        return source

    def _order(
        self,
        source: _Source,
        delta: int,
        ts: int,
        payload: bytes,
        event: TelephoneEvent | None,
        now: float,
    ) -> bool:
        """Put a packet out of order in its place; ``False`` for a duplicate."""
        stats = self.stats
        if delta < -MAX_MISORDER or delta > MAX_DROPOUT:  # the sender restarted its numbering
            while source.pending:
                self._give_up_gap(source)
            source.expected += delta
            source.received = 0
            delta = 0
        ext = source.expected + delta
        if delta < 0:
            behind = -delta - 1
            if behind < _RECENT and source.received >> behind & 1:
                stats.duplicate += 1
                return False
            stats.reordered += 1
            if behind < _RECENT:
                source.received |= 1 << behind
            if event is None:  # the jitter buffer tells whether it is still in time
                stats.audio += 1
            else:
                self._on_event(source.ssrc, ts, event, now)
            return True
        pending = source.pending
        if ext in pending:
            stats.duplicate += 1
            return False
        if pending and max(pending) > ext:  # a later packet came first
            stats.reordered += 1
        pending[ext] = (ts, payload, event, now)
        self._gaps = True
        if delta == 0:
            self._drain(source)
        elif len(pending) > MAX_PENDING:
            self._give_up_gap(source)
        return True

    def _give_up_gap(self, source: _Source) -> None:
        """Skip the missing packets before the oldest pending one and release what follows."""
        first = min(source.pending)
        missing = first - source.expected
        self.stats.lost += missing
        source.expected = first
        source.received = (source.received << missing) & _RECENT_MASK
        self._drain(source)

    def _drain(self, source: _Source) -> None:
        pending = source.pending
        ssrc = source.ssrc
        while source.expected in pending:
            ts, payload, event, arrival = pending.pop(source.expected)
            source.expected += 1
            source.received = ((source.received << 1) | 1) & _RECENT_MASK
            if event is None:
                self._on_audio(ssrc, ts, payload, arrival)
            else:
                self._on_event(ssrc, ts, event, arrival)

    # -- events ---------------------------------------------------------------------------------
    def _on_event(self, ssrc: int, ts: int, ev: TelephoneEvent, arrival: float) -> None:
        stats = self.stats
        if ev.event > FLASH_EVENT:
            stats.unknown_event += 1
            return
        ident = (ssrc, ts, ev.event)
        state = self._events.get(ident)
        if state is None:
            current = self._current
            if current is not None and current.ssrc == ssrc:
                since = ((ts - current.seg_ts + 0x80000000) & _U32) - 0x80000000
                if since < 0:  # older than the event in progress: a stale straggler
                    stats.too_late += 1
                    return
                if (
                    not current.ended
                    and current.event == ev.event
                    and max(current.seg_dur, MAX_DURATION - _SEGMENT_SLACK) <= since <= MAX_DURATION
                ):  # the next segment of a long event
                    current.base += since
                    current.seg_ts = ts
                    current.seg_dur = 0
                    state = current
            if state is None:
                if current is not None and not current.ended:
                    stats.events_superseded += 1
                    self._finish(current)
                start = arrival - ev.duration / CLOCK_RATE
                state = _Event(ssrc, ev.event, start, ts, 0, 0, arrival, volume=ev.volume)
                self._current = state
            self._events[ident] = state
            if len(self._events) > _MAX_EVENTS:
                self._events.popitem(last=False)
        stats.events += 1
        if state.ended:
            return
        state.last_arrival = max(state.last_arrival, arrival)
        state.seg_dur = max(state.seg_dur, ev.duration)
        if ev.end:
            self._finish(state)

    def _finish(self, state: _Event) -> None:
        state.ended = True
        end = state.start + (state.base + state.seg_dur) / CLOCK_RATE
        self._history.append((state.start, end))
        key = by_event(state.event).key
        self._emit(KeyHeard(key, "rfc4733", state.start, end, state.ssrc, -float(state.volume)))

    def _emit(self, heard: KeyHeard) -> None:
        if not self._out:
            self._out_since = heard.start
        self.stats.keys += 1
        self._out.append(heard)

    # -- audio ----------------------------------------------------------------------------------
    def _on_audio(self, ssrc: int, ts: int, payload: bytes, arrival: float) -> None:
        """An audio packet in sequence order (its audio took the jitter buffer's way)."""
        self.stats.audio += 1

    def _new_audio_source(self, ssrc: int, now: float) -> None:
        """Audio from a new SSRC: play the old source's out, start the jitter buffer anew."""
        if self._audio_ssrc >= 0:
            jb = self._jb
            self._play(jb.flush(), now)
            jb.restart()
        self._audio_ssrc = ssrc

    def _refill(self, samples: int) -> None:
        """The detector bank is short of audio: play out early what is held in order."""
        played = self._jb.pop_ahead(samples)
        if played:
            self._play(played, self._lag + played[-1].at)

    def _play(self, played: list[Played], now: float) -> None:
        """Hand the audio played out to the detector and the tap, gaps concealed."""
        if not played:
            return
        codec = self._codec
        assert codec is not None
        sink, tap, history = self._sink, self.tap, self._played
        at = 0.0
        for samples, payload, lost, after, at in played:
            codes = payload
            if codes is None:
                if lost:
                    fill = conceal(
                        codec.decode(b"".join(history)[-HISTORY:]),
                        samples,
                        None if after is None else codec.decode(after),
                    )
                    codes = codec.encode(np.clip(np.rint(fill), -32768, 32767).astype(np.int16))
                    self.stats.concealed = self._jb.stats.concealed  # (it counts lost gaps)
                else:
                    codes = codec.silence(samples)
            history.append(codes)
            if sink is not None:
                sink.push(codes, at)
            if tap is not None:
                tap(codes)
        self._lag = now - at

    def sending(self, job: int, keys: str, start: float) -> None:
        """We began sending ``keys`` (job id ``job``) at ``start``: their echo is ignored."""
        self._own[job] = (keys, start, float("inf"))
        for other, (_, _, until) in list(self._own.items()):
            if until < start - 60.0:  # long over
                del self._own[other]

    def sent(self, job: int, end: float) -> None:
        """Our send ``job`` ended at ``end``: its echo is ignored :data:`ECHO_TAIL` longer."""
        own = self._own.get(job)
        if own is not None:
            self._own[job] = (own[0], own[1], end + ECHO_TAIL)

    def tap_detector(self, tap: Callable[[npt.NDArray[np.float32], float], None] | None) -> None:
        """Observe what the in-band detector is fed: float samples and the time (on the clock
        of ``now``) of the first one (a console's spectrogram); ``None`` stops it. Times are
        those of the keys reported: arrival times, the jitter buffer's delay taken off."""
        if self._sink is None:
            return
        if tap is not None and self._banked:  # the bank's clock runs behind by the play-out lag
            inner = tap

            def tap(samples: npt.NDArray[np.float32], at: float) -> None:
                inner(samples, at - self._lag)

        self._sink.set_tap(tap)

    def _on_inband(self, key: str, start: float, end: float, level: float | None = None) -> None:
        if self._banked:  # the bank's clock runs behind by the jitter buffer's play-out lag
            start -= self._lag
            end -= self._lag
        if any(
            key in keys and begin <= end and start <= until
            for keys, begin, until in self._own.values()
        ):
            self.stats.inband_echo += 1
            return
        current = self._current
        guard = self._guard
        if (current is not None and not current.ended) or any(
            s - guard <= end and start <= e + guard for s, e in self._history
        ):
            self.stats.inband_suppressed += 1
            return
        self._emit(KeyHeard(key, "inband", start, end, max(self._audio_ssrc, 0), level))


def _oldest(source: _Source) -> float:
    """Arrival time of the packet that has waited longest in the reorder buffer."""
    return min(held[3] for held in source.pending.values())
