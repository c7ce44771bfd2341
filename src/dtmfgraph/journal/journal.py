"""``Journal``: what happened in each call, to the millisecond, for the console.

It is fed by the layers' observer hooks, wired by the app (``dtmfgraph.api.app``):

* the service's :class:`~dtmfgraph.service.hooks.CallTap` (state changes and operations once
  committed, operations accepted, each key sent with the time it left the media layer, each key
  heard with its transport and level, the media attached);
* the SIP transport's tap (every message in and out, with its peer and transport), linked to a
  call by its Call-ID (an INVITE we send is linked to the call whose dial runs in that task);
* the outbox dispatcher's tap (each delivery attempt: status, latency, body);
* the media itself: the in-band detector's input (for the spectrogram) and RTCP figures, read
  every ``sample_s`` seconds while the call lives.

Limits (memory only; nothing here is written to disk): ``max_calls`` journals (the oldest ended
call is dropped first), ``max_entries`` entries per call (the oldest dropped, counted),
``max_audio_calls`` calls with audio kept, ``audio_seconds`` of audio each. A restart starts
empty; the calls, operations and notifications stay in the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from ..notify.outbox import DeliveryAttempt
from ..notify.participants import participants_json
from ..service.hooks import DIALLING
from ..service.media import IncomingCall, KeyHeardInfo, MediaCall
from ..service.model import Event, EventKind, Operation
from ..store.journals import JournalStore
from ..store.sql import unavailable
from .audio import AudioRing
from .live import Hub
from .sipsummary import summarize

log = logging.getLogger(__name__)

MAX_BODY: Final = 16384
"""Characters of a notification body kept per delivery attempt."""
_UNLINKED_DIALOGS: Final = 64
_UNLINKED_MESSAGES: Final = 32
FRAME: Final = 160
"""Samples of one 20 ms frame at 8 kHz (what an RFC 4733 event packet stands in for)."""


@dataclass(slots=True)
class CallJournal:
    call_id: str
    tenant_id: str | None = None
    app_id: str | None = None
    entries: deque[dict[str, Any]] = field(default_factory=deque)
    dropped: int = 0
    state: str | None = None
    ended_at: float | None = None
    methods: set[str] = field(default_factory=set)
    audio: AudioRing | None = None
    """The far end's audio, as the in-band detector was fed it."""
    audio_out: AudioRing | None = None
    """Our audio, as the RTP we sent carried it (RFC 4733 events as silence)."""
    media: MediaCall | None = None
    rtcp_seen: int = -1
    sip_ids: set[str] = field(default_factory=set)
    saved_seq: int = 0
    """The last entry written to the store (``0``: none)."""

    @property
    def ended(self) -> bool:
        return self.ended_at is not None


def roster_of(call: dict[str, Any]) -> list[dict[str, Any]]:
    """Who is on a call, as the ``participants`` notification says it, in short: each
    participant's name (the identity's display name or id), whether it is muted, and its
    media direction."""
    out = []
    for p in participants_json(call):
        identity = p["info"]["identity"]
        names = [
            v.get("displayName") or v.get("id")
            for k, v in identity.items()
            if not k.startswith("@") and isinstance(v, dict)
        ]
        [stream] = p["mediaStreams"]
        out.append(
            {
                "who": next((n for n in names if n), "unknown"),
                "muted": p["isMuted"],
                "direction": stream["direction"],
            }
        )
    return out


