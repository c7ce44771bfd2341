"""``SipMedia``: the service's media backend on real SIP calls (``dtmfgraph.media.Phone``).

It adapts the phone to the protocols of :mod:`dtmfgraph.service.media`:

* ``dial`` -> ``Phone.dial``; ``DialTimeoutError`` becomes ``DialError(408)``, any other
  ``DialError`` keeps its final SIP status; an INVITE that could not be sent (status 0, e.g. a
  host name) says ``no route``; a local RTP/socket failure raises ``MediaSetupError``.
* ``PhoneCall`` end reasons -> ``EndKind``: ``local-bye`` -> ``LOCAL_BYE``, ``remote-bye`` ->
  ``REMOTE_BYE``, ``timeout`` (no ACK for our 200 OK) -> ``TIMEOUT``, anything else (a broken
  dialog, media that could not be set up, the phone closed under the call) -> ``MEDIA_ERROR``.
* keys go out and come in as keypad characters (``F`` = flash); ``HeardKey`` -> ``KeyHeardInfo``.
* an asyncio cancel of ``send_dtmf`` stops at a key boundary: RFC 4733 / in-band finish the key
  that is sounding before the cancel returns; a SIP INFO that has left is the whole key.
* incoming INVITEs get 180 Ringing and are handed to the service; ``reject(status)`` answers
  with that final status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..media.phone import (
    DEFAULT_FAILOVER_AFTER,
    DEFAULT_MEDIA_TIMEOUT,
    RTP_FULL_RETRY_AFTER_S,
    CallEnd,
    DtmfResult,
    IncomingInvite,
    Phone,
    PhoneCall,
    ReferPolicy,
    SrtpPolicy,
)
from ..media.phone import CallEndedError as PhoneCallEndedError
from ..media.phone import DialError as PhoneDialError
from ..media.phone import DialTimeoutError as PhoneDialTimeoutError
from ..media.phone import EndReason as PhoneEndReason
from ..media.registration import PhoneRegistration, RegistrationError
from ..media.resolve import SipResolver
from ..media.sip_transport import (
    DEFAULT_IDLE_TIMEOUT_S,
    DEFAULT_KEEPALIVE_S,
    MAX_TCP_CONNECTIONS,
    UDP_KEEPALIVE_S,
    TcpLimits,
)
from ..media.tls import TlsConfig
from ..media.transfer import TransferError, blind_transfer, replaces_ref
from ..media.udp import Address, MediaError, PortRange
from ..media_load import MediaLoad
from ..rtp.jitter import MAX_DELAY
from ..rtp.rtcp import MIN_INTERVAL
from ..sip import Credentials, SipError, SipUri
from .errors import ServiceUnavailableError
from .media import (
    Audio,
    AudioSink,
    CallEndedError,
    DialError,
    EndKind,
    EndReason,
    KeyHeardInfo,
    KeySent,
    MediaCall,
    MediaSetupError,
    OnIncoming,
    TransferFailedError,
)

log = logging.getLogger(__name__)

_END_KINDS = {
    PhoneEndReason.LOCAL_BYE: EndKind.LOCAL_BYE,
    PhoneEndReason.REMOTE_BYE: EndKind.REMOTE_BYE,
    PhoneEndReason.TIMEOUT: EndKind.TIMEOUT,
    PhoneEndReason.MEDIA_TIMEOUT: EndKind.TIMEOUT,
}
_LEG_POLL_S = 0.02
"""How often a reader of a call whose leg just ended looks whether a transfer replaced it."""
_CANCEL_GRACE_S = 1.0
"""How long past the sounding key a cancelled RTP send may take to reach its key boundary."""


def map_call_end(end: CallEnd) -> EndReason:
    """How a ``PhoneCall`` ended -> the service's ``EndReason``."""
    kind = _END_KINDS.get(end.reason, EndKind.MEDIA_ERROR)
    return EndReason(kind, end.status or 0, str(end))


