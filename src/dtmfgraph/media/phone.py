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
import inspect
import logging
import random
import socket
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from dtmfgraph.rtp.jitter import MAX_DELAY
from dtmfgraph.rtp.rtcp import MIN_INTERVAL, RtcpStats
from dtmfgraph.sip import (
    TELEPHONE_EVENT,
    CallEnded,
    Credentials,
    Event,
    IncomingCall,
    RegistrationEvent,
    SipError,
    SipTimers,
    UserAgent,
    build_offer,
)
from dtmfgraph.sip import Codec as SdpCodec
from dtmfgraph.sip.acl import SourceAllowlist
from dtmfgraph.sip.digest_server import DigestGuard
from dtmfgraph.sip.grammar import is_ip_address
from dtmfgraph.sip.refer import ReferReceived
from dtmfgraph.sip.uri import SipUri

from ..refusals import FILE_DESCRIPTORS, RTP_PORTS, Refusals, out_of_fds
from .banks import InbandBanks
from .incoming import IncomingInvite
from .pacer import Pacer
from .phone_call import PhoneCall
from .phone_types import (
    _RESOLVE_WAIT,
    DEFAULT_FAILOVER_AFTER,
    DEFAULT_MEDIA_TIMEOUT,
    INBAND_DRAIN,
    MEDIA_COUNTS,
    RTP_FULL_RETRY_AFTER_S,
    SEND_METHODS,
    SERVER_DOWN_S,
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
    IncomingHandler,
    PhoneError,
    ReferPolicy,
    SendMethod,
    SrtpPolicy,
    _offered_keys,
    _sdp_codecs,
)
from .registration import PhoneRegistration, RegistrationError
from .resolve import ResolveError, SipResolver
from .sip_transport import SipTransport
from .tls import TlsConfig
from .udp import (
    Address,
    PortRange,
    PortRangeExhaustedError,
    bind_udp,
    open_udp_endpoint,
)

__all__ = [
    "DEFAULT_FAILOVER_AFTER",
    "DEFAULT_MEDIA_TIMEOUT",
    "INBAND_DRAIN",
    "MEDIA_COUNTS",
    "RTP_FULL_RETRY_AFTER_S",
    "SEND_METHODS",
    "SERVER_DOWN_S",
    "CallEnd",
    "CallEndedError",
    "DialError",
    "DialTimeoutError",
    "DtmfError",
    "DtmfResult",
    "DtmfSendError",
    "EndReason",
    "HeardKey",
    "HeardMethod",
    "IncomingHandler",
    "IncomingInvite",
    "Phone",
    "PhoneCall",
    "PhoneError",
    "ReferPolicy",
    "SendMethod",
    "SrtpPolicy",
]

logger = logging.getLogger(__name__)


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
