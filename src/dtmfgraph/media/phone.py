"""A SIP phone: places and answers real calls over UDP, sends and hears DTMF in them.

```python
phone = await Phone.start(sip_host="127.0.0.1", sip_port=5060)
call = await phone.dial("sip:alice@127.0.0.1:5070", timeout=10)
await call.send_dtmf("1234#")                    # method="auto": RFC 4733, else in-band
async for key in call.keys_heard(): ...          # rfc4733 / sipinfo / inband
await call.hangup()
await phone.close()
```

SIP runs on the sans-I/O :class:`~dtmfgraph.sip.UserAgent` behind a
:class:`~dtmfgraph.media.sip_transport.SipTransport`; each call's RTP is an
:class:`~dtmfgraph.media.RtpSession` on the phone's one :class:`~dtmfgraph.media.Pacer`, and
in-band detection runs on shared detector banks (:class:`~dtmfgraph.media.InbandBanks`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import inspect
import itertools
import logging
import os
import random
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt

from dtmfgraph.rtp import AudioJob, DtmfJob, DtmfJobError, InboundStream
from dtmfgraph.rtp import Codec as RtpCodec
from dtmfgraph.rtp.jitter import MAX_DELAY, MIN_DELAY
from dtmfgraph.rtp.rtcp import MIN_INTERVAL, RtcpStats
from dtmfgraph.rtp.srtp import SrtpContext, SrtpError, SrtpKey, SrtpSuite
from dtmfgraph.sip import (
    PCMA,
    PCMU,
    TELEPHONE_EVENT,
    AudioMedia,
    CallEnded,
    CallEstablished,
    CallFailed,
    CallRinging,
    CallState,
    Credentials,
    CryptoAttribute,
    Event,
    IncomingCall,
    InfoDtmf,
    RegistrationEvent,
    ReInvite,
    RequestCompleted,
    RequestFailed,
    SdpNegotiationError,
    SessionDescription,
    SipError,
    SipTimers,
    UserAgent,
    audio_media,
    build_answer,
    build_offer,
)
from dtmfgraph.sip import Call as SipCall
from dtmfgraph.sip import Codec as SdpCodec
from dtmfgraph.sip.acl import SourceAllowlist
from dtmfgraph.sip.digest_server import DigestGuard
from dtmfgraph.sip.grammar import is_ip_address
from dtmfgraph.sip.refer import ReferReceived, TransferProgress
from dtmfgraph.sip.uri import SipUri
from dtmfgraph.tones import KeypadError, parse_keys

from ..refusals import FILE_DESCRIPTORS, RTP_PORTS, Refusals, out_of_fds
from .audio_io import PcmSink, TapSet, play_audio
from .banks import InbandBanks
from .pacer import Pacer
from .recording import CallRecording
from .registration import PhoneRegistration, RegistrationError
from .resolve import ResolveError, SipResolver
from .session import RtpSession, SessionClosedError
from .sip_transport import SipTransport
from .tls import TlsConfig
from .udp import (
    Address,
    MediaError,
    PortRange,
    PortRangeExhaustedError,
    UdpEndpoint,
    bind_udp,
    open_rtcp_endpoint,
    open_udp_endpoint,
)

logger = logging.getLogger(__name__)
MEDIA_COUNTS = ("lost", "late", "reordered", "concealed")
"""The counts of a call's received RTP the phone totals (fields of ``InboundStats``)."""

SrtpPolicy: TypeAlias = Literal["never", "optional", "mandatory"]
"""SRTP with SDES keys (RFC 4568). ``optional``: calls whose signalling goes over TLS offer
SRTP best-effort (crypto lines in ``RTP/AVP``: a peer without SRTP answers plain RTP; over UDP
or TCP nothing is offered, as anyone on the path could read the keys); SRTP offered to us is
taken. ``mandatory``: every call offers ``RTP/SAVP`` and an offer to us without SRTP is
refused (488). ``never``: no SRTP (an ``RTP/SAVP`` offer is refused)."""
SendMethod: TypeAlias = Literal["auto", "rfc4733", "sipinfo", "inband"]
"""How :meth:`PhoneCall.send_dtmf` puts keys into the call (``auto``: see the method)."""
HeardMethod: TypeAlias = Literal["rfc4733", "sipinfo", "inband"]
SEND_METHODS: tuple[SendMethod, ...] = ("auto", "rfc4733", "sipinfo", "inband")
_CODECS = {"PCMU": (PCMU, RtpCodec.PCMU), "PCMA": (PCMA, RtpCodec.PCMA)}
_RESOLVE_WAIT = 5.0
"""Longest wait for the resolver to name a target host's address (within the dial timeout)."""
SERVER_DOWN_S = 60.0
"""For this long after a call left a server (no response, or 503), later calls to a target that
DNS maps to several servers try that one last."""
RTP_FULL_RETRY_AFTER_S = 5
"""``Retry-After`` (seconds) of the 503 a call gets while every RTP port is taken."""
DEFAULT_FAILOVER_AFTER = 4.0
"""Seconds without a single response (the INVITE sent 4 times over UDP) after which a call
goes to the target's next server, when DNS named more than one (RFC 3263 4.3)."""
_BYE_WAIT = 5.0
"""How long :meth:`PhoneCall.hangup` waits for the far end's answer to our BYE (it retries)."""
INBAND_DRAIN = 0.15
"""Seconds a call keeps hearing after the far end hung up: the in-band detector's buffer (40 ms)
plus the silence it needs to end a key (about 40 ms), with margin."""
DEFAULT_MEDIA_TIMEOUT = 30.0
"""Seconds without RTP from the far end after which a call is hung up (``EndReason.
MEDIA_TIMEOUT``). A phone sends a packet every 20 ms, silence included, so half a minute of
nothing means the far end is gone (crashed, unplugged, its NAT binding lost) without a BYE."""
_FOREIGN_SOURCES_LOGGED = 4
"""Strangers' addresses a call logs a dropped packet from (once each; all are counted)."""