class SipMediaCall:
    """One live ``PhoneCall`` as a ``MediaCall``."""

    def __init__(self, call: PhoneCall) -> None:
        self.call = call
        # what was negotiated, kept once the call is over (a send then raises CallEndedError)
        self._rfc4733 = call.telephone_event_pt is not None
        self._sipinfo = call.can_send_sipinfo
        self._keys_sent = 0
        loop = asyncio.get_running_loop()
        self.ended: asyncio.Future[EndReason] = loop.create_future()
        self._far_ends: asyncio.Queue[str | None] = asyncio.Queue()
        self._watch = asyncio.ensure_future(self._watch_end())

    def __repr__(self) -> str:
        return f"SipMediaCall({self.call!r})"

    async def _watch_end(self) -> None:
        """End with the call, unless the far end transferred it and the phone followed: then
        carry on with the new call (a new far end)."""
        while True:
            end = await self.call.wait_ended()
            await asyncio.sleep(0)
            if not self.call.transferred.done():
                break
            new = self.call.transferred.result()
            new.muted = self.call.muted
            self.call = new
            self._rfc4733 = new.telephone_event_pt is not None
            self._sipinfo = new.can_send_sipinfo
            self._far_ends.put_nowait(new.remote_uri)
        self._far_ends.put_nowait(None)
        if not self.ended.done():
            self.ended.set_result(map_call_end(end))

    async def _legs(self) -> AsyncIterator[PhoneCall]:
        """The call, then each one a transfer put in its place, until the end."""
        while True:
            leg = self.call
            yield leg
            while self.call is leg and not self.ended.done():
                await asyncio.sleep(_LEG_POLL_S)  # only when a leg is over
            if self.call is leg:
                return

    async def far_ends(self) -> AsyncIterator[str]:
        """The URI of each new far end the call gets (the far end transferred it), in order,
        until the call ends. One consumer."""
        while (uri := await self._far_ends.get()) is not None:
            yield uri

    @property
    def can_send_rfc4733(self) -> bool:
        return self._rfc4733

    @property
    def sip_call_id(self) -> str:
        """The SIP Call-ID of the call's dialog."""
        return self.call.call_id

    def recovery_record(self) -> dict[str, Any] | None:
        return self.call.recovery_record()

    @property
    def can_send_sipinfo(self) -> bool:
        return self._sipinfo

    @property
    def dtmf_keys_sent(self) -> int:
        return self._keys_sent

    def _count(self, send: asyncio.Task[DtmfResult], on_key: KeySent | None = None) -> None:
        """Add the keys that ``send`` got out (whatever way it ended) to ``dtmf_keys_sent``;
        tell ``on_key`` when each left."""
        if not send.done():
            return
        if send.cancelled():
            last = self.call.last_dtmf  # a cancelled SIP INFO send records what had left
            self._keys_sent += last.keys_sent if last is not None and last.cancelled else 0
            self._tell(last if last is not None and last.cancelled else None, on_key)
            return
        exc = send.exception()
        if exc is None:
            self._keys_sent += send.result().keys_sent
            self._tell(send.result(), on_key)
        else:
            self._keys_sent += int(getattr(exc, "keys_sent", 0))
            self._tell(self.call.last_dtmf, on_key)

    def _tell(self, result: DtmfResult | None, on_key: KeySent | None) -> None:
        if result is None or on_key is None:
            return
        wall = time.time() - asyncio.get_running_loop().time()
        for key, at in zip(result.keys, result.key_times, strict=False):
            with contextlib.suppress(Exception):
                on_key(key, wall + at)

    async def send_dtmf(
        self, keys: str, *, method: str, tone_ms: int, gap_ms: int, on_key: KeySent | None = None
    ) -> None:
        if method not in ("rfc4733", "sipinfo", "inband"):
            raise ValueError(f"unknown DTMF method {method!r}")
        send = asyncio.ensure_future(
            self.call.send_dtmf(
                keys,
                method=method,  # type: ignore[arg-type]  # checked above
                tone_ms=tone_ms,
                gap_ms=gap_ms,
            )
        )
        try:
            await asyncio.shield(send)
        except asyncio.CancelledError:
            await self._stop_at_key_boundary(send, method, tone_ms)
            self._count(send, on_key)
            raise
        except PhoneCallEndedError as exc:
            self._count(send, on_key)
            raise CallEndedError(str(exc)) from exc
        except Exception:
            self._count(send, on_key)
            raise
        self._count(send, on_key)

    async def _stop_at_key_boundary(
        self, send: asyncio.Task[DtmfResult], method: str, tone_ms: int
    ) -> None:
        if send.done():
            return
        if method == "sipinfo":  # a sent INFO is the whole key: nothing is left sounding
            send.cancel()
        else:
            self.call.cancel_dtmf()  # the job ends once the key that is sounding is over
        with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
            await asyncio.wait_for(asyncio.shield(send), tone_ms / 1000 + _CANCEL_GRACE_S)
        if not send.done():
            send.cancel()

    async def play(self, samples: Audio, *, loop: bool = False) -> None:
        try:
            await self.call.play(samples, loop=loop)
        except PhoneCallEndedError as exc:
            raise CallEndedError(str(exc)) from exc
        except MediaError as exc:
            if self.call.ended is not None:
                raise CallEndedError(str(exc)) from exc
            raise

    def listen(self, sink: AudioSink) -> Callable[[], None]:
        return self.call.listen(sink)

    async def keys_heard(self) -> AsyncIterator[KeyHeardInfo]:
        async for leg in self._legs():
            async for heard in leg.keys_heard():
                yield KeyHeardInfo(
                    heard.key, heard.method, heard.at, heard.duration, heard.level_dbm0
                )

    @property
    def audio_active(self) -> bool:
        return self.call.audio_active

    async def audio_changes(self) -> AsyncIterator[bool]:
        async for leg in self._legs():
            async for active in leg.audio_changes():
                yield active

    @property
    def audio_direction(self) -> str:
        return self.call.audio_direction

    def set_muted(self, muted: bool) -> None:
        self.call.muted = muted

    async def transfer(
        self,
        target: str,
        *,
        timeout: float,
        on_accepted: Callable[[], Awaitable[None]],
        replacing: MediaCall | None = None,
    ) -> None:
        try:
            replaces = None
            if isinstance(replacing, SipMediaCall):
                target, replaces = replaces_ref(replacing.call)
            elif replacing is not None:
                raise TransferError(0, "Transfer failed: the call to replace is not a SIP call")
            await blind_transfer(
                self.call, target, timeout=timeout, on_accepted=on_accepted, replaces=replaces
            )
        except TransferError as exc:
            raise TransferFailedError(exc.status, str(exc)) from exc

    async def hangup(self) -> None:
        await self.call.hangup()


