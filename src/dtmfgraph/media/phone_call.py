"""One call of a :class:`~dtmfgraph.media.phone.Phone`: its SIP dialog, its RTP session, and
DTMF both ways (RFC 4733, SIP INFO, in-band)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from dtmfgraph.rtp import AudioJob, DtmfJob, DtmfJobError, InboundStream
from dtmfgraph.rtp import Codec as RtpCodec
from dtmfgraph.rtp.jitter import MIN_DELAY
from dtmfgraph.rtp.rtcp import MIN_INTERVAL, RtcpStats
from dtmfgraph.rtp.srtp import SrtpContext, SrtpError, SrtpKey, SrtpSuite
from dtmfgraph.sip import (
    AudioMedia,
    CallEnded,
    CallEstablished,
    CallFailed,
    CallRinging,
    CallState,
    CryptoAttribute,
    Event,
    InfoDtmf,
    ReInvite,
    RequestCompleted,
    RequestFailed,
    SessionDescription,
    SipError,
    audio_media,
)
from dtmfgraph.sip import Call as SipCall
from dtmfgraph.sip.refer import ReferReceived, TransferProgress
from dtmfgraph.tones import KeypadError, parse_keys

from .audio_io import PcmSink, TapSet, play_audio
from .phone_types import (
    _BYE_WAIT,
    _FOREIGN_SOURCES_LOGGED,
    _GRAPH_DIRECTION,
    _INFO_SENDS,
    INBAND_DRAIN,
    MEDIA_COUNTS,
    SEND_METHODS,
    CallEnd,
    CallEndedError,
    DialError,
    DialTimeoutError,
    DtmfError,
    DtmfResult,
    DtmfSendError,
    EndReason,
    HeardKey,
    HeardMethod,
    SendMethod,
    _rtp_codec,
)
from .recording import CallRecording
from .session import RtpSession, SessionClosedError
from .udp import (
    Address,
    MediaError,
    UdpEndpoint,
    open_rtcp_endpoint,
)

if TYPE_CHECKING:
    from .phone import Phone

logger = logging.getLogger(__name__)


class PhoneCall:
    """One call of a :class:`Phone` (placed by :meth:`Phone.dial` or answered).

    Read ``ended`` (``None`` while the call lives), ``codec``, ``telephone_event_pt``; send
    keys with :meth:`send_dtmf`, hear them with :meth:`keys_heard`, end with :meth:`hangup`.
    """

    def __init__(
        self,
        phone: Phone,
        sip: SipCall,
        direction: Literal["outbound", "inbound"],
        endpoint: UdpEndpoint,
        remote_uri: str,
    ) -> None:
        self.phone = phone
        self.sip = sip
        self.direction = direction
        self.remote_uri = remote_uri
        self.session: RtpSession | None = None
        self.codec: RtpCodec | None = None
        self.telephone_event_pt: int | None = None
        self.srtp_suite: SrtpSuite | None = None
        """The SRTP suite of the call's media (``None``: plain RTP)."""
        self._peer_key: str | None = None
        """The far end's SRTP key (``inline:`` text), to notice a new one in a re-INVITE."""
        self.ended: CallEnd | None = None
        self.last_dtmf: DtmfResult | None = None
        """The outcome of the latest send, also when it was cancelled by asyncio."""
        self._endpoint: UdpEndpoint | None = endpoint
        loop = phone.loop
        self._loop = loop
        self._established: asyncio.Future[None] = loop.create_future()
        self._ended: asyncio.Future[CallEnd] = loop.create_future()
        self._keys: asyncio.Queue[HeardKey | None] = asyncio.Queue()
        self.audio_active = True
        """The far end's SDP has the audio flowing both ways (``False`` while it holds the
        call: ``sendonly``, ``recvonly``, ``inactive`` or address 0.0.0.0)."""
        self._audio: asyncio.Queue[bool | None] = asyncio.Queue()
        self._requests: dict[int, asyncio.Future[int]] = {}
        self._send_lock = asyncio.Lock()
        self._cancel_send = False
        self._foreign_sources: set[Address] = set()
        """Sources of dropped RTP already logged."""
        self._rtp_job: DtmfJob | None = None
        self._hanging_up = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.recording: CallRecording | None = None
        """The far end's audio being written to a WAV file (:meth:`record`)."""
        self._taps = TapSet()
        self._stop_recording: Callable[[], None] | None = None
        self._muted = False
        self.transfer_progress: asyncio.Queue[TransferProgress] = asyncio.Queue()
        self.transferred: asyncio.Future[PhoneCall] = loop.create_future()
        """The call that replaced this one when the far end transferred us (REFER) and we
        followed (the old call is then ended)."""
        """The NOTIFYs about a REFER this call sent (see :mod:`dtmfgraph.media.transfer`)."""

    def __repr__(self) -> str:
        state = str(self.ended) if self.ended else self.sip.state.value
        return f"PhoneCall({self.direction} {self.remote_uri}, {state})"

    # -- state --------------------------------------------------------------------------------
    @property
    def call_id(self) -> str:
        return self.sip.call_id

    @property
    def local_rtp(self) -> Address | None:
        """Our RTP address (host, port)."""
        if self.session is not None:
            return self.session.local_address
        return self._endpoint.local_address if self._endpoint is not None else None

    @property
    def rtcp(self) -> RtcpStats | None:
        """What RTCP says of the call's media (round-trip time, what the far end lost of
        ours, its CNAME) and counts; ``None`` before media starts."""
        return self.session.rtcp_stats if self.session is not None else None

    @property
    def media(self) -> AudioMedia | None:
        """The peer's audio stream as its SDP describes it."""
        return self.sip.media

    @property
    def established(self) -> bool:
        """The dialog is confirmed (and not over)."""
        return self._established.done() and self.ended is None

    def recovery_record(self) -> dict[str, Any] | None:
        """What :meth:`Phone.end_recorded_call` of a later process needs to hang this call
        up if this process dies under it (JSON-safe; keep it with the call's state): ``None``
        until the call is established, and once it is over."""
        return self.phone.ua.call_record(self.sip) if self.ended is None else None

    @property
    def can_send_rfc4733(self) -> bool:
        """telephone-event was negotiated (so ``auto`` means RFC 4733)."""
        return self.telephone_event_pt is not None and self.ended is None

    @property
    def can_send_sipinfo(self) -> bool:
        """The dialog can carry INFO (any live call: the peer may still refuse it)."""
        return self.ended is None and self.sip.state in (CallState.ANSWERED, CallState.ESTABLISHED)

    async def wait_established(self, timeout: float | None = None) -> None:
        """Until the dialog is confirmed (the ACK of our 200 arrived, for calls we answered)."""
        await asyncio.wait_for(asyncio.shield(self._established), timeout)

    async def wait_ended(self, timeout: float | None = None) -> CallEnd:
        """Until the call is over; returns how it ended."""
        return await asyncio.wait_for(asyncio.shield(self._ended), timeout)

    def record(self, path: str | os.PathLike[str]) -> CallRecording:
        """From now until the call ends (or :meth:`stop_recording`), write the far end's audio
        as played out to a 16-bit 8 kHz mono WAV file at ``path``. ``MediaError`` if the call
        has no media yet or is over; ``OSError`` if the file cannot be made."""
        self._check_live("record")
        session = self.session
        if session is None or session.inbound is None or self.codec is None:
            raise MediaError("the call has no media to record yet")
        self.stop_recording()
        recording = CallRecording(path, self.codec, session.inbound.stats)
        self._stop_recording = self._taps.add_codes(recording.push)
        self.recording = recording
        return recording

    def stop_recording(self) -> None:
        """Stop writing the recording (if any) and close its file."""
        recording, self.recording = self.recording, None
        if recording is None:
            return
        if self._stop_recording is not None:
            self._stop_recording()
            self._stop_recording = None
        recording.close()

    def listen(self, sink: PcmSink) -> Callable[[], None]:
        """Hand the far end's audio as played out (int16, 8 kHz, gaps concealed) to ``sink``
        until the returned function is called or the call ends."""
        return self._taps.add_pcm(sink)

    async def play(self, samples: npt.NDArray[np.int16], *, loop: bool = False) -> AudioJob:
        """Play 8 kHz int16 ``samples`` to the far end on the call's RTP stream (after any keys
        queued before them) and return once the last packet has left; cancelling stops the
        audio at the next frame, faded. :class:`CallEndedError` if the call is or goes down."""
        self._check_live("cannot play audio")
        session = self.session
        if session is None:
            raise MediaError("this call has no media stream to play audio in")
        try:
            return await play_audio(session, samples, loop=loop)
        except SessionClosedError:
            end = self.ended or self._end_now(EndReason.ERROR, "media stream closed")
            raise CallEndedError(end, "playing audio") from None

    def _check_live(self, what: str) -> None:
        if self.ended is not None:
            raise CallEndedError(self.ended, what)

    # -- sending DTMF -------------------------------------------------------------------------
    def resolve_method(self, method: SendMethod) -> Literal["rfc4733", "sipinfo", "inband"]:
        """The method ``method`` means in this call (``auto``: RFC 4733 if negotiated, else
        in-band)."""
        if method == "auto":
            return "rfc4733" if self.telephone_event_pt is not None else "inband"
        if method not in SEND_METHODS:
            raise DtmfError(f"unknown DTMF method {method!r}: use {', '.join(SEND_METHODS)}")
        return method

    async def send_dtmf(
        self,
        keys: str,
        *,
        method: SendMethod = "auto",
        tone_ms: int = 100,
        gap_ms: int = 100,
        volume: int = 10,
    ) -> DtmfResult:
        """Press ``keys`` (``0-9 * # A-D``, ``F`` = flash) and return once the last one has left.

        ``rfc4733``: telephone-event packets (needs telephone-event in the SDP). ``sipinfo``:
        one INFO ``application/dtmf-relay`` per key (``Duration`` = ``tone_ms``), each waited
        for (its 200, and ``tone_ms + gap_ms`` before the next key). ``inband``: G.711 tones.
        ``auto``: ``rfc4733`` when telephone-event was negotiated, else ``inband``.

        Sends on one call run one after another. Cancelling the awaiting task, or
        :meth:`cancel_dtmf`, stops at the next key boundary; the result (or ``last_dtmf``)
        tells how many keys were left. Raises :class:`DtmfError` for keys or a method this
        call cannot carry, :class:`CallEndedError` if the call is or goes down (naming why),
        :class:`DtmfSendError` if the peer refuses an INFO.
        """
        resolved = self.resolve_method(method)
        try:
            parsed = parse_keys(keys)
        except KeypadError as exc:
            raise DtmfError(str(exc)) from None
        text = "".join(k.key for k in parsed)
        if resolved == "inband" and any(not k.has_tones for k in parsed):
            raise DtmfError("flash (F) has no tones: it cannot be sent in-band")
        if resolved == "rfc4733" and self.telephone_event_pt is None:
            raise DtmfError("the peer did not accept telephone-event: RFC 4733 is not possible")
        self._check_live("cannot send DTMF")
        async with self._send_lock:
            self._check_live("cannot send DTMF")
            self._cancel_send = False
            if resolved == "sipinfo":
                return await self._send_info(text, tone_ms, gap_ms)
            return await self._send_rtp(text, resolved, tone_ms, gap_ms, volume)

    def cancel_dtmf(self) -> None:
        """Stop the send in progress at its next key boundary (no-op when none runs)."""
        self._cancel_send = True
        job = self._rtp_job
        if job is not None and self.session is not None:
            self.session.cancel(job)

    async def _send_rtp(
        self,
        keys: str,
        method: Literal["rfc4733", "inband"],
        tone_ms: int,
        gap_ms: int,
        volume: int,
    ) -> DtmfResult:
        session = self.session
        if session is None:
            raise DtmfError("this call has no media stream to send keys in")
        try:
            sending = session.start_dtmf(
                keys, method=method, tone_ms=tone_ms, gap_ms=gap_ms, volume=volume
            )
        except DtmfJobError as exc:
            raise DtmfError(str(exc)) from None
        except SessionClosedError:
            self._check_live("cannot send DTMF")
            raise
        job = sending.job
        self._rtp_job = job
        try:
            await asyncio.shield(sending.done)
        except asyncio.CancelledError:
            session.cancel(job)  # a key already sounding is finished: count it once it is
            provisional = self._record_rtp(job, method)

            def settle(_: object) -> None:
                if self.last_dtmf is provisional:
                    self._record_rtp(job, method)

            sending.done.add_done_callback(settle)
            raise
        except SessionClosedError:
            end = self.ended or self._end_now(EndReason.ERROR, "media stream closed")
            raise CallEndedError(
                end,
                f"sending {keys!r} stopped after {job.keys_sent} key(s)",
                keys_sent=job.keys_sent,
                keys_left=job.keys_left,
            ) from None
        finally:
            self._rtp_job = None
        return self._record_rtp(job, method)

    def _record_rtp(self, job: DtmfJob, method: Literal["rfc4733", "inband"]) -> DtmfResult:
        now = self._loop.time()
        result = DtmfResult(
            job.keys,
            method,
            job.keys_sent,
            job.keys_left,
            job.cancelled,
            job.started_at if job.started_at is not None else job.queued_at,
            job.finished_at if job.finished_at is not None else now,
            tuple(job.key_times),
        )
        self.last_dtmf = result
        return result

    async def _send_info(self, keys: str, tone_ms: int, gap_ms: int) -> DtmfResult:
        if not 1 <= tone_ms <= 600_000 or not 0 <= gap_ms <= 600_000:
            raise DtmfError("tone_ms must be 1..600000 and gap_ms 0..600000")
        loop = self._loop
        started = loop.time()
        sent = 0
        cancelled = False
        left_at: list[float] = []
        # a gateway may play our INFO keys into a line that echoes: not the far end's keys
        inbound = self.session.inbound if self.session is not None else None
        echo_id = -next(_INFO_SENDS)  # apart from the RTP jobs' ids
        if inbound is not None:
            inbound.sending(echo_id, keys, started)

        def record() -> DtmfResult:
            now = loop.time()
            result = DtmfResult(
                keys, "sipinfo", sent, len(keys) - sent, cancelled, started, now,
                tuple(left_at[:sent]),
            )  # fmt: skip
            self.last_dtmf = result
            if inbound is not None:
                inbound.sent(echo_id, now + tone_ms / 1000)
            return result

        try:
            for index, key in enumerate(keys):
                if self._cancel_send:
                    cancelled = True
                    break
                self._check_live("cannot send DTMF")
                key_start = loop.time()
                try:
                    request_id = self.phone.ua.send_info_dtmf(self.sip, key, tone_ms, key_start)
                except SipError as exc:
                    end = self.ended or self._end_now(EndReason.ERROR, str(exc))
                    raise CallEndedError(end, "INFO not possible") from None
                answer: asyncio.Future[int] = loop.create_future()
                self._requests[request_id] = answer
                self.phone.transport.kick()
                left_at.append(key_start)
                sent += 1  # the key has left; a refusal takes it back
                try:
                    status = await answer
                finally:
                    self._requests.pop(request_id, None)
                if status >= 300:
                    sent -= 1
                    record()
                    raise DtmfSendError(
                        f"INFO for key {key!r} refused: {status}",
                        status=status,
                        keys_sent=sent,
                        keys_left=len(keys) - sent,
                    )
                if index + 1 < len(keys):
                    await self._sleep_until(key_start + (tone_ms + gap_ms) / 1000)
        except asyncio.CancelledError:
            cancelled = True
            record()
            raise
        except CallEndedError as exc:
            record()
            raise CallEndedError(
                exc.end,
                f"sending {keys!r} by SIP INFO stopped after {sent} key(s)",
                keys_sent=sent,
                keys_left=len(keys) - sent,
            ) from None
        return record()

    async def _sleep_until(self, when: float) -> None:
        delay = when - self._loop.time()
        if delay <= 0:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._ended), delay)
        except TimeoutError:
            return
        assert self.ended is not None
        raise CallEndedError(self.ended)

    # -- hearing DTMF -------------------------------------------------------------------------
    async def audio_changes(self) -> AsyncIterator[bool]:
        """:attr:`audio_active` each time it changes (the far end holds or resumes the call),
        until the call is over. One consumer at a time."""
        while True:
            item = await self._audio.get()
            if item is None:
                self._audio.put_nowait(None)
                return
            yield item

    @property
    def audio_direction(self) -> str:
        """The far end's audio direction as its SDP says, in Graph's words (``sendReceive``,
        ``sendOnly``, ``receiveOnly``, ``inactive``; address 0.0.0.0 is ``inactive``)."""
        media = self.sip.media
        if media is None:
            return "sendReceive"
        if media.address in ("0.0.0.0", "::") or media.port == 0:
            return "inactive"
        return _GRAPH_DIRECTION.get(media.direction.value, "sendReceive")

    @property
    def muted(self) -> bool:
        """The audio we play (prompts, :meth:`play`) goes out as silence; DTMF keys, in-band
        ones too, still go out, and RTP keeps flowing."""
        return self._muted

    @muted.setter
    def muted(self, muted: bool) -> None:
        self._muted = bool(muted)
        if self.session is not None:
            self.session.muted = self._muted

    def _note_audio(self) -> None:
        media = self.sip.media
        if media is None:
            return
        active = media.flowing
        if active != self.audio_active:
            self.audio_active = active
            self._audio.put_nowait(active)

    async def keys_heard(self) -> AsyncIterator[HeardKey]:
        """Every key heard in this call, once each, in order, until the call is over.

        One consumer at a time: keys are delivered to whoever iterates.
        """
        while True:
            item = await self._keys.get()
            if item is None:
                self._keys.put_nowait(None)  # a later iterator ends too
                return
            yield item

    async def next_key(self, timeout: float | None = None) -> HeardKey:
        """The next key heard (``TimeoutError`` after ``timeout``; :class:`CallEndedError` when
        the call is over and every key was taken)."""
        item = await asyncio.wait_for(self._keys.get(), timeout)
        if item is None:
            self._keys.put_nowait(None)
            assert self.ended is not None
            raise CallEndedError(self.ended, "no more keys")
        return item

    def _heard(
        self,
        key: str,
        method: HeardMethod,
        start: float,
        duration: float | None,
        level: float | None = None,
    ) -> None:
        wall = time.time() - (self._loop.time() - start)
        self._keys.put_nowait(HeardKey(key, method, wall, start, duration, level))

    async def _forward_keys(self, session: RtpSession) -> None:
        async for heard in session.keys():
            self._heard(heard.key, heard.method, heard.start, heard.duration, heard.level_dbm0)
        self._keys.put_nowait(None)

    # -- hanging up ---------------------------------------------------------------------------
    async def hangup(self, timeout: float = _BYE_WAIT) -> CallEnd:
        """End the call (BYE; CANCEL or 603 before it is set up) and return how it ended.

        Returns at once if it is already over; waits at most ``timeout`` for the far end.
        """
        if self.ended is not None:
            return self.ended
        self._hanging_up = True
        ua = self.phone.ua
        try:
            ua.hangup(self.sip, self._loop.time())
        except SipError as exc:
            logger.debug("hangup of %s: %s", self.call_id, exc)
        self.phone.transport.kick()
        if self.sip.is_over and self.ended is None:
            self._finish(EndReason.LOCAL_BYE, "hung up", by_remote=False)
        try:
            return await self.wait_ended(timeout)
        except TimeoutError:
            return self._end_now(EndReason.LOCAL_BYE, "hung up (no answer to BYE)")

    def _end_now(self, reason: EndReason, detail: str) -> CallEnd:
        self._finish(reason, detail, by_remote=False)
        assert self.ended is not None
        return self.ended

    # -- driven by the phone ------------------------------------------------------------------
    def _on_event(self, event: Event) -> None:
        if isinstance(event, CallEstablished):
            self._on_established(event.sdp)
        elif isinstance(event, CallRinging):
            logger.debug("%s: %d %s", self.call_id, event.status, event.reason)
        elif isinstance(event, CallFailed):
            self._on_failed(event)
        elif isinstance(event, CallEnded):
            self._on_ended(event)
        elif isinstance(event, InfoDtmf):
            duration = event.duration_ms / 1000 if event.duration_ms is not None else None
            self._heard(event.key, "sipinfo", self._loop.time(), duration)
        elif isinstance(event, (RequestCompleted, RequestFailed)):
            self._answer_request(event.request_id, event.status)
        elif isinstance(event, ReInvite):
            self._on_reinvite()
        elif isinstance(event, TransferProgress):
            self.transfer_progress.put_nowait(event)
        elif isinstance(event, ReferReceived):
            self.phone._on_refer(self, event)

    def _answer_request(self, request_id: int, status: int) -> None:
        future = self._requests.get(request_id)
        if future is not None and not future.done():
            future.set_result(status)

    def _on_established(self, sdp: SessionDescription | None) -> None:
        if self.session is None and self.ended is None:
            try:
                self._start_media()
            except (MediaError, ValueError) as exc:
                logger.warning("%s: no media: %s", self.call_id, exc)
                if not self._established.done():
                    error = DialError(self.remote_uri, 488, "Not Acceptable Here", str(exc))
                    self._established.set_exception(error)
                    self._established.exception()
                self._hangup_soon(EndReason.ERROR, f"media setup failed: {exc}")
                return
        elif self.session is not None and sdp is not None:
            self._on_reinvite()  # an answer in the ACK (offerless INVITE)
        if not self._established.done():
            self._established.set_result(None)

    def _on_reinvite(self) -> None:
        self._note_audio()
        media = self.sip.media
        session = self.session
        if media is None or session is None or session.closed or media.port == 0:
            return
        remote = (media.address, media.port)
        if remote != session.remote and not media.on_hold:
            try:
                session.set_remote(remote)
                session.set_rtcp_remote(media.rtcp_address if media.rtcp is not None else None)
            except MediaError as exc:  # the UA lets none through; never resolve, never raise
                logger.warning("%s: unusable media address: %s", self.call_id, exc)
                self._hangup_soon(EndReason.ERROR, f"unusable media address: {exc}")
                return
        if session.srtp_receive is not None and self.srtp_suite is not None:
            theirs = next((c for c in media.crypto if not c.extra), None)
            if theirs is not None and theirs.inline != self._peer_key:
                key = SrtpKey.from_inline(self.srtp_suite, theirs.inline)  # a new key
                session.srtp_receive = SrtpContext(key)
                self._peer_key = theirs.inline

    def _srtp(
        self, local: AudioMedia | None, remote: AudioMedia
    ) -> tuple[SrtpContext, SrtpContext] | None:
        """The send and receive contexts when both SDPs agreed on SRTP (RFC 4568: each side
        sends with the key it announced); ``None`` for plain RTP; ``MediaError`` when our SRTP
        offer was answered without a key."""
        if local is None or not local.crypto:
            return None
        usable = [c for c in remote.crypto if not c.extra]
        if self.direction == "outbound":  # the answer took one of our offered lines
            if not usable:
                if "SAVP" in local.proto.upper():
                    raise MediaError("the answer to our SRTP offer carries no key (a=crypto)")
                return None
            theirs: CryptoAttribute | None = usable[0]
            ours = next((c for c in local.crypto if c.tag == usable[0].tag), None)
        else:  # we answered one of the offered lines
            ours = local.crypto[0]
            theirs = next((c for c in usable if c.tag == ours.tag), None)
        suite = SrtpSuite.named(ours.suite) if ours is not None else None
        if ours is None or theirs is None or suite is None:
            raise MediaError("SRTP: the crypto lines of offer and answer do not match")
        if SrtpSuite.named(theirs.suite) is not suite:
            raise MediaError(f"SRTP: suites differ ({ours.suite}, {theirs.suite})")
        try:
            send = SrtpContext(SrtpKey.from_inline(suite, ours.inline))
            receive = SrtpContext(SrtpKey.from_inline(suite, theirs.inline))
        except SrtpError as exc:
            raise MediaError(f"SRTP: {exc}") from None
        self.srtp_suite = suite
        self._peer_key = theirs.inline
        return send, receive

    def _start_media(self) -> None:
        """Make the RTP session once both SDPs are known (negotiated codec and event PT)."""
        endpoint = self._endpoint
        if endpoint is None:
            raise MediaError("no RTP socket")
        local = audio_media(self.sip.local_sdp) if self.sip.local_sdp is not None else None
        remote = self.sip.media
        if remote is None:
            raise MediaError("the peer's SDP has no usable audio stream")
        if self.direction == "outbound":
            codec = _rtp_codec(remote.codec)  # the answerer's choice
            event_pt = remote.telephone_event_pt
        else:
            codec = _rtp_codec(local.codec if local is not None else None)
            event_pt = local.telephone_event_pt if local is not None else None
        if codec is None:
            raise MediaError(f"no G.711 codec negotiated (peer chose {remote.codec})")
        if event_pt == codec.payload_type:
            event_pt = None
        phone = self.phone
        bank = phone.banks.bank() if phone.banks is not None else None
        inbound = InboundStream(
            codec=codec,
            event_pt=event_pt,
            inband=True,
            bank=bank,
            max_delay=max(phone.jitter_max_delay, MIN_DELAY),
        )
        target = None if remote.on_hold or remote.port == 0 else (remote.address, remote.port)
        mux = bool(phone.rtcp_interval) and local is not None and local.rtcp_mux and remote.rtcp_mux
        rtcp = open_rtcp_endpoint(endpoint) if phone.rtcp_interval and not mux else None
        session = RtpSession(
            phone.pacer,
            endpoint,
            codec=codec,
            event_pt=event_pt,
            inbound=inbound,
            remote=target,
            latch=target is None,
            strict=phone.strict_rtp,
            srtp=self._srtp(local, remote),
            rng=phone.rng,
            rtcp=rtcp,
            rtcp_remote=remote.rtcp_address if remote.rtcp is not None else None,
            rtcp_interval=phone.rtcp_interval or MIN_INTERVAL,
            cname=phone.cname,
            rtcp_mux=mux,
        )
        session.on_foreign = self._on_foreign_rtp
        session.muted = self._muted
        session.on_moved = self._on_rtp_moved
        self._taps.attach(inbound, codec)
        self._endpoint = None
        self.session = session
        self.codec = codec
        self.telephone_event_pt = event_pt
        self.audio_active = remote.flowing
        self._spawn(self._forward_keys(session))
        if phone.media_timeout:
            self._spawn(self._watch_media(session, phone.media_timeout))

    def _on_rtp_moved(self, source: Address) -> None:
        """The far end's stream moved to ``source`` mid-call (its NAT rebound): followed."""
        self.phone.rtp_moved += 1
        logger.info(
            "%s: the far end's RTP moved to %s:%d (a NAT rebinding?); following it",
            self.call_id,
            source[0],
            source[1],
        )

    def _on_foreign_rtp(self, source: Address) -> None:
        """A datagram from a stranger was dropped (strict RTP): count it; log each source once."""
        self.phone.rtp_foreign_dropped += 1
        seen = self._foreign_sources
        if source in seen or len(seen) >= _FOREIGN_SOURCES_LOGGED:
            return
        seen.add(source)
        guard = self.session.guard if self.session is not None else None
        media = guard.source or guard.expected if guard is not None else None
        logger.warning(
            "%s: dropped RTP from %s:%d: the call's media comes from %s (strict RTP)",
            self.call_id,
            source[0],
            source[1],
            f"{media[0]}:{media[1]}" if media else "an address not known yet",
        )

    async def _watch_media(self, session: RtpSession, timeout: float) -> None:
        """Hang up when the far end has sent no RTP for ``timeout`` seconds, unless its SDP
        holds the call (``sendonly``, ``recvonly``, ``inactive`` or address 0.0.0.0: silence may
        be meant); the clock restarts when the hold ends."""
        step = min(1.0, timeout / 4.0)
        while self.ended is None and not session.closed:
            await asyncio.sleep(step)
            if self.ended is not None or session.closed:
                return
            now = self._loop.time()
            media = self.sip.media
            if media is not None and (media.on_hold or not media.direction.sends):
                session.last_heard = now  # held: silence is expected, and starts anew after
                continue
            silent = now - session.last_heard
            if silent >= timeout:
                logger.warning("%s: no RTP for %.1f s: hanging up", self.call_id, silent)
                self.phone.media_timeouts += 1
                self._hangup_soon(
                    EndReason.MEDIA_TIMEOUT, f"no RTP from the far end for {silent:.1f} s"
                )
                return

    def _on_failed(self, event: CallFailed) -> None:
        reason = EndReason.TIMEOUT if event.timed_out else EndReason.REJECTED
        if self._hanging_up and not event.timed_out:
            reason = EndReason.LOCAL_BYE
        error_cls = DialTimeoutError if event.timed_out else DialError
        error = error_cls(
            self.remote_uri,
            event.status,
            event.reason,
            event.detail,
            timed_out=event.timed_out,
            unanswered=event.unanswered,
        )
        if not self._established.done():
            self._established.set_exception(error)
            self._established.exception()
        detail = f"{event.status} {event.reason}" + (f" ({event.detail})" if event.detail else "")
        self._finish(reason, detail, by_remote=not event.timed_out, status=event.status)

    def _on_ended(self, event: CallEnded) -> None:
        text = event.reason
        if event.by_remote:
            if text == "cancelled":
                reason, detail = EndReason.CANCELLED, "the caller cancelled"
            elif text == "BYE":
                reason, detail = EndReason.REMOTE_BYE, "the far end hung up (BYE)"
            else:
                reason, detail = EndReason.ERROR, text
        elif text == "no ACK":
            reason, detail = EndReason.TIMEOUT, "no ACK for our 200 OK"
        elif self._hanging_up:
            reason, detail = EndReason.LOCAL_BYE, "hung up"
        else:
            reason, detail = EndReason.ERROR, text
        if not self._established.done():
            error = CallEndedError(
                CallEnd(reason, detail, event.by_remote, time.time()), "call setup"
            )
            self._established.set_exception(error)
            self._established.exception()
        self._finish(reason, detail, by_remote=event.by_remote)

    def _hangup_soon(self, reason: EndReason, detail: str) -> None:
        """Send BYE (or CANCEL / 603) now, without waiting for the answer, and end the call."""
        with contextlib.suppress(SipError):
            self.phone.ua.hangup(self.sip, self._loop.time())
        self.phone.transport.kick()  # the UA only queues the request: send it now
        self._finish(reason, detail, by_remote=False)

    def _finish(
        self, reason: EndReason, detail: str, *, by_remote: bool, status: int | None = None
    ) -> None:
        """Record the end once, fail what waits on the call, release its media."""
        if self.ended is not None:
            return
        end = CallEnd(reason, detail, by_remote, time.time(), status)
        self.ended = end
        self._ended.set_result(end)
        for future in self._requests.values():
            if not future.done():
                future.set_exception(CallEndedError(end))
                future.exception()
        self._requests.clear()
        if not self._established.done():
            self._established.set_exception(CallEndedError(end, "call setup"))
            self._established.exception()
        self.phone._forget(self)
        self.stop_recording()
        self._audio.put_nowait(None)
        session, endpoint = self.session, self._endpoint
        self._endpoint = None
        if session is not None:
            # its key forwarder then ends the key stream; after a remote hang-up, keep hearing
            # briefly so an in-band key that ended just before the BYE is still reported
            self._spawn(self._close_session(session, INBAND_DRAIN if by_remote else 0.0))
        else:
            self._keys.put_nowait(None)
            if endpoint is not None:
                self._spawn(endpoint.close())

    async def _close_session(self, session: RtpSession, drain: float) -> None:
        await session.close(drain=drain)
        rtcp = session.rtcp_stats
        self.phone._count_rtcp(rtcp)
        if rtcp.rtt is not None:
            self.phone.ended_rtts.append(rtcp.rtt)
        stats = session.stats
        if stats is not None:
            for name in MEDIA_COUNTS:
                self.phone.media_totals[name] += getattr(stats, name)
            far = f"; {rtcp.far_end()}" if rtcp.received else ""
            logger.info(
                "%s: media: RTP %d received, %d lost, %d late, %d reordered, %d concealed, "
                "jitter %.1f ms%s",
                self.call_id,
                stats.received,
                stats.lost,
                stats.late,
                stats.reordered,
                stats.concealed,
                stats.jitter_ms,
                far,
            )

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        self.phone._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(self.phone._tasks.discard)

    async def _drain(self) -> None:
        """Wait for the call's background work (media close, key forwarding) to finish."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