# ---------------------------------------------------------------------------------- errors
class PhoneError(MediaError):
    """Base of the errors a :class:`Phone` raises."""


class DialError(PhoneError):
    """A call we placed did not get through: rejected (4xx-6xx), timed out, or never sent."""

    def __init__(
        self,
        uri: str,
        status: int,
        reason: str,
        detail: str = "",
        *,
        timed_out: bool = False,
        unanswered: bool = False,
    ) -> None:
        self.uri = uri
        self.status = status
        self.reason = reason
        self.detail = detail
        self.timed_out = timed_out
        self.unanswered = unanswered
        """Not a single response came from the server tried last."""
        text = f"call to {uri} failed: {status} {reason}".rstrip()
        super().__init__(f"{text} ({detail})" if detail else text)


class DialTimeoutError(DialError, TimeoutError):
    """Nobody answered in time (no final response before the dial timeout or Timer B)."""


class CallEndedError(PhoneError):
    """The call is over (or ended while keys were being sent); ``end`` says how."""

    def __init__(
        self, end: CallEnd, what: str = "", *, keys_sent: int = 0, keys_left: int = 0
    ) -> None:
        self.end = end
        self.keys_sent = keys_sent
        self.keys_left = keys_left
        head = f"{what}: " if what else ""
        super().__init__(f"{head}call ended ({end})")


class DtmfError(PhoneError, ValueError):
    """Keys or a method that cannot be sent in this call (bad key, flash in-band, no RFC 4733)."""


class DtmfSendError(PhoneError):
    """The peer refused a key (a SIP INFO answered with an error, or timed out)."""

    def __init__(self, message: str, *, status: int, keys_sent: int, keys_left: int) -> None:
        super().__init__(message)
        self.status = status
        self.keys_sent = keys_sent
        self.keys_left = keys_left


# ---------------------------------------------------------------------------------- values
class EndReason(enum.StrEnum):
    """Why a call is over."""

    LOCAL_BYE = "local-bye"
    """We hung up (BYE, or CANCEL of a call still ringing)."""
    REMOTE_BYE = "remote-bye"
    """The far end hung up (BYE)."""
    CANCELLED = "cancelled"
    """The caller gave up before we answered (CANCEL)."""
    REJECTED = "rejected"
    """The call never got through: refused with a final error response."""
    TIMEOUT = "timeout"
    """No answer in time (dial timeout, Timer B), or no ACK for our 200 OK."""
    ERROR = "error"
    """The dialog broke (481 Call/Transaction Does Not Exist, ...)."""
    PHONE_CLOSED = "phone-closed"
    """The phone was closed under the call."""
    MEDIA_TIMEOUT = "media-timeout"
    """No RTP from the far end for the phone's ``media_timeout`` (it is gone without a BYE, or
    its media cannot reach us): we hung up."""


@dataclass(frozen=True, slots=True)
class CallEnd:
    """How and when a call ended. ``at`` is wall-clock time (``time.time()``)."""

    reason: EndReason
    detail: str
    by_remote: bool
    at: float
    status: int | None = None

    def __str__(self) -> str:
        text = self.reason.value
        if self.status is not None:
            text += f" {self.status}"
        return f"{text}: {self.detail}" if self.detail else text


@dataclass(frozen=True, slots=True)
class HeardKey:
    """One key heard in a call, reported once, when it is over.

    ``at`` is wall-clock time of its start (``time.time()`` scale), ``monotonic`` the same
    instant on the event loop's clock; ``duration`` in seconds (for SIP INFO: the duration the
    peer announced, ``None`` when it gave none).
    """

    key: str
    method: HeardMethod
    at: float
    monotonic: float
    duration: float | None
    level_dbm0: float | None = None
    """Its level: the RFC 4733 volume, or what the in-band detector measured (``None`` for
    SIP INFO)."""


@dataclass(frozen=True, slots=True)
class DtmfResult:
    """What a :meth:`PhoneCall.send_dtmf` did. Times on the event loop's clock."""

    keys: str
    method: Literal["rfc4733", "sipinfo", "inband"]
    keys_sent: int
    keys_left: int
    cancelled: bool
    started_at: float
    finished_at: float
    key_times: tuple[float, ...] = ()
    """When each key that was sent left, on the event loop's clock (the first packet of an
    RFC 4733 / in-band key; the INFO of a SIP INFO key)."""

    @property
    def elapsed(self) -> float:
        return self.finished_at - self.started_at


IncomingHandler: TypeAlias = Callable[["IncomingInvite"], Awaitable[None] | None]


def _rtp_codec(codec: SdpCodec | None) -> RtpCodec | None:
    if codec is None:
        return None
    pair = _CODECS.get(codec.name.upper())
    return pair[1] if pair is not None and codec.clock_rate == 8000 else None


def _offered_keys() -> tuple[CryptoAttribute, ...]:
    """Fresh SDES keys to offer, one per suite, strongest tag first (RFC 4568)."""
    return tuple(
        CryptoAttribute(tag, suite.name, SrtpKey.generate(suite).inline)
        for tag, suite in enumerate(SrtpSuite, start=1)
    )