@dataclass(frozen=True, slots=True)
class TcpSettings:
    """The SIP TCP/TLS limits a ``SipMedia`` gives its transport."""

    limits: TcpLimits = field(default_factory=TcpLimits)
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT_S
    max_connections: int = MAX_TCP_CONNECTIONS


class SipIncoming:
    """A ringing ``IncomingInvite`` as an ``IncomingCall``."""

    def __init__(self, invite: IncomingInvite) -> None:
        self.invite = invite
        self._cancelled: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        invite.on_cancelled = self._on_cancelled

    def _on_cancelled(self, _end: CallEnd) -> None:
        if not self._cancelled.done():
            self._cancelled.set_result(None)

    @property
    def cancelled(self) -> asyncio.Future[None]:
        return self._cancelled

    @property
    def caller(self) -> str:
        return self.invite.caller

    @property
    def sip_call_id(self) -> str:
        """The SIP Call-ID of the INVITE."""
        return self.invite.call_id

    @property
    def callee(self) -> str:
        return self.invite.callee

    async def answer(self) -> MediaCall:
        try:
            call = await self.invite.answer()
        except PhoneCallEndedError as exc:
            raise CallEndedError(f"the caller is gone: {exc}") from exc
        except (MediaError, ValueError) as exc:
            raise MediaSetupError(0, f"cannot answer: {exc}") from exc
        return SipMediaCall(call)

    async def reject(self, sip_status: int) -> None:
        self.invite.reject(sip_status)

    async def redirect(self, targets: list[str]) -> None:
        self.invite.reject(302, "Moved Temporarily", targets)