class Journal:
    """The per-call journals of this node (see the module). Implements ``CallTap``."""

    def __init__(
        self,
        *,
        max_calls: int = 500,
        max_entries: int = 2000,
        max_audio_calls: int = 16,
        audio_seconds: float = 120.0,
        sample_s: float = 2.0,
        store: JournalStore | None = None,
        save_after_s: float = 5.0,
    ) -> None:
        self.store = store
        """Where ended calls' journals are saved (``None``: memory only)."""
        self.save_after_s = save_after_s
        """How long after its end a call's journal is saved (its last messages and first
        delivery attempts come in then); later entries are saved when it leaves memory."""
        self._saving: set[asyncio.Task[None]] = set()
        self.max_calls = max_calls
        self.max_entries = max_entries
        self.max_audio_calls = max_audio_calls
        self.audio_seconds = audio_seconds
        self.sample_s = sample_s
        self.hub = Hub()
        self._calls: OrderedDict[str, CallJournal] = OrderedDict()
        self._by_sip: dict[str, str] = {}
        self._unlinked: OrderedDict[str, deque[dict[str, Any]]] = OrderedDict()
        self._seq = itertools.count(1)
        self._task: asyncio.Task[None] | None = None

    # --- reading ----------------------------------------------------------------------------
    def get(self, call_id: str) -> CallJournal | None:
        return self._calls.get(call_id)

    def entries(self, call_id: str, after: int = 0) -> list[dict[str, Any]]:
        """The call's entries with a sequence number above ``after``, oldest first."""
        journal = self._calls.get(call_id)
        if journal is None:
            return []
        return [e for e in journal.entries if e["seq"] > after]

    async def saved_or_live(self, call_id: str, after: int = 0) -> tuple[list[dict[str, Any]], int]:
        """The call's entries (and how many were dropped): from memory, else as saved."""
        journal = self._calls.get(call_id)
        if journal is not None or self.store is None:
            return self.entries(call_id, after), journal.dropped if journal else 0
        found = await self.store.load(call_id)
        if found is None:
            return [], 0
        entries, dropped = found
        return [e for e in entries if int(e.get("seq", 0)) > after], dropped

    # --- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._sample_forever())

    async def close(self) -> None:
        """Stop; save what ended calls added since they were saved (the caller bounds it)."""
        self.hub.close()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for journal in self._calls.values():
            self._stop_audio(journal)
        for pending in list(self._saving):
            pending.cancel()
        for journal in list(self._calls.values()):
            if journal.ended:
                await self._save(journal)

    async def _save(self, journal: CallJournal) -> None:
        store = self.store
        if store is None or journal.app_id is None or journal.ended_at is None:
            return
        if not journal.entries or journal.entries[-1]["seq"] <= journal.saved_seq:
            return
        last = journal.entries[-1]["seq"]
        try:
            await store.save(
                journal.call_id,
                journal.tenant_id or "",
                journal.app_id,
                journal.ended_at,
                list(journal.entries),
                journal.dropped,
            )
        except Exception as exc:
            if not unavailable(exc):  # an outage is logged once, by the store's health
                log.exception("journal: saving the journal of %s failed", journal.call_id)
            return
        journal.saved_seq = last

    def _save_soon(self, journal: CallJournal, delay: float) -> None:
        if self.store is None:
            return

        async def later() -> None:
            await asyncio.sleep(delay)
            await self._save(journal)

        task = asyncio.ensure_future(later())
        self._saving.add(task)
        task.add_done_callback(self._saving.discard)

    # --- writing ----------------------------------------------------------------------------
    def _journal(self, call_id: str) -> CallJournal:
        journal = self._calls.get(call_id)
        if journal is None:
            journal = CallJournal(call_id)
            self._calls[call_id] = journal
            if len(self._calls) > self.max_calls:
                self._evict()
        return journal

    def _evict(self) -> None:
        victim = next((j for j in self._calls.values() if j.ended), None)
        if victim is None:
            victim = next(iter(self._calls.values()))
        del self._calls[victim.call_id]
        self._stop_audio(victim)
        if victim.ended:
            self._save_soon(victim, 0.0)  # what came after it was saved
        for sip_id in victim.sip_ids:
            self._by_sip.pop(sip_id, None)

    def add(self, call_id: str, kind: str, at: float | None = None, **data: Any) -> dict[str, Any]:
        """Append an entry to the call's journal and tell the watchers."""
        journal = self._journal(call_id)
        entry = {"seq": next(self._seq), "at": time.time() if at is None else at, "kind": kind}
        entry.update(data)
        self._append(journal, entry)
        return entry

    def _append(self, journal: CallJournal, entry: dict[str, Any]) -> None:
        journal.entries.append(entry)
        if len(journal.entries) > self.max_entries:
            journal.entries.popleft()
            journal.dropped += 1
        if journal.app_id is not None:
            self.hub.publish(
                {
                    "type": "entry",
                    "call": journal.call_id,
                    "tenant": journal.tenant_id,
                    "app": journal.app_id,
                    "entry": entry,
                }
            )

    # --- CallTap ----------------------------------------------------------------------------
    def committed(self, events: list[Event], app_ids: list[str]) -> None:
        for i, event in enumerate(events):
            journal = self._journal(event.call_id)
            if journal.app_id is None:
                journal.tenant_id = str(event.call.get("tenantId") or "") or None
                journal.app_id = app_ids[i]
            call = event.call
            if event.kind is EventKind.OPERATION_DELETED and event.operation is not None:
                op = event.operation
                self.add(
                    event.call_id,
                    "operation",
                    id=op.get("id"),
                    operation=op.get("kind"),
                    status=op.get("status"),
                    completion=op.get("completionReason"),
                    result=op.get("resultInfo"),
                )
            elif event.kind is EventKind.TONE:
                self.add(event.call_id, "tone-notified", tone=call.get("lastTone"))
            elif event.kind is EventKind.ROSTER:
                self.add(event.call_id, "roster", participants=roster_of(call))
            else:
                state = str(call.get("state"))
                changed = state != journal.state
                journal.state = state
                if state == "terminated" and journal.ended_at is None:
                    journal.ended_at = time.time()
                    self._sample(journal)
                    self._stop_audio(journal)
                    journal.media = None
                    self._save_soon(journal, self.save_after_s)
                if changed or event.kind is not EventKind.CALL_UPDATED:
                    self.add(
                        event.call_id,
                        "state",
                        state=state,
                        event=event.kind.value,
                        result=call.get("resultInfo"),
                        held=call.get("audioHeld"),
                    )
            if journal.app_id is not None:
                self.hub.publish(
                    {
                        "type": "call",
                        "call": event.call_id,
                        "tenant": journal.tenant_id,
                        "app": journal.app_id,
                        "state": journal.state,
                    }
                )

    def operation_accepted(self, op: Operation) -> None:
        self.add(
            op.call_id,
            "operation",
            id=op.id,
            operation=op.kind.value,
            status=op.status.value,
            tones=list(op.tones),
            method=op.method.value if op.method else None,
            tone_ms=op.tone_ms,
            delay_ms=op.delay_ms,
            context=op.client_context,
        )

    def key_sent(self, call_id: str, op_id: str, key: str, method: str, at: float) -> None:
        self._journal(call_id).methods.add(method)
        self.add(call_id, "key-sent", at=at, key=key, method=method, op=op_id)

    def key_heard(self, call_id: str, info: KeyHeardInfo) -> None:
        self._journal(call_id).methods.add(info.method)
        self.add(
            call_id,
            "key-heard",
            at=info.time,
            key=info.key,
            method=info.method,
            duration_ms=None if info.duration is None else round(info.duration * 1000, 1),
            level_dbm0=None if info.level_dbm0 is None else round(info.level_dbm0, 1),
        )

    def note(self, call_id: str, kind: str, data: dict[str, Any]) -> None:
        reserved = {"seq", "at", "kind"}
        self.add(call_id, kind, **{k: v for k, v in data.items() if k not in reserved})

    def incoming(self, call_id: str, incoming: IncomingCall) -> None:
        sip_id = getattr(incoming, "sip_call_id", None)
        if isinstance(sip_id, str):
            self._link(sip_id, call_id)

    def media_attached(self, call_id: str, media: MediaCall) -> None:
        journal = self._journal(call_id)
        journal.media = media
        sip_id = getattr(media, "sip_call_id", None)
        if isinstance(sip_id, str):
            self._link(sip_id, call_id)
        phone_call = getattr(media, "call", None)
        info: dict[str, Any] = {
            "rfc4733": media.can_send_rfc4733,
            "sipinfo": media.can_send_sipinfo,
        }
        session = getattr(phone_call, "session", None)
        if phone_call is not None and session is not None:
            codec = getattr(phone_call, "codec", None)
            info["codec"] = getattr(codec, "name", None)
            info["event_pt"] = getattr(phone_call, "telephone_event_pt", None)
            suite = getattr(phone_call, "srtp_suite", None)
            info["srtp"] = getattr(suite, "name", None)
            info["local"] = _addr(getattr(session, "local_address", None))
            info["remote"] = _addr(getattr(session, "remote", None))
            self._start_audio(journal, session, getattr(phone_call, "codec", None))
        self.add(call_id, "media", **info)

    # --- SIP --------------------------------------------------------------------------------
    def sip(self, direction: str, data: bytes, peer: tuple[str, int], transport: str) -> None:
        """The SIP transport's tap."""
        summary = summarize(data)
        sip_id = summary.get("call_id")
        if not isinstance(sip_id, str):
            return  # not a message we can place (counted by the agent as malformed)
        entry = {
            "seq": next(self._seq),
            "at": time.time(),
            "kind": "sip",
            "dir": direction,
            "peer": f"{peer[0]}:{peer[1]}",
            "transport": transport,
            **summary,
        }
        call_id = self._by_sip.get(sip_id)
        if call_id is None and direction == "out" and summary.get("method") == "INVITE":
            call_id = DIALLING.get()
            if call_id is not None:
                self._link(sip_id, call_id)
        if call_id is not None and call_id in self._calls:
            self._append(self._calls[call_id], entry)
            return
        pending = self._unlinked.get(sip_id)
        if pending is None:
            pending = self._unlinked[sip_id] = deque(maxlen=_UNLINKED_MESSAGES)
            while len(self._unlinked) > _UNLINKED_DIALOGS:
                self._unlinked.popitem(last=False)
        pending.append(entry)

    def _link(self, sip_id: str, call_id: str) -> None:
        journal = self._journal(call_id)
        self._by_sip[sip_id] = call_id
        journal.sip_ids.add(sip_id)
        for entry in self._unlinked.pop(sip_id, ()):
            self._append(journal, entry)

    # --- notifications ----------------------------------------------------------------------
    def delivery(self, attempt: DeliveryAttempt) -> None:
        """The outbox dispatcher's tap."""
        self.add(
            attempt.call_id,
            "delivery",
            at=attempt.at,
            notification=attempt.notification_id,
            attempt=attempt.attempt,
            status=attempt.status,
            error=attempt.error,
            ms=round(attempt.seconds * 1000, 1),
            outcome=attempt.outcome,
            uri=attempt.callback_uri,
            body=attempt.body[:MAX_BODY],
            batch=attempt.batch,
            index=attempt.index,
        )

    # --- media: audio and RTCP --------------------------------------------------------------
    def _start_audio(self, journal: CallJournal, session: Any, codec: Any) -> None:
        inbound = getattr(session, "inbound", None)
        if inbound is None or not hasattr(inbound, "tap_detector"):
            return
        live = [j for j in self._calls.values() if j.audio is not None and not j.ended]
        if len(live) >= self.max_audio_calls:
            return
        with_audio = [j for j in self._calls.values() if j.audio is not None]
        for old in with_audio[: max(0, len(with_audio) - 2 * self.max_audio_calls + 1)]:
            old.audio = old.audio_out = None  # keep the audio of the latest calls only
        ring = journal.audio = AudioRing(self.audio_seconds)
        loop = asyncio.get_running_loop()

        def tap(samples: npt.NDArray[Any], at: float) -> None:
            ring.push(samples, at + (time.time() - loop.time()))

        inbound.tap_detector(tap)
        if codec is not None and hasattr(session, "tap_sent"):
            journal.audio_out = AudioRing(self.audio_seconds)
            session.tap_sent(_sent_audio(journal.audio_out, codec))

    def _stop_audio(self, journal: CallJournal) -> None:
        session = getattr(getattr(journal.media, "call", None), "session", None)
        inbound = getattr(session, "inbound", None)
        if inbound is not None and hasattr(inbound, "tap_detector"):
            inbound.tap_detector(None)
        if session is not None and hasattr(session, "tap_sent"):
            session.tap_sent(None)

    async def _sample_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sample_s)
            for journal in list(self._calls.values()):
                if journal.media is not None and not journal.ended:
                    try:
                        self._sample(journal)
                    except Exception:
                        log.exception("journal: sampling the media of %s failed", journal.call_id)

    def _sample(self, journal: CallJournal) -> None:
        """An ``rtcp`` entry when the far end sent a report since the last one."""
        phone_call = getattr(journal.media, "call", None)
        stats = getattr(phone_call, "rtcp", None)
        if stats is None or stats.received == journal.rtcp_seen:
            return
        journal.rtcp_seen = stats.received
        inbound = getattr(getattr(phone_call, "session", None), "stats", None)
        self.add(
            journal.call_id,
            "rtcp",
            reports_in=stats.received,
            reports_out=stats.sent,
            rtt_ms=None if stats.rtt_ms is None else round(stats.rtt_ms, 2),
            far_lost=stats.peer_lost,
            far_fraction_lost=round(stats.peer_fraction_lost, 4),
            far_jitter_ms=round(stats.peer_jitter_ms, 2),
            rtp_in=getattr(inbound, "received", None),
            rtp_lost=getattr(inbound, "lost", None),
            rtp_late=getattr(inbound, "late", None),
            rtp_reordered=getattr(inbound, "reordered", None),
            rtp_concealed=getattr(inbound, "concealed", None),
            jitter_ms=None if inbound is None else round(float(inbound.jitter_ms), 2),
        )