def _answer_key(offered: Sequence[CryptoAttribute]) -> CryptoAttribute | None:
    """Our key for the first offered crypto line whose suite we speak (its tag and suite)."""
    for line in offered:
        suite = SrtpSuite.named(line.suite)
        if suite is not None:
            return CryptoAttribute(line.tag, line.suite, SrtpKey.generate(suite).inline)
    return None


def _sdp_codecs(names: Sequence[str]) -> list[SdpCodec]:
    out: list[SdpCodec] = []
    for name in names:
        pair = _CODECS.get(name.upper())
        if pair is None:
            raise ValueError(f"unsupported codec {name!r}: PCMU and PCMA are supported")
        out.append(pair[0])
    if not out:
        raise ValueError("at least one codec is needed")
    return out


# ---------------------------------------------------------------------------------- calls
_INFO_SENDS = itertools.count(1)
"""Numbers the SIP INFO sends (echo windows, see :meth:`PhoneCall._send_info`)."""


ReferPolicy: TypeAlias = Literal["accept", "reject", "domains"]
"""What a :class:`Phone` does with the far end's REFER (see :attr:`Phone.refer_policy`)."""

_GRAPH_DIRECTION = {
    "sendrecv": "sendReceive",
    "sendonly": "sendOnly",
    "recvonly": "receiveOnly",
    "inactive": "inactive",
}


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


class IncomingInvite:
    """A call ringing at the phone: :meth:`answer` it or :meth:`reject` it."""

    def __init__(self, phone: Phone, sip: SipCall, event: IncomingCall) -> None:
        self.phone = phone
        self.sip = sip
        self.caller = str(event.caller.uri)
        self.callee = str(event.callee.uri)
        self.offer = event.offer
        self.call: PhoneCall | None = None
        self.ended: CallEnd | None = None
        self.on_cancelled: Callable[[CallEnd], None] | None = None
        """Called when the caller gives up (CANCEL) before the call is answered or rejected."""

    def __repr__(self) -> str:
        return f"IncomingInvite(from {self.caller} to {self.callee})"

    @property
    def call_id(self) -> str:
        return self.sip.call_id

    @property
    def pending(self) -> bool:
        """Still ringing: neither answered, rejected nor cancelled."""
        return self.sip.state is CallState.INCOMING and self.ended is None

    def ring(self) -> None:
        """Send 180 Ringing."""
        if self.pending:
            self.phone.ua.ringing(self.sip, self.phone.loop.time())
            self.phone.transport.kick()

    def reject(
        self,
        status: int = 486,
        reason: str = "",
        contacts: Sequence[str] = (),
        *,
        retry_after: int | None = None,
    ) -> None:
        """Refuse the call (486 Busy Here by default; 300-699), with ``Retry-After`` if given;
        a redirect (3xx, e.g. ``reject(302, contacts=[...])``) names where to call instead."""
        if not self.pending:
            return
        self.phone.ua.reject(
            self.sip, status, self.phone.loop.time(), reason, contacts, retry_after=retry_after
        )
        self.phone.transport.kick()
        self.ended = CallEnd(EndReason.REJECTED, f"rejected with {status}", False, time.time())
        self.phone._incoming.pop(self.call_id, None)

    async def answer(
        self, *, codecs: Sequence[str] = ("PCMU", "PCMA"), telephone_event: bool = True
    ) -> PhoneCall:
        """Answer with 200 OK: the first of the caller's codecs we take, telephone-event if it
        offered it (and ``telephone_event``). Media starts at once; returns the call."""
        if self.call is not None:
            return self.call
        if not self.pending:
            raise CallEndedError(
                self.ended or CallEnd(EndReason.ERROR, "not ringing", False, time.time()),
                "cannot answer",
            )
        phone = self.phone
        ours = _sdp_codecs(codecs)
        try:
            endpoint = await open_udp_endpoint(phone.rtp_host, phone.rtp_ports)
        except PortRangeExhaustedError as exc:
            phone._rtp_full(exc)
            self.reject(503, "Service Unavailable", retry_after=RTP_FULL_RETRY_AFTER_S)
            raise
        except OSError as exc:
            if not out_of_fds(exc):
                raise
            phone._rtp_full(exc)
            self.reject(503, "Service Unavailable", retry_after=RTP_FULL_RETRY_AFTER_S)
            raise MediaError(f"cannot answer {self.caller}: {exc}") from None
        if not self.pending:  # cancelled while we were binding
            await endpoint.close()
            raise CallEndedError(
                self.ended or CallEnd(EndReason.CANCELLED, "", True, time.time()), "cannot answer"
            )
        port = endpoint.local_address[1]
        session_id = str(phone.rng.getrandbits(48))
        try:
            offered = audio_media(self.offer) if self.offer is not None else None
            if phone.srtp == "mandatory" and offered is not None and not offered.crypto:
                raise SdpNegotiationError("SRTP is mandatory here and the offer has no key")
            if self.offer is not None:
                sdp = build_answer(
                    self.offer,
                    phone.sdp_host,
                    port,
                    session_id=session_id,
                    codecs=ours,
                    telephone_event=telephone_event,
                    crypto=_answer_key if phone.srtp != "never" else None,
                    rtcp_mux=bool(phone.rtcp_interval),
                )
            else:
                sdp = build_offer(
                    phone.sdp_host,
                    port,
                    session_id=session_id,
                    codecs=ours,
                    telephone_event=TELEPHONE_EVENT if telephone_event else None,
                )
        except SdpNegotiationError as exc:
            await endpoint.close()
            self.reject(488, "Not Acceptable Here")
            raise PhoneError(f"cannot answer {self.caller}: {exc}") from None
        call = PhoneCall(phone, self.sip, "inbound", endpoint, self.caller)
        self.call = call
        phone._track(call)
        phone._incoming.pop(self.call_id, None)
        phone.ua.answer(self.sip, sdp, phone.loop.time())
        if self.offer is not None:
            try:
                call._start_media()
            except (MediaError, OSError, ValueError) as exc:
                call._hangup_soon(EndReason.ERROR, f"media setup failed: {exc}")
                phone.transport.kick()
                raise PhoneError(f"cannot answer {self.caller}: {exc}") from None
        phone.transport.kick()
        return call

    def _cancelled(self, event: CallEnded) -> None:
        self.ended = CallEnd(EndReason.CANCELLED, event.reason, event.by_remote, time.time())
        if self.on_cancelled is not None:
            self.on_cancelled(self.ended)