class SipMedia:
    """The ``MediaBackend`` of ``dtmfgraph serve --media sip``: one ``Phone`` on one address.

    ``open()`` binds the SIP socket (``sip_port=0``: any free port; ``sip_address`` then tells
    which); ``start(on_incoming)`` opens it if needed and starts taking calls.
    """

    def __init__(
        self,
        *,
        sip_host: str = "127.0.0.1",
        sip_port: int = 5060,
        rtp_ports: PortRange | tuple[int, int] = (20000, 29999),
        public_host: str | None = None,
        user: str = "dtmfgraph",
        media_timeout: float | None = DEFAULT_MEDIA_TIMEOUT,
        strict_rtp: bool = True,
        auth: tuple[str, str] | None = None,
        register: str | None = None,
        registrar: str | None = None,
        register_expires: int = 3600,
        dns_server: Address | None = None,
        failover_after: float = DEFAULT_FAILOVER_AFTER,
        tls: TlsConfig | None = None,
        srtp: SrtpPolicy = "optional",
        keepalive: float | None = DEFAULT_KEEPALIVE_S,
        udp_keepalive: float | None = UDP_KEEPALIVE_S,
        allow_from: Sequence[str] | None = None,
        inbound_auth: tuple[str, str] | None = None,
        rtcp_interval: float = MIN_INTERVAL,
        inbound_auth_sha256: bool = False,
        rtcp_mux_offer: bool = False,
        tcp: TcpSettings | None = None,
        jitter_max_delay: float = MAX_DELAY,
        refer_policy: ReferPolicy = "accept",
        refer_domains: tuple[str, ...] = (),
    ) -> None:
        self.refer_policy: ReferPolicy = refer_policy
        """What a far end's REFER gets (see ``Phone.refer_policy``)."""
        self.refer_domains = refer_domains
        self.tcp = tcp
        """SIP TCP/TLS limits (``None``: the transport's defaults)."""
        self.jitter_max_delay = jitter_max_delay
        """Greatest play-out delay of a call's jitter buffer (seconds)."""
        self.rtcp_mux_offer = rtcp_mux_offer
        """Calls placed offer ``a=rtcp-mux``."""
        self.inbound_auth_sha256 = inbound_auth_sha256
        """The inbound challenge also offers SHA-256 (RFC 8760)."""
        self.rtcp_interval = rtcp_interval
        """Seconds between a call's RTCP reports (randomised); 0: no RTCP."""
        self.inbound_auth = inbound_auth
        """(user, password) calls to us must answer a digest challenge for (``None``: none)."""
        self.allow_from = allow_from
        """Networks whose hosts may call in (``None``: everyone)."""
        self.keepalive = keepalive
        """Ping the TCP/TLS connections we open and need this often (``None``: never)."""
        self.udp_keepalive = udp_keepalive
        """Send registrars reached over UDP a keep-alive this often (``None``: never)."""
        self.srtp: SrtpPolicy = srtp
        """When calls offer SRTP, and whether they take it."""
        self.tls = tls
        """SIP over TLS (``None``: UDP and TCP only)."""
        self.dns_server = dns_server
        """Where host names of targets are looked up (None: the system's resolver)."""
        self.failover_after = failover_after
        """Seconds without a response after which a call tries the target's next server."""
        self.media_timeout = media_timeout
        self.strict_rtp = strict_rtp
        self.auth = Credentials(*auth) if auth is not None else None
        """Answers digest challenges to our INVITEs and REGISTERs (any realm)."""
        self.register_aor = register
        self.registrar = registrar
        self.register_expires = register_expires
        self.registration: PhoneRegistration | None = None
        self._register_error: str | None = None
        self.sip_host = sip_host
        self.sip_port = sip_port
        self.rtp_ports = rtp_ports
        self.public_host = public_host
        self.user = user
        self.phone: Phone | None = None
        self._on_incoming: OnIncoming | None = None
        self._admission: Callable[[], ServiceUnavailableError | None] | None = None
        """Asked before each incoming call rings (see :meth:`set_admission`)."""

    async def open(self) -> Phone:
        """Bind the SIP socket and start the phone (idempotent)."""
        if self.phone is None:
            self.phone = await Phone.start(
                self.sip_host,
                self.sip_port,
                self.rtp_ports,
                user=self.user,
                sdp_host=self.public_host,
                media_timeout=self.media_timeout,
                strict_rtp=self.strict_rtp,
                resolver=SipResolver(self.dns_server),
                tls=self.tls,
                srtp=self.srtp,
            )
            self.phone.failover_after = self.failover_after
            self.phone.transport.keepalive_interval = self.keepalive
            self.phone.transport.udp_keepalive_interval = self.udp_keepalive
            if self.tcp is not None:
                self.phone.transport.limits = self.tcp.limits
                self.phone.transport.idle_timeout = self.tcp.idle_timeout
                self.phone.transport.max_tcp_connections = self.tcp.max_connections
            self.phone.allow_sources = self.allow_from
            self.phone.rtcp_interval = self.rtcp_interval
            self.phone.jitter_max_delay = self.jitter_max_delay
            self.phone.rtcp_mux_offer = self.rtcp_mux_offer
            self.phone.refer_policy = self.refer_policy
            self.phone.refer_domains = self.refer_domains
            if self.inbound_auth is not None:
                algorithms = ("SHA-256", "MD5") if self.inbound_auth_sha256 else ("MD5",)
                self.phone.require_auth(*self.inbound_auth, algorithms=algorithms)
        return self.phone

    @property
    def sip_address(self) -> Address:
        """The bound SIP (host, port)."""
        if self.phone is None:
            raise RuntimeError("the SIP media backend is not open")
        return self.phone.sip_address

    @property
    def uri(self) -> str:
        """Our SIP URI (where callers reach the service)."""
        if self.phone is None:
            raise RuntimeError("the SIP media backend is not open")
        return self.phone.uri

    async def start(self, on_incoming: OnIncoming) -> None:
        phone = await self.open()
        self._on_incoming = on_incoming
        phone.on_incoming = self._incoming

    async def hold_registration(self, hold: bool) -> None:
        """Register (``hold``) or remove our binding; with no AOR configured, nothing. An AOR
        that cannot be used at all is logged (once per distinct reason) and tried again at the
        next call."""
        if self.register_aor is None:
            return
        if not hold:
            registration, self.registration = self.registration, None
            if registration is not None:
                log.info("another node holds the registration of %s", self.register_aor)
                await registration.unregister()
            return
        try:
            await self.register()
        except ValueError as exc:
            if str(exc) != self._register_error:
                log.warning("cannot register: %s", exc)
            self._register_error = str(exc)
        else:
            self._register_error = None

    def check_registration(self) -> None:
        """``ValueError`` when the AOR or the registrar cannot be used at all (not a SIP URI,
        no user part); nothing is sent."""
        if self.register_aor is None:
            return
        try:
            aor = SipUri.parse(self.register_aor)
            if self.registrar is not None:
                SipUri.parse(self.registrar)
        except SipError as exc:
            raise ValueError(
                str(RegistrationError(self.register_aor, 0, "not sent", str(exc)))
            ) from None
        if not aor.user:
            detail = f"an address-of-record needs a user part: {self.register_aor}"
            raise ValueError(str(RegistrationError(self.register_aor, 0, "not sent", detail)))

    async def register(self) -> PhoneRegistration | None:
        """Start keeping ``register`` bound (idempotent; ``None`` when there is no AOR).
        Raises ``ValueError`` for an AOR or registrar that cannot be used at all; a registrar
        that refuses or does not answer is retried, and logged."""
        if self.register_aor is None or self.registration is not None:
            return self.registration
        phone = await self.open()
        try:
            self.registration = await phone.register(
                self.register_aor,
                registrar=self.registrar,
                auth=self.auth,
                expires=self.register_expires,
            )
        except RegistrationError as exc:
            raise ValueError(str(exc)) from None
        return self.registration

    @property
    def registered(self) -> bool | None:
        """Whether the registrar holds our binding now (``None``: no registration asked)."""
        if self.register_aor is None:
            return None
        return self.registration is not None and self.registration.registered

    @property
    def load(self) -> MediaLoad | None:
        """How late the phone's media clock runs (``None`` before the phone is open)."""
        return self.phone.pacer.load if self.phone is not None else None

    def set_admission(self, refusal: Callable[[], ServiceUnavailableError | None]) -> None:
        """Ask ``refusal`` before each incoming call rings: a ``ServiceUnavailableError`` it
        returns (the calls limit, the media load) refuses the INVITE 503 with its
        ``Retry-After``."""
        self._admission = refusal

    async def _incoming(self, invite: IncomingInvite) -> None:
        handler = self._on_incoming
        if handler is None:
            invite.reject(480, "Temporarily Unavailable")
            return
        refused = self._admission() if self._admission is not None else None
        if refused is not None:
            invite.reject(503, "Service Unavailable", retry_after=refused.retry_after_s)
            return
        invite.ring()
        await handler(SipIncoming(invite))

    def check_capacity(self) -> None:
        """``ServiceUnavailableError`` (503, Retry-After) when a call placed now could get no
        RTP port (none free, or no file descriptor left): refused at once, before a 201 (counted
        in the phone's ``refusals``)."""
        phone = self.phone
        if phone is None:
            return
        fds_before = phone.fds_exhausted
        if not phone.rtp_port_free():
            what = (
                "no file descriptor is left"
                if phone.fds_exhausted > fds_before
                else "every RTP port is in use"
            )
            raise ServiceUnavailableError(
                f"{what}: try again shortly", retry_after_s=RTP_FULL_RETRY_AFTER_S
            )

    async def dial(self, target: str, *, timeout: float) -> MediaCall:
        phone = await self.open()
        try:
            call = await phone.dial(target, timeout=timeout, auth=self.auth)
        except PhoneDialTimeoutError as exc:
            raise DialError(408, f"Request Timeout (no answer in {timeout:g} s)") from exc
        except PhoneDialError as exc:
            if exc.status == 0:
                raise DialError(0, f"no route to {target}: {exc.detail or exc.reason}") from exc
            reason = f"{exc.reason} ({exc.detail})" if exc.detail else exc.reason
            raise DialError(exc.status, reason) from exc
        except PhoneCallEndedError as exc:
            raise DialError(0, f"the call ended during setup: {exc}") from exc
        except (MediaError, OSError, ValueError) as exc:
            raise MediaSetupError(0, f"local media failure: {exc}") from exc
        return SipMediaCall(call)

    def end_recorded(self, record: dict[str, Any]) -> bool:
        """BYE a call that an earlier run established and recorded (see ``recovery_record``);
        the backend must be started."""
        if self.phone is None:
            raise RuntimeError("the SIP media backend is not open")
        return self.phone.end_recorded_call(record)

    async def close(self) -> None:
        phone, self.phone = self.phone, None
        if phone is not None:
            await phone.close()


__all__ = ["SipIncoming", "SipMedia", "SipMediaCall", "TcpSettings", "map_call_end"]