def _sent_audio(ring: AudioRing, codec: Any) -> Callable[[bytes], None]:
    """A tap for the RTP packets we send: audio frames decoded into ``ring`` where the media
    clock puts them (the first packet's send time, then its RTP timestamps: a pacer that wakes
    late and sends several frames at once does not squeeze them); another payload type (an
    RFC 4733 event) as a frame of silence."""
    audio_pt = int(codec.payload_type)
    decode = codec.decode
    silence = np.zeros(FRAME, dtype=np.int16)
    anchor: list[float] = []  # [wall time, RTP timestamp] of the first packet

    def tap(packet: bytes) -> None:
        try:
            if len(packet) < 12:
                return
            ts = int.from_bytes(packet[4:8], "big")
            if not anchor:
                anchor.extend((time.time(), float(ts)))
            since = ((ts - int(anchor[1]) + 0x80000000) & 0xFFFFFFFF) - 0x80000000
            at = anchor[0] + since / 8000
            start = 12 + 4 * (packet[0] & 0x0F)
            if packet[0] & 0x10 and len(packet) >= start + 4:  # a header extension
                start += 4 + 4 * int.from_bytes(packet[start + 2 : start + 4], "big")
            payload = packet[start:]
            if packet[1] & 0x7F == audio_pt and payload:
                ring.push(decode(payload), at)
            else:
                ring.push(silence, at)
        except Exception:  # a tap must never break the send path
            log.debug("journal: an RTP packet of ours could not be decoded", exc_info=True)

    return tap


def _addr(value: object) -> str | None:
    if isinstance(value, tuple) and len(value) == 2:
        return f"{value[0]}:{value[1]}"
    return None