# ---------------------------------------------------------------------------------- phone
class Phone:
    """A SIP phone on one UDP address. Make it with :meth:`start`, end it with :meth:`close`.

    Set :attr:`on_incoming` to a function (plain or ``async``) taking an
    :class:`IncomingInvite`: it answers or rejects. With no handler, calls are refused (480).
    """

    def __init__(
        self,
        *,
        rtp_host: str,
        rtp_ports: PortRange,
        sdp_host: str,
        pacer: Pacer,
        own_pacer: bool,
        shared_detector: bool,
        rng: random.Random,
        media_timeout: float | None = None,
        resolver: SipResolver | None = None,
        strict_rtp: bool = True,
        srtp: SrtpPolicy = "optional",
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.srtp: SrtpPolicy = srtp
        """When we offer SRTP, and whether we take it (see :data:`SrtpPolicy`)."""
        self.strict_rtp = strict_rtp
        """Take a call's RTP only from its far end's address (see :class:`RtpSession`)."""
        self.rtp_foreign_dropped = 0
        """RTP datagrams dropped because they came from a stranger (strict RTP)."""
        self.rtp_moved = 0
        """Calls' far-end streams followed to a new address mid-call (NAT rebindings)."""
        self.rtcp_interval: float = MIN_INTERVAL
        self.jitter_max_delay: float = MAX_DELAY
        """Greatest play-out delay of a call's jitter buffer for in-band DTMF (seconds)."""
        """Seconds between a call's RTCP reports (randomised, RFC 3550 6.3); 0: no RTCP."""
        self.rtcp_mux_offer = False
        """Offer ``a=rtcp-mux`` (RFC 5761: RTCP on the RTP port) in calls we place; offers
        that carry it are always taken (with RTCP on)."""
        self.refer_policy: ReferPolicy = "accept"
        """What a far end's REFER gets: ``accept`` (follow it), ``reject`` (603), or
        ``domains`` (follow it only to hosts in :attr:`refer_domains`, else 603)."""
        self.refer_domains: tuple[str, ...] = ()
        self.refer_timeout = 30.0
        """How long the call to a REFER's target may ring."""
        self.cname = f"{rng.getrandbits(64):016x}@{sdp_host}"
        """The RTCP CNAME of this phone's streams (random, RFC 7022)."""
        self.ended_rtts: collections.deque[float] = collections.deque(maxlen=4096)
        """The last round-trip time (s) of each call ended with one, newest last (the service's
        /metrics takes them into ``dtmfgraph_rtcp_rtt_seconds``)."""
        self.rtcp_totals = RtcpStats()
        self.media_totals: dict[str, int] = dict.fromkeys(MEDIA_COUNTS, 0)
        """Far ends' RTP as the calls ended so far got it (see :meth:`media_counts`)."""
        """RTCP counts of the calls ended so far (sent, received, malformed, foreign)."""
        self.resolver = resolver or SipResolver()
        self.rtp_host = rtp_host
        self.rtp_ports = rtp_ports
        self.sdp_host = sdp_host
        self.pacer = pacer
        self._own_pacer = own_pacer
        self.banks: InbandBanks | None = InbandBanks(pacer) if shared_detector else None
        self.rng = rng
        self.on_incoming: IncomingHandler | None = None
        self._transport: SipTransport | None = None
        self._calls: dict[str, PhoneCall] = {}
        self._incoming: dict[str, IncomingInvite] = {}
        self._registrations: dict[str, PhoneRegistration] = {}
        """Live registrations by their Call-ID."""
        self._tasks: set[asyncio.Task[None]] = set()
        """Media work of calls (closing sessions, forwarding keys)."""
        self._handlers: set[asyncio.Task[None]] = set()
        """Running ``on_incoming`` handlers."""
        self._closed = False
        self.media_timeout = media_timeout or None
        """Seconds without RTP from the far end after which a call is hung up (None: never)."""
        self.calls_placed = 0
        self.calls_answered = 0
        self.calls_refused = 0
        self.media_timeouts = 0
        """Calls hung up for want of RTP."""
        self.refusals = Refusals(logger)
        """Calls refused with 503 (incoming) or not placed (outgoing) for want of an RTP port
        of ``rtp_ports`` or of a file descriptor, by resource (see :mod:`.refusals`)."""
        self.failover_after = DEFAULT_FAILOVER_AFTER
        """Seconds without a response after which :meth:`dial` tries the target's next server."""
        self.failovers = 0
        """Calls and REGISTERs moved to a target's next server."""
        self._down: dict[Address, float] = {}
        """Servers a call left (no response, 503) and until when they go last in the list."""

    @classmethod
    async def start(
        cls,
        sip_host: str = "127.0.0.1",
        sip_port: int = 5060,
        rtp_ports: tuple[int, int] | PortRange = (20000, 29999),
        *,
        user: str = "dtmfgraph",
        rtp_host: str | None = None,
        sdp_host: str | None = None,
        pacer: Pacer | None = None,
        shared_detector: bool = True,
        timers: SipTimers | None = None,
        rng: random.Random | None = None,
        media_timeout: float | None = DEFAULT_MEDIA_TIMEOUT,
        resolver: SipResolver | None = None,
        strict_rtp: bool = True,
        tls: TlsConfig | None = None,
        srtp: SrtpPolicy = "optional",
    ) -> Phone:
        """Bind the SIP socket on ``sip_host:sip_port`` (0 = any free port) and start.

        RTP sockets are taken from ``rtp_ports`` (even ports) on ``rtp_host`` (default: the SIP
        host); ``sdp_host`` is the address written into SDP (default: the RTP host, which must
        then be a concrete address, not 0.0.0.0). ``pacer``: share one with other media users.
        ``media_timeout``: hang up a call whose far end has sent no RTP for this many seconds
        (not while its SDP holds the call); ``None`` or 0: never. ``resolver`` finds where a
        target named by host name goes (SRV, then A/AAAA; default: the system's DNS).
        ``strict_rtp``: take a call's RTP only from the address its SDP names, or from one
        address that sends a few packets in sequence before that one has sent (a peer behind
        NAT); others are dropped, counted (:attr:`rtp_foreign_dropped`) and logged.
        ``tls``: also take SIP over TLS on ``tls.port`` (:attr:`tls_address`), and reach
        ``sips:`` and ``;transport=tls`` URIs over TLS (:class:`TlsConfigError` for unusable
        files). ``srtp``: SRTP media (:data:`SrtpPolicy`; default ``optional``: offered on
        TLS calls, taken when offered).
        """
        if srtp not in ("never", "optional", "mandatory"):
            raise ValueError(f"srtp must be never, optional or mandatory, got {srtp!r}")
        if media_timeout is not None and media_timeout < 0:
            raise ValueError(f"media_timeout must be >= 0 seconds, got {media_timeout}")
        ports = rtp_ports if isinstance(rtp_ports, PortRange) else PortRange(*rtp_ports, even=True)
        rtp = rtp_host or sip_host
        advertised = sdp_host or rtp
        if advertised in ("0.0.0.0", "::"):
            raise ValueError("give sdp_host: a wildcard address cannot go into SDP")
        own = pacer is None
        phone = cls(
            rtp_host=rtp,
            rtp_ports=ports,
            sdp_host=advertised,
            pacer=pacer if pacer is not None else Pacer(),
            own_pacer=own,
            shared_detector=shared_detector,
            rng=rng or random.SystemRandom(),
            media_timeout=media_timeout,
            resolver=resolver,
            strict_rtp=strict_rtp,
            srtp=srtp,
        )
        sip_advertised = sdp_host or sip_host

        def make_ua(address: Address) -> UserAgent:
            return UserAgent(sip_advertised, address[1], user, rng=rng, timers=timers)

        try:
            phone._transport = await SipTransport.open(
                sip_host, sip_port, make_ua, phone._on_sip_event, tls=tls
            )
        except BaseException:
            if own:
                phone.pacer.close()
            raise
        return phone

    # -- properties ---------------------------------------------------------------------------
    @property
    def transport(self) -> SipTransport:
        if self._transport is None:
            raise RuntimeError("the phone is not started")
        return self._transport

    @property
    def ua(self) -> UserAgent:
        return self.transport.ua

    @property
    def sip_address(self) -> Address:
        """The bound SIP (host, port)."""
        return self.transport.local_address

    def require_auth(
        self,
        username: str | None,
        password: str = "",
        realm: str = "dtmfgraph",
        *,
        algorithms: tuple[str, ...] = ("MD5",),
    ) -> None:
        """Calls to us must answer a digest challenge (401, RFC 3261 22) for ``username`` and
        ``password`` in ``realm``; a wrong password gets 403 (``ua.counters.auth_refused``).
        ``algorithms``: what the 401 offers (``("SHA-256", "MD5")``: RFC 8760's stronger hash
        too; callers that do not know it may give up, see :class:`DigestGuard`). ``None``:
        anyone may call (the default). ``ValueError`` for an empty user or password."""
        self.ua.auth_guard = (
            None
            if username is None
            else DigestGuard(Credentials(username, password), realm, algorithms=algorithms)
        )

    @property
    def allow_sources(self) -> tuple[str, ...] | None:
        """The networks whose hosts may call us or send us other out-of-dialog requests
        (``None``: everyone). Set it to a list of networks (``"10.0.0.0/8"``, ``"192.0.2.7"``,
        ``"2001:db8::/32"``; ``ValueError`` for one that does not parse) or ``None``; requests
        from elsewhere are answered 403 and counted (``ua.counters.forbidden``), requests in
        our dialogs and responses are not checked."""
        allow = self.ua.allow_source
        if not isinstance(allow, SourceAllowlist):
            return None
        return tuple(str(n) for n in allow.networks)

    @allow_sources.setter
    def allow_sources(self, networks: Sequence[str] | None) -> None:
        self.ua.allow_source = SourceAllowlist(networks) if networks is not None else None

    @property
    def tls_address(self) -> Address | None:
        """The bound SIP-over-TLS (host, port), or ``None`` without TLS."""
        return self.transport.tls_address

    @property
    def tls_uri(self) -> str | None:
        """Our SIP URI over TLS, e.g. ``sip:dtmfgraph@127.0.0.1:5061;transport=tls``."""
        tls = self.tls_address
        if tls is None:
            return None
        return str(replace(self.ua.uri, port=tls[1], params={"transport": "tls"}))

    @property
    def uri(self) -> str:
        """Our SIP URI, e.g. ``sip:dtmfgraph@127.0.0.1:5060``."""
        return str(self.ua.uri)

    @property
    def calls(self) -> list[PhoneCall]:
        """Calls that are not over."""
        return list(self._calls.values())

    @property
    def closed(self) -> bool:
        return self._closed

    # -- placing calls ------------------------------------------------------------------------
    async def dial(
        self,
        uri: str,
        *,
        timeout: float = 30.0,
        auth: tuple[str, str] | Credentials | None = None,
        codecs: Sequence[str] = ("PCMU", "PCMA"),
        telephone_event: bool = True,
        destination: Address | None = None,
    ) -> PhoneCall:
        """Call ``uri`` and return once it is answered (the 200 OK has been ACKed).

        Raises :class:`DialError` (``status``, ``reason``) when refused, and
        :class:`DialTimeoutError` when nobody answers within ``timeout`` seconds. ``codecs``
        and ``telephone_event`` shape our SDP offer. Cancelling the awaiting task CANCELs.

        When DNS names several servers for the target (SRV records, or several addresses), a
        server that sends no response at all within :attr:`failover_after` seconds, or
        answers 503, is left for the next one (RFC 3263 4.3), within the same ``timeout``.
        """
        if self._closed:
            raise PhoneError("the phone is closed")
        if timeout <= 0:
            raise ValueError("timeout must be > 0")
        ours = _sdp_codecs(codecs)
        credentials = Credentials(*auth) if isinstance(auth, tuple) else auth
        deadline = self.loop.time() + timeout
        destinations: list[Address | None] = [destination]
        if destination is None and self.ua.outbound_proxy is None:
            destinations = self._up_first(await self._resolve_all(uri, min(timeout, _RESOLVE_WAIT)))
        for index, dest in enumerate(destinations):
            last = index == len(destinations) - 1
            remaining = deadline - self.loop.time()
            if remaining <= 0:
                detail = "no answer before the dial timeout"
                raise DialTimeoutError(uri, 408, "Request Timeout", detail, timed_out=True)
            try:
                return await self._dial_once(
                    uri,
                    dest,
                    remaining,
                    credentials,
                    ours,
                    telephone_event,
                    give_up_s=None if last else self.failover_after,
                )
            except DialError as exc:
                if not (exc.unanswered or exc.status == 503):
                    raise
                if dest is not None and len(destinations) > 1:
                    self._down[dest] = self.loop.time() + SERVER_DOWN_S
                if last:
                    raise
                following = destinations[index + 1]
                logger.warning(
                    "call to %s: %s; trying the next server, %s",
                    uri,
                    f"{exc.status} {exc.reason} ({exc.detail})" if exc.detail else exc.status,
                    f"{following[0]}:{following[1]}" if following else "?",
                )
                self.failovers += 1
        raise AssertionError("unreachable: the last destination returns or raises")

    def _up_first(self, destinations: list[Address | None]) -> list[Address | None]:
        """``destinations`` with the servers a call recently left (:data:`SERVER_DOWN_S`)
        moved to the end, in their order: later calls do not wait for them again."""
        now = self.loop.time()
        for address, until in list(self._down.items()):
            if until <= now:
                del self._down[address]
        if not self._down:
            return destinations
        up = [d for d in destinations if d not in self._down]
        return up + [d for d in destinations if d in self._down]

    def _offers_srtp(self, uri: str) -> bool:
        """Whether a call to ``uri`` offers SRTP (:attr:`srtp`)."""
        if self.srtp != "optional":
            return self.srtp == "mandatory"
        try:
            return SipUri.parse(uri).secure
        except SipError:
            return False

    async def _dial_once(
        self,
        uri: str,
        destination: Address | None,
        timeout: float,
        credentials: Credentials | None,
        ours: list[SdpCodec],
        telephone_event: bool,
        *,
        give_up_s: float | None,
    ) -> PhoneCall:
        """One INVITE of :meth:`dial`, to ``destination``."""
        try:
            endpoint = await open_udp_endpoint(self.rtp_host, self.rtp_ports)
        except PortRangeExhaustedError as exc:
            self._rtp_full(exc)
            raise
        except OSError as exc:
            if out_of_fds(exc):
                self._rtp_full(exc)
            raise
        offer = build_offer(
            self.sdp_host,
            endpoint.local_address[1],
            session_id=str(self.rng.getrandbits(48)),
            codecs=ours,
            telephone_event=TELEPHONE_EVENT if telephone_event else None,
            crypto=_offered_keys() if self._offers_srtp(uri) else (),
            srtp_required=self.srtp == "mandatory",
            rtcp_mux=self.rtcp_mux_offer and bool(self.rtcp_interval),
        )
        try:
            sip = self.ua.invite(
                uri,
                offer,
                self.loop.time(),
                auth=credentials,
                timeout=timeout,
                destination=destination,
                give_up_s=give_up_s,
            )
        except (SipError, ValueError) as exc:
            await endpoint.close()
            raise DialError(uri, 0, "not sent", str(exc)) from None
        call = PhoneCall(self, sip, "outbound", endpoint, uri)
        self._track(call)
        self.calls_placed += 1
        self.transport.kick()
        try:
            await asyncio.shield(call._established)
        except asyncio.CancelledError:
            call._hanging_up = True
            if not sip.is_over:
                self.ua.hangup(sip, self.loop.time())
                self.transport.kick()
            call._finish(EndReason.LOCAL_BYE, "dial cancelled", by_remote=False)
            raise
        return call

    async def _resolve_all(self, uri: str, timeout: float) -> list[Address | None]:
        """Where a target whose host is a name goes (:class:`SipResolver`: SRV ``_sip._udp``,
        or ``_sip._tcp`` with ``;transport=tcp``, then A/AAAA of our SIP socket's family), best
        first. ``[None]`` for an IP literal or a URI the UA rejects itself."""
        try:
            target = SipUri.parse(uri)
        except SipError:
            return [None]
        if is_ip_address(target.host):
            return [None]
        family = socket.AF_INET6 if ":" in self.sip_address[0] else socket.AF_INET
        try:
            found = await asyncio.wait_for(self.resolver.resolve_all(target, family), timeout)
            return [*found]
        except TimeoutError:
            detail = f"cannot resolve {target.host!r}: timed out"
        except ResolveError as exc:
            detail = str(exc)
        raise DialError(uri, 0, "not sent", detail) from None

    # -- registering --------------------------------------------------------------------------
    async def register(
        self,
        aor: str,
        *,
        registrar: str | None = None,
        auth: tuple[str, str] | Credentials | None = None,
        expires: int = 3600,
        retry_s: float = 30.0,
        destination: Address | None = None,
    ) -> PhoneRegistration:
        """Bind our Contact to ``aor`` (``sip:user@domain[:port]``) at its registrar, so that
        calls to the AOR reach this phone; the binding is refreshed before it runs out and
        retried ``retry_s`` after a failure until :meth:`PhoneRegistration.unregister` or
        :meth:`close`. Returns at once, the first REGISTER sent: ``await reg.wait()`` to know
        it worked. ``registrar`` (default: the AOR's host and port) is the Request-URI; a host
        name is resolved as :meth:`dial` does, and when DNS names several servers, one that
        does not answer (Timer F) or answers 503 is left for the next at once; after the last,
        the name is looked up again and the first is retried after ``retry_s``. Bad input
        raises :class:`RegistrationError`."""
        if self._closed:
            raise PhoneError("the phone is closed")
        credentials = Credentials(*auth) if isinstance(auth, tuple) else auth
        target = registrar or aor
        destinations: list[Address | None] = [destination]
        if destination is None and self.ua.outbound_proxy is None:
            try:
                destinations = await self._resolve_all(target, _RESOLVE_WAIT)
            except DialError as exc:
                raise RegistrationError(aor, 0, "not sent", exc.detail) from None
            destination = destinations[0]
        try:
            sip = self.ua.register(
                aor,
                self.loop.time(),
                registrar=registrar,
                destination=destination,
                expires=expires,
                auth=credentials,
                retry_s=retry_s,
            )
        except (SipError, ValueError) as exc:
            raise RegistrationError(aor, 0, "not sent", str(exc)) from None
        found = [d for d in destinations if d is not None]
        registration = PhoneRegistration(self, sip, found, target if len(found) > 1 else None)
        self._registrations[sip.call_id] = registration
        self.transport.kick()
        return registration

    @property
    def registrations(self) -> list[PhoneRegistration]:
        """Registrations not yet removed."""
        return list(self._registrations.values())

    def _forget_registration(self, registration: PhoneRegistration) -> None:
        self._registrations.pop(registration.sip.call_id, None)

    # -- SIP events ---------------------------------------------------------------------------
    def _count_rtcp(self, stats: RtcpStats, totals: RtcpStats | None = None) -> None:
        totals = totals if totals is not None else self.rtcp_totals
        totals.sent += stats.sent
        totals.received += stats.received
        totals.malformed += stats.malformed
        totals.foreign += stats.foreign
        totals.unauthenticated += stats.unauthenticated

    def rtcp_counts(self) -> RtcpStats:
        """RTCP packets sent, received and dropped, by the calls ended and those going on."""
        counts = RtcpStats()
        self._count_rtcp(self.rtcp_totals, counts)
        for call in self._calls.values():
            if call.session is not None and not call.session.closed:
                self._count_rtcp(call.session.rtcp_stats, counts)
        return counts

    def media_counts(self) -> dict[str, int]:
        """Far ends' RTP packets lost, late, reordered, and concealed for in-band detection,
        by the calls ended and those going on (:data:`MEDIA_COUNTS`)."""
        counts = dict(self.media_totals)
        for call in self._calls.values():
            session = call.session
            stats = session.stats if session is not None and not session.closed else None
            if stats is not None:
                for name in MEDIA_COUNTS:
                    counts[name] += getattr(stats, name)
        return counts

    def _track(self, call: PhoneCall) -> None:
        self._calls[call.call_id] = call

    def _forget(self, call: PhoneCall) -> None:
        if self._calls.get(call.call_id) is call:
            del self._calls[call.call_id]

    def _on_sip_event(self, event: Event | RegistrationEvent) -> None:
        if isinstance(event, RegistrationEvent):
            registration = self._registrations.get(event.registration.call_id)
            if registration is not None:
                registration._on_event(event)
            return
        call_id = event.call.call_id
        if isinstance(event, IncomingCall):
            self._on_incoming(event)
            return
        call = self._calls.get(call_id)
        if call is not None and call.sip is event.call:
            call._on_event(event)
            return
        invite = self._incoming.get(call_id)
        if invite is not None and isinstance(event, CallEnded):
            invite._cancelled(event)
            del self._incoming[call_id]

    @property
    def rtp_ports_exhausted(self) -> int:
        """Calls refused (503) or not placed because every RTP port was taken."""
        return self.refusals.counts[RTP_PORTS]

    @property
    def fds_exhausted(self) -> int:
        """Calls refused (503) or not placed because no file descriptor was left."""
        return self.refusals.counts[FILE_DESCRIPTORS]

    def rtp_port_free(self) -> bool:
        """Whether a call could get an RTP port now (one is bound and let go at once); a
        ``False`` is counted and logged: no port free, or no file descriptor left."""
        try:
            bind_udp(self.rtp_host, self.rtp_ports).close()
        except PortRangeExhaustedError as exc:
            self._rtp_full(exc)
            return False
        except OSError as exc:
            if not out_of_fds(exc):
                raise
            self._rtp_full(exc)
            return False
        return True

    def _rtp_full(self, exc: OSError | PortRangeExhaustedError) -> None:
        """A call was refused (503) or not placed: every RTP port is taken, or no file
        descriptor is left. Counted; logged once per burst (a flood must not flood the log)."""
        resource = FILE_DESCRIPTORS if out_of_fds(exc) else RTP_PORTS
        self.refusals.refuse(resource, str(exc), self.loop.time())

    def _on_incoming(self, event: IncomingCall) -> None:
        invite = IncomingInvite(self, event.call, event)
        if event.replaces is not None:  # an attended transfer to us: no handler, no ringing
            self._on_replacing(invite, event.replaces.call_id)
            return
        handler = self.on_incoming
        if handler is None or self._closed:
            self.calls_refused += 1
            self.ua.reject(event.call, 480, self.loop.time(), "Temporarily Unavailable")
            return
        if not self.rtp_port_free():
            self.calls_refused += 1
            self.ua.reject(
                event.call,
                503,
                self.loop.time(),
                "Service Unavailable",
                retry_after=RTP_FULL_RETRY_AFTER_S,
            )
            return
        self._incoming[invite.call_id] = invite
        try:
            result = handler(invite)
        except Exception:
            logger.exception("on_incoming handler failed")
            invite.reject(500, "Server Internal Error")
            return
        if inspect.isawaitable(result):
            self._spawn_handler(invite, result)

    def _on_replacing(self, invite: IncomingInvite, old_call_id: str) -> None:
        """An INVITE that replaces our call ``old_call_id``: see
        :func:`dtmfgraph.media.transfer.take_over`."""
        from . import transfer  # noqa: PLC0415  (transfer builds on this module)

        old = self._calls.get(old_call_id)
        if old is None or old.ended is not None:
            self.ua.reject(invite.sip, 481, self.loop.time(), "Call Does Not Exist")
            self.transport.kick()
            return
        self._incoming[invite.call_id] = invite
        task = asyncio.ensure_future(transfer.take_over(old, invite))
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    def _on_refer(self, call: PhoneCall, event: ReferReceived) -> None:
        """The far end of ``call`` sent REFER: answer it as :attr:`refer_policy` says and
        follow it (see :func:`dtmfgraph.media.transfer.follow_refer`)."""
        from . import transfer  # noqa: PLC0415  (transfer builds on this module)

        allowed = transfer.refer_allowed(self.refer_policy, self.refer_domains, event.target)
        self.ua.answer_refer(call.sip, 202 if allowed else 603, self.loop.time())
        self.transport.kick()
        if not allowed:
            logger.info("%s: REFER to %s refused (policy)", call.call_id, event.target)
            return
        task = asyncio.ensure_future(transfer.follow_refer(call, event, timeout=self.refer_timeout))
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    def _spawn_handler(self, invite: IncomingInvite, awaitable: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await awaitable
            except Exception:
                logger.exception("on_incoming handler failed")
                invite.reject(500, "Server Internal Error")

        task = asyncio.ensure_future(run())
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    # -- lifetime -----------------------------------------------------------------------------
    def end_recorded_call(self, record: Mapping[str, Any]) -> bool:
        """Hang up (BYE) a call an earlier process established and recorded
        (:meth:`PhoneCall.recovery_record`) before it died: the far end never heard. The BYE
        goes out at once and is retransmitted as any BYE; its answer is not awaited. Returns
        whether it was sent (``False``, logged, for a record that is not one or a call that is
        live here)."""
        try:
            call = self.ua.restore(record)
            self.ua.bye(call, self.loop.time())
        except SipError as exc:
            logger.warning("cannot hang up a recorded call: %s", exc)
            return False
        self.transport.kick()
        logger.info("%s: sent BYE for the call recorded before a restart", call.call_id)
        return True

    async def close(self, timeout: float = 2.0) -> None:
        """Hang up every call (waiting at most ``timeout`` for the far ends), then stop."""
        if self._closed:
            return
        self._closed = True
        for invite in list(self._incoming.values()):
            invite.reject(480, "Temporarily Unavailable")
        calls = list(self._calls.values())
        if calls:
            await asyncio.gather(*(c.hangup(timeout) for c in calls), return_exceptions=True)
        for call in calls:
            call._finish(EndReason.PHONE_CLOSED, "the phone was closed", by_remote=False)
        registrations = list(self._registrations.values())
        if registrations:
            await asyncio.gather(
                *(r.unregister(timeout) for r in registrations), return_exceptions=True
            )
        for task in self._handlers:
            task.cancel()
        await asyncio.gather(*self._handlers, *self._tasks, return_exceptions=True)
        if self._transport is not None:
            await self._transport.close()
        if self.banks is not None:
            self.banks.close()
        if self._own_pacer:
            self.pacer.close()

    async def __aenter__(self) -> Phone:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
