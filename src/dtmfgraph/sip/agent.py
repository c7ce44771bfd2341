"""The sans-I/O SIP user agent: calls, transactions, dialogs, timers and events in one object.

Drive it like aioquic's QuicConnection: feed datagrams with :meth:`UserAgent.receive_datagram`,
send what :meth:`UserAgent.datagrams_to_send` returns, re-arm one timer at
:meth:`UserAgent.next_deadline` and call :meth:`UserAgent.handle_deadline` when it is due, and
drain :meth:`UserAgent.next_event`. Time only ever comes in as ``now`` (seconds, any epoch).
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from dtmfgraph.sip import dtmf_relay, refer
from dtmfgraph.sip.call import Call, CallState, Role
from dtmfgraph.sip.counters import SipCounters
from dtmfgraph.sip.dialog import Dialog, DialogState
from dtmfgraph.sip.digest import (
    Credentials,
    authorization,
    choose_challenge,
    parse_challenge,
)
from dtmfgraph.sip.digest_server import DigestGuard
from dtmfgraph.sip.ended import EndedDialogs
from dtmfgraph.sip.errors import (
    DigestError,
    SdpNegotiationError,
    SipError,
    SipParseError,
    SipStateError,
)
from dtmfgraph.sip.events import (
    CallEnded,
    CallEstablished,
    CallFailed,
    CallRinging,
    Event,
    IncomingCall,
    InfoDtmf,
    Registered,
    RegistrationEvent,
    RegistrationFailed,
    ReInvite,
    RequestCompleted,
    RequestFailed,
    Unregistered,
)
from dtmfgraph.sip.grammar import is_ip_address, quote
from dtmfgraph.sip.headers import BRANCH_MAGIC_COOKIE, CSeq, Headers, Via
from dtmfgraph.sip.message import (
    REASON_PHRASES,
    SipMessage,
    SipRequest,
    SipResponse,
    parse_message,
    response_to,
)
from dtmfgraph.sip.orphan import OrphanAnswers, orphan_dialog, orphan_key
from dtmfgraph.sip.refer import Replaces
from dtmfgraph.sip.registration import (
    DEFAULT_EXPIRES,
    DEFAULT_RETRY_S,
    Registration,
    RegistrationState,
    min_expires,
)
from dtmfgraph.sip.sdp import (
    SDP_CONTENT_TYPE,
    CryptoAttribute,
    Direction,
    SessionDescription,
    audio_media,
    build_answer,
    check_media,
    next_local_version,
    with_direction,
)
from dtmfgraph.sip.transaction import (
    Addr,
    ClientKey,
    ClientTransaction,
    ServerKey,
    ServerTransaction,
    SipTimers,
    Wire,
    client_key,
    server_key,
)
from dtmfgraph.sip.uri import NameAddr, SipUri

ALLOWED_METHODS: Final = ("INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "INFO", "NOTIFY", "REFER")
"""Methods we implement (sent in Allow)."""
KNOWN_METHODS: Final = frozenset(
    {"REGISTER", "PRACK", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER", "MESSAGE", "PUBLISH"}
)
"""Methods we know but do not allow (answered 405); anything else unknown gets 501."""
SUPPORTED_OPTIONS: Final = ("replaces",)
"""SIP option tags we support (``Supported``; a ``Require`` naming another is 420)."""
ACCEPTED_TYPES: Final = (SDP_CONTENT_TYPE, dtmf_relay.DTMF_RELAY, dtmf_relay.DTMF, refer.SIPFRAG)

RESTORE_SEQ_GAP: Final = 1000
"""How far :meth:`UserAgent.restore` moves a recorded dialog's local CSeq: past the requests
(INFO keys, re-INVITEs) sent after the record was taken. RFC 3261 12.2.2: a UAS accepts a CSeq
higher than the last by more than one."""

Timed = ClientTransaction | ServerTransaction | Call | Registration


@dataclass(slots=True)
class _Pending:
    """What a client transaction is for, so its outcome reaches the right place."""

    call: Call
    purpose: str
    """``invite``, ``reinvite``, ``cancel``, ``bye``, ``request`` or ``cleanup``."""
    request_id: int | None = None
    offer: SessionDescription | None = None


class UserAgent:
    """One SIP user agent on one UDP address: places and answers calls, sends INFO DTMF.

    ``rng`` makes tags, branches, Call-IDs and cnonces reproducible in tests.
    """

    def __init__(
        self,
        local_host: str,
        local_port: int,
        user: str = "dtmfgraph",
        *,
        rng: random.Random | None = None,
        timers: SipTimers | None = None,
        display_name: str | None = None,
        user_agent: str = "dtmfgraph",
        outbound_proxy: Addr | None = None,
        tls_port: int | None = None,
    ) -> None:
        self.local_host = local_host
        self.local_port = local_port
        self.tls_port = tls_port
        """Where we take SIP over TLS (``None``: no TLS, and a URI that asks for it fails)."""
        self.tls_names: dict[Addr, str] = {}
        """The host name each TLS peer's certificate must carry (peers found from a name)."""
        self.user = user
        self.display_name = display_name
        self.user_agent = user_agent
        self.outbound_proxy = outbound_proxy
        self.timers = timers or SipTimers()
        self.counters = SipCounters()
        self.auth_guard: DigestGuard | None = None
        """With a guard, a call to us (an INVITE out of any dialog) must answer its digest
        challenge (401); a wrong password gets 403. Counted in ``counters.auth_refused``."""
        self.allow_source: Callable[[str], bool] | None = None
        """Whether a host (the IP a request came from) may start a dialog or transaction with
        us out of any dialog (INVITE, OPTIONS, ...); others are answered 403 and counted in
        ``counters.forbidden``. Requests within our dialogs and responses are not checked.
        ``None``: everyone may."""
        self._rng = rng or random.SystemRandom()
        self._wire = Wire(self.counters)
        self._events: deque[Event | RegistrationEvent] = deque()
        self._calls: dict[str, Call] = {}
        self._client_tx: dict[ClientKey, ClientTransaction] = {}
        self._pending: dict[ClientKey, _Pending] = {}
        self._registrations: dict[str, Registration] = {}
        """Registrations made here and not over, by Call-ID."""
        self._registering: dict[ClientKey, tuple[Registration, int]] = {}
        """REGISTER transactions: their registration and the expires they ask for."""
        self._server_tx: dict[ServerKey, ServerTransaction] = {}
        self._orphans = OrphanAnswers(keep_s=self.timers.h)
        self.ended_dialogs = EndedDialogs()
        """Dialogs peers started with us that are over: a late or stray INVITE of one is
        answered 481 (``counters.ended_dialog_invites``), never a new call (:mod:`.ended`)."""
        self._heap: list[tuple[float, int, Timed]] = []
        self._seq = itertools.count()
        self._request_ids = itertools.count(1)

    # ------------------------------------------------------------------ identity

    @property
    def uri(self) -> SipUri:
        """Our own SIP URI (``sip:user@host:port``)."""
        return SipUri(self.local_host, self.user, self.local_port)

    @property
    def contact(self) -> NameAddr:
        """Our Contact value."""
        return NameAddr(self.uri)

    @property
    def calls(self) -> dict[str, Call]:
        """Live calls (and recently ended ones) by Call-ID."""
        return dict(self._calls)

    # ------------------------------------------------------------------ driver API

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        """Feed one UDP datagram that arrived from ``addr``."""
        self.counters.datagrams_received += 1
        if not data.strip(b"\r\n \t"):
            return  # RFC 5626 keep-alive
        try:
            message = parse_message(data)
        except SipParseError as exc:
            self._answer_unparseable(exc, addr)
            return
        if isinstance(message, SipResponse):
            self._on_response(message, addr, now)
        else:
            self._on_request(message, addr, now)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Addr]]:
        """Datagrams to put on the wire, in order, with their destinations."""
        del now
        out, self._wire.queue = self._wire.queue, []
        return out

    def receive_stream_message(
        self, data: bytes, addr: Addr, now: float, *, secure: bool = False
    ) -> None:
        """Feed one whole message (see :class:`~dtmfgraph.sip.stream.StreamFramer`) that came
        over a TCP connection (TLS when ``secure``) from ``addr``: what goes back to ``addr``
        goes over that connection too."""
        self._wire.reliable.add(addr)
        if secure:
            self._wire.secure.add(addr)
        self.receive_datagram(data, addr, now)

    def peer_in_use(self, addr: Addr) -> bool:
        """Whether something still sends to ``addr`` or waits for it: a transaction, a call
        (its peer or its next hop) or a registration (so its connection must stay open)."""
        if any(tx.dest == addr for tx in self._client_tx.values()):
            return True
        if any(tx.dest == addr for tx in self._server_tx.values()):
            return True
        for call in self._calls.values():
            if call.is_over:
                continue
            if call.peer_addr == addr or (
                call.dialog is not None and call.dialog.next_hop() == addr
            ):
                return True
        return any(r.destination == addr for r in self._registrations.values())

    def udp_registrars(self) -> list[Addr]:
        """Where registrations that go over UDP send their REGISTERs: the addresses a NAT on
        the way must keep a mapping for, so that the registrar's calls reach us (keep-alives,
        RFC 5626 3.5.2's purpose; see the transport)."""
        reliable = self._wire.reliable
        return sorted(
            {
                r.destination
                for r in self._registrations.values()
                if r.destination not in reliable
                and r.state in (RegistrationState.REGISTERED, RegistrationState.REGISTERING)
            }
        )

    def _end_registration(self, registration: Registration) -> None:
        registration.ended()
        self._registrations.pop(registration.call_id, None)

    def is_secure(self, addr: Addr) -> bool:
        """Whether messages to ``addr`` go over TLS."""
        return addr in self._wire.secure

    def stream_messages_to_send(self, now: float) -> list[tuple[bytes, Addr]]:
        """Messages to write to TCP connections (one per peer address), in order."""
        del now
        out, self._wire.stream_queue = self._wire.stream_queue, []
        return out

    def forget_stream_peer(self, addr: Addr) -> None:
        """The TCP connection with ``addr`` is gone: its address is reached by UDP again
        (or by a new connection, when a URI asks for TCP or TLS)."""
        self._wire.reliable.discard(addr)
        self._wire.secure.discard(addr)

    def next_deadline(self) -> float | None:
        """When :meth:`handle_deadline` must next be called, or ``None``."""
        while self._heap:
            when, _, owner = self._heap[0]
            if owner.next_deadline() == when:
                return when
            heapq.heappop(self._heap)
        return None

    def handle_deadline(self, now: float) -> None:
        """Fire every timer due at ``now``."""
        while self._heap and self._heap[0][0] <= now:
            when, _, owner = heapq.heappop(self._heap)
            if owner.next_deadline() != when:
                continue
            if isinstance(owner, ClientTransaction):
                self._fire_client(owner, now)
            elif isinstance(owner, ServerTransaction):
                owner.handle_timer(now)
                self._settle_server(owner)
            elif isinstance(owner, Registration):
                self._fire_registration(owner, now)
            else:
                self._fire_call(owner, now)

    def next_event(self) -> Event | RegistrationEvent | None:
        """The oldest event not yet taken, or ``None``."""
        return self._events.popleft() if self._events else None

    # ------------------------------------------------------------------ calls we place

    def invite(
        self,
        target: str | SipUri,
        sdp_offer: SessionDescription | None,
        now: float,
        *,
        auth: Credentials | None = None,
        timeout: float | None = None,
        destination: Addr | None = None,
        give_up_s: float | None = None,
    ) -> Call:
        """Place a call. ``timeout`` bounds the wait for a final answer (CANCEL when it
        runs out); ``destination`` overrides the address taken from the target URI;
        ``give_up_s``: when not a single response has come by then, stop and fail the call
        408 ``unanswered`` (to try another server; else Timer B decides)."""
        uri = SipUri.parse(target) if isinstance(target, str) else target
        dest = destination or self.outbound_proxy
        if dest is None:
            if not is_ip_address(uri.host):
                raise SipError(f"no DNS at this layer: give destination= for {uri.host!r}")
            dest = uri.address
        self._note_transport(uri, dest)
        call_id = f"{self._token()}{self._token()}"
        local = NameAddr(self.uri, self.display_name, {"tag": self._token()})
        call = Call(call_id, Role.CALLER, local, NameAddr(uri), dest, credentials=auth)
        call.local_sdp = sdp_offer
        headers = Headers()
        headers.add("Via", str(self._via(dest)))
        headers.add("Max-Forwards", "70")
        headers.add("From", str(local))
        headers.add("To", str(NameAddr(uri)))
        headers.add("Call-ID", call_id)
        headers.add("CSeq", str(CSeq(1, "INVITE")))
        headers.add("Contact", str(self._contact(dest)))
        self._common_headers(headers)
        body = b""
        if sdp_offer is not None:
            headers.add("Content-Type", SDP_CONTENT_TYPE)
            body = bytes(sdp_offer)
        call.invite = SipRequest("INVITE", uri, headers, body)
        if timeout is not None:
            call.deadlines["dial"] = now + timeout
        if give_up_s is not None:
            call.deadlines["silence"] = now + give_up_s
        self._calls[call_id] = call
        self._start_client(call.invite, dest, now, _Pending(call, "invite"))
        self._arm(call)
        return call

    def cancel(self, call: Call, now: float) -> None:
        """Cancel our ringing INVITE (sent once a provisional response has arrived)."""
        call.require("cancel")
        call.move_to(CallState.CANCELLING)
        call.deadlines.pop("dial", None)
        if call._provisional_seen:
            self._send_cancel(call, now)
        else:
            call._cancel_requested = True
        call.deadlines["cancel"] = now + self.timers.h
        self._arm(call)

    # ------------------------------------------------------------------ registrations

    def register(
        self,
        aor: str | SipUri,
        now: float,
        *,
        registrar: str | SipUri | None = None,
        destination: Addr | None = None,
        expires: int = DEFAULT_EXPIRES,
        auth: Credentials | None = None,
        retry_s: float = DEFAULT_RETRY_S,
    ) -> Registration:
        """Bind our Contact to ``aor`` (``sip:user@domain``) and keep it bound until
        :meth:`unregister`: refreshed before it runs out, tried again ``retry_s`` after a
        failure (or the registrar's ``Retry-After``). ``registrar`` is the Request-URI (default:
        the AOR's domain and port); ``destination`` overrides the address it is sent to.
        :class:`Registered` and :class:`RegistrationFailed` report each outcome."""
        aor_uri = SipUri.parse(aor) if isinstance(aor, str) else aor
        if not aor_uri.user:
            raise SipError(f"an address-of-record needs a user part: {aor_uri}")
        if isinstance(registrar, str):
            registrar_uri = SipUri.parse(registrar)
        else:
            registrar_uri = registrar or SipUri(
                aor_uri.host, port=aor_uri.port, scheme=aor_uri.scheme
            )
        if isinstance(expires, bool) or not isinstance(expires, int) or expires < 1:
            raise ValueError(f"expires must be a whole number of seconds >= 1, got {expires!r}")
        if not retry_s > 0:
            raise ValueError(f"retry_s must be > 0, got {retry_s!r}")
        dest = destination or self.outbound_proxy
        if dest is None:
            if not is_ip_address(registrar_uri.host):
                raise SipError(
                    f"no DNS at this layer: give destination= for {registrar_uri.host!r}"
                )
            dest = registrar_uri.address
        self._note_transport(registrar_uri, dest)
        registration = Registration(
            aor=aor_uri.without_params(),
            registrar=registrar_uri,
            destination=dest,
            contact=self._contact(dest),
            call_id=f"{self._token()}{self._token()}",
            tag=self._token(),
            expires_requested=expires,
            credentials=auth,
            retry_s=retry_s,
        )
        self._send_register(registration, now, expires)
        self._registrations[registration.call_id] = registration
        return registration

    def unregister(self, registration: Registration, now: float) -> None:
        """Remove our binding (a REGISTER with ``Expires: 0``); :class:`Unregistered`
        follows. Nothing is sent for a registration that is already over or ending."""
        if registration.state in (RegistrationState.UNREGISTERING, RegistrationState.UNREGISTERED):
            return
        registration.state = RegistrationState.UNREGISTERING
        self._send_register(registration, now, 0)

    def move_registration(
        self, registration: Registration, destination: Addr, now: float, *, at_once: bool
    ) -> None:
        """Send ``registration``'s REGISTERs to ``destination`` from now on (another server
        for its registrar, RFC 3263 4.3). ``at_once``: if it is waiting to retry after a
        failure, the retry goes now."""
        registration.destination = destination
        self._note_transport(registration.registrar, destination)
        if at_once and registration.state is RegistrationState.FAILED:
            registration.deadline = now
            self._arm(registration)

    # ------------------------------------------------------------------ calls we receive

    def ringing(self, call: Call, now: float, status: int = 180) -> None:
        """Send a provisional response (180 Ringing, or 183) for an incoming call."""
        call.require("ringing")
        if not 101 <= status <= 199:
            raise ValueError(f"not a ringing status: {status}")
        self._respond_invite(call, status, now)

    def answer(self, call: Call, sdp_answer: SessionDescription | None, now: float) -> None:
        """Accept an incoming call with 200 OK (retransmitted until the ACK arrives)."""
        call.require("answer")
        if sdp_answer is not None:
            call.local_sdp = next_local_version(call.local_sdp, sdp_answer)
        assert call.dialog is not None and call.invite is not None
        call.dialog.state = DialogState.CONFIRMED
        self._respond_invite(call, 200, now, sdp=call.local_sdp)
        call.move_to(CallState.ANSWERED)
        self._start_2xx_retransmission(call, call.invite.cseq.seq, now)

    def reject(
        self,
        call: Call,
        status: int,
        now: float,
        reason: str = "",
        contacts: Sequence[str] = (),
        *,
        retry_after: int | None = None,
    ) -> None:
        """Refuse an incoming call with a 3xx-6xx final response (e.g. 486, 603); a 3xx
        (redirect, e.g. 302) names where to call instead in ``contacts`` (SIP URIs); with
        ``retry_after`` (seconds), a ``Retry-After`` header (a 503 for a full resource)."""
        call.require("reject")
        if not 300 <= status <= 699:
            raise ValueError(f"not a rejection status: {status}")
        extra = tuple(("Contact", f"<{uri}>") for uri in contacts) if status < 400 else ()
        if retry_after is not None:
            extra += (("Retry-After", str(retry_after)),)
        self._respond_invite(call, status, now, reason=reason, extra=extra)
        call.end_status = status
        self._terminate(call, now)

    # ------------------------------------------------------------------ established calls

    def bye(self, call: Call, now: float) -> None:
        """Hang up an answered call (as callee before the ACK: sent once it arrives)."""
        call.require("bye")
        if call.state is CallState.ANSWERED:
            call.deadlines.pop("bye_after_ack", None)
            call.deadlines["bye_after_ack"] = float("inf")
            return
        self._send_bye(call, now, "BYE")

    def call_record(self, call: Call) -> dict[str, Any] | None:
        """What :meth:`restore` needs to hang up this call from another process (after a
        crash or restart of this one): our role, the peer's address and the confirmed dialog,
        as JSON-safe data; ``None`` before the dialog is confirmed or once the call is over."""
        dialog = call.dialog
        if dialog is None or dialog.state is not DialogState.CONFIRMED or call.is_over:
            return None
        host, port = call.peer_addr
        return {"role": call.role.value, "peer": [host, port], "dialog": dialog.to_record()}

    def restore(self, record: Mapping[str, Any]) -> Call:
        """An established call rebuilt from :meth:`call_record` data taken by an earlier run,
        so that it can be hung up (:meth:`bye`): its far end never learnt that we went away.
        Its local CSeq moves :data:`RESTORE_SEQ_GAP` ahead. Raises ``SipParseError`` for bad
        data, ``SipStateError`` for a call this agent already has."""
        dialog = Dialog.from_record(record.get("dialog", {}), seq_gap=RESTORE_SEQ_GAP)
        try:
            role = Role(record["role"])
            host, port = record["peer"]
            peer = (str(host), int(port))
        except (KeyError, TypeError, ValueError) as exc:
            raise SipParseError(f"not a call record: {exc!r}") from exc
        if dialog.call_id in self._calls:
            raise SipStateError(f"call {dialog.call_id} is already live here")
        call = Call(dialog.call_id, role, dialog.local, dialog.remote, peer)
        call.dialog = dialog
        call.state = CallState.ESTABLISHED
        self._calls[call.call_id] = call
        return call

    def hangup(self, call: Call, now: float) -> None:
        """End the call whatever its state: CANCEL, reject with 603, or BYE."""
        if call.state in (CallState.CALLING, CallState.PROCEEDING):
            self.cancel(call, now)
        elif call.state is CallState.INCOMING:
            self.reject(call, 603, now)
        elif call.state in (CallState.ANSWERED, CallState.ESTABLISHED):
            self.bye(call, now)

    def send_info_dtmf(self, call: Call, key: str | int, duration_ms: int, now: float) -> int:
        """Send one key as SIP INFO ``application/dtmf-relay``; returns the request id that
        a later :class:`RequestCompleted` or :class:`RequestFailed` names."""
        call.require("info")
        body = dtmf_relay.encode_dtmf_relay(key, duration_ms)
        return self._send_in_dialog(call, "INFO", now, body, dtmf_relay.DTMF_RELAY)

    def options(self, call: Call, now: float) -> int:
        """Send an in-dialog OPTIONS (a keep-alive probe); returns its request id."""
        call.require("info")
        return self._send_in_dialog(call, "OPTIONS", now)

    def refer(
        self, call: Call, target: str, now: float, replaces: refer.Replaces | None = None
    ) -> int:
        """Send REFER (RFC 3515) asking the far end to call ``target`` (a SIP URI; with
        ``replaces``, an attended transfer); returns its request id. Its NOTIFYs come back as
        :class:`~dtmfgraph.sip.refer.TransferProgress` events."""
        call.require("info")
        extra = refer.refer_headers(target, str(self.uri), replaces)
        return self._send_in_dialog(call, "REFER", now, extra=extra)

    def reinvite(self, call: Call, sdp: SessionDescription, now: float) -> int:
        """Send a re-INVITE with a new offer (the session version is advanced for us)."""
        call.require("reinvite")
        if self._invite_in_flight(call):
            raise SipStateError("an INVITE transaction is already in progress on this call")
        offer = next_local_version(call.local_sdp, sdp)
        return self._send_in_dialog(
            call, "INVITE", now, bytes(offer), SDP_CONTENT_TYPE, purpose="reinvite", offer=offer
        )

    def hold(self, call: Call, now: float) -> int:
        """Re-INVITE with our audio ``sendonly`` (``inactive`` if we were ``recvonly``)."""
        current = self._local_direction(call)
        direction = Direction.SENDONLY if current.sends else Direction.INACTIVE
        return self.reinvite(call, with_direction(self._require_sdp(call), direction), now)

    def resume(self, call: Call, now: float) -> int:
        """Re-INVITE with our audio back to ``sendrecv``."""
        return self.reinvite(call, with_direction(self._require_sdp(call), Direction.SENDRECV), now)

    # ================================================================== internals: sending

    def _token(self) -> str:
        return f"{self._rng.getrandbits(64):016x}"

    def _via(self, dest: Addr) -> Via:
        branch = BRANCH_MAGIC_COOKIE + self._token()
        params: dict[str, str | None] = {"branch": branch, "rport": None}
        if dest in self._wire.secure and self.tls_port is not None:
            return Via(self.local_host, self.tls_port, "TLS", params)
        transport = "TCP" if dest in self._wire.reliable else "UDP"
        return Via(self.local_host, self.local_port, transport, params)

    def _contact(self, peer: Addr) -> NameAddr:
        """Our Contact for a dialog or binding with ``peer``: ``;transport=tcp`` over TCP and
        our TLS port with ``;transport=tls`` over TLS, so that the peer comes back the same way."""
        if peer in self._wire.secure and self.tls_port is not None:
            return NameAddr(replace(self.uri, port=self.tls_port, params={"transport": "tls"}))
        if peer in self._wire.reliable:
            return NameAddr(replace(self.uri, params={"transport": "tcp"}))
        return self.contact

    def _note_transport(self, uri: object, dest: Addr, *, strict: bool = True) -> None:
        """A URI that asks for TCP (``;transport=tcp``) makes ``dest`` a TCP peer; one that
        asks for TLS (``;transport=tls``, or a ``sips:`` URI) a TLS peer, whose certificate
        must name the URI's host when that is a name (:attr:`tls_names`). Without TLS here,
        such a URI raises :class:`SipError` (``strict``) or is reached as it is."""
        if not isinstance(uri, SipUri):
            return
        if uri.secure:
            if self.tls_port is None:
                if not strict:
                    return
                raise SipError(f"{uri} asks for TLS, which is not configured here")
            self._wire.reliable.add(dest)
            self._wire.secure.add(dest)
            if not is_ip_address(uri.host):
                self.tls_names[dest] = uri.host
        elif str(uri.params.get("transport") or "").lower() == "tcp":
            self._wire.reliable.add(dest)

    def _hop(self, dialog: Dialog) -> Addr:
        """Where the dialog's next request goes (its first route, else the remote target),
        over TCP when that URI asks for it."""
        dest = dialog.next_hop()
        self._note_transport(
            dialog.route_set[0].uri if dialog.route_set else dialog.remote_target,
            dest,
            strict=False,
        )
        return dest

    def _common_headers(self, headers: Headers) -> None:
        headers.add("Allow", ", ".join(ALLOWED_METHODS))
        headers.add("User-Agent", self.user_agent)

    def _arm(self, owner: Timed) -> None:
        when = owner.next_deadline()
        if when is not None and when != float("inf"):
            heapq.heappush(self._heap, (when, next(self._seq), owner))

    def _start_client(
        self, request: SipRequest, dest: Addr, now: float, pending: _Pending
    ) -> ClientTransaction:
        tx = ClientTransaction(request, dest, self._wire, self.timers)
        self._client_tx[tx.key] = tx
        self._pending[tx.key] = pending
        tx.start(now)
        self._arm(tx)
        return tx

    def _send_in_dialog(
        self,
        call: Call,
        method: str,
        now: float,
        body: bytes = b"",
        content_type: str | None = None,
        *,
        purpose: str = "request",
        offer: SessionDescription | None = None,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> int:
        dialog = self._require_dialog(call)
        dest = self._hop(dialog)
        request = dialog.request(
            method, self._via(dest), self._contact(dest), body=body, content_type=content_type
        )
        for name, value in extra:
            request.headers.add(name, value)
        self._common_headers(request.headers)
        request_id = next(self._request_ids)
        self._start_client(request, dest, now, _Pending(call, purpose, request_id, offer))
        return request_id

    def _send_cancel(self, call: Call, now: float) -> None:
        invite = call.invite
        assert invite is not None
        headers = Headers()
        headers.add("Via", invite.headers.get_list("Via")[0])
        for route in invite.headers.get_raw("Route"):
            headers.add("Route", route)
        headers.add("Max-Forwards", "70")
        headers.add("From", invite.headers.get("From") or "")
        headers.add("To", invite.headers.get("To") or "")
        headers.add("Call-ID", invite.call_id)
        headers.add("CSeq", str(CSeq(invite.cseq.seq, "CANCEL")))
        request = SipRequest("CANCEL", invite.uri, headers)
        self._start_client(request, call.peer_addr, now, _Pending(call, "cancel"))

    def _send_bye(self, call: Call, now: float, reason: str) -> None:
        self._stop_2xx_retransmission(call)
        call.deadlines.pop("bye_after_ack", None)
        call.move_to(CallState.TERMINATING)
        dialog = self._require_dialog(call)
        dest = self._hop(dialog)
        request = dialog.request("BYE", self._via(dest), self._contact(dest))
        request.headers.add("User-Agent", self.user_agent)
        self._start_client(request, dest, now, _Pending(call, "bye", offer=None))
        call._end_reason = reason

    def _send_ack(self, call: Call, dialog: Dialog, invite: SipRequest, now: float) -> None:
        """The end-to-end ACK for a 2xx: new branch, through the dialog's route set."""
        dest = self._hop(dialog)
        ack = dialog.request("ACK", self._via(dest), self._contact(dest), seq=invite.cseq.seq)
        for name in ("Authorization", "Proxy-Authorization"):
            for value in invite.headers.get_raw(name):
                ack.headers.add(name, value)
        data = bytes(ack)
        self._wire.send(data, dest)
        if dialog.id == (call.dialog.id if call.dialog else None):
            call._ack = (data, dest)
        del now

    def _respond(
        self,
        tx: ServerTransaction,
        status: int,
        now: float,
        *,
        reason: str = "",
        to_tag: str | None = None,
        body: bytes = b"",
        content_type: str | None = None,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> SipResponse:
        if to_tag is None and status > 100 and tx.request.to.tag is None:
            to_tag = self._token()
        response = response_to(tx.request, status, reason, to_tag=to_tag, body=body)
        for name, value in extra:
            response.headers.add(name, value)
        response.headers.add("Server", self.user_agent)
        if content_type is not None:
            response.headers.add("Content-Type", content_type)
        tx.respond(response, now)
        self._settle_server(tx)
        return response

    def _respond_invite(
        self,
        call: Call,
        status: int,
        now: float,
        *,
        reason: str = "",
        sdp: SessionDescription | None = None,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> None:
        tx = call._server_tx
        assert tx is not None and call.dialog is not None and call.invite is not None
        headers: list[tuple[str, str]] = list(extra)
        if status < 300:
            headers += [("Record-Route", rr) for rr in call.invite.headers.get_raw("Record-Route")]
            headers.append(("Contact", str(self._contact(call.peer_addr))))
        if 200 <= status < 300:
            headers.append(("Allow", ", ".join(ALLOWED_METHODS)))
        body = bytes(sdp) if sdp is not None else b""
        response = self._respond(
            tx,
            status,
            now,
            reason=reason,
            to_tag=call.dialog.local_tag,
            body=body,
            content_type=SDP_CONTENT_TYPE if sdp is not None else None,
            extra=tuple(headers),
        )
        if 200 <= status < 300:
            call._ok = (bytes(response), tx.dest)

    def _start_2xx_retransmission(self, call: Call, seq: int, now: float) -> None:
        """RFC 3261 13.3.1.4: resend the 2xx at T1, 2T1... (capped at T2) until the ACK."""
        call._ok_seq = seq
        call._ok_interval = self.timers.t1
        call.deadlines["ok"] = now + self.timers.t1
        call.deadlines["ok_giveup"] = now + self.timers.h
        self._arm(call)

    def _stop_2xx_retransmission(self, call: Call) -> None:
        call._ok = None
        call.deadlines.pop("ok", None)
        call.deadlines.pop("ok_giveup", None)

    def _terminate(self, call: Call, now: float) -> None:
        self._stop_2xx_retransmission(call)
        dialog = call.dialog
        if call.role is Role.CALLEE and dialog is not None and not call.is_over:
            confirmed = dialog.state is DialogState.CONFIRMED
            seq = dialog.remote_seq or 0
            self.ended_dialogs.remember(call.call_id, dialog.remote_tag, seq, confirmed, now)
        call.move_to(CallState.TERMINATED)
        call.deadlines["forget"] = now + self.timers.h
        self._arm(call)

    def _answer_unparseable(self, exc: SipParseError, addr: Addr) -> None:
        request = exc.message
        if isinstance(request, SipRequest) and request.method != "ACK":
            try:
                response = response_to(request, exc.status, to_tag=self._token())
            except SipParseError:
                pass
            else:
                detail = str(exc)[:200].encode("ascii", "replace").decode()
                response.headers.add("Warning", f"399 {self.local_host} {quote(detail)}")
                self._wire.send(bytes(response), addr)
                self.counters.bad_requests_answered += 1
                return
        self.counters.malformed_dropped += 1

    # ================================================================== internals: requests

    def _on_request(self, request: SipRequest, addr: Addr, now: float) -> None:
        if request.method == "ACK":
            self._on_ack(request, now)
            return
        key = server_key(request)
        existing = self._server_tx.get(key)
        if existing is not None:
            existing.receive_retransmission()
            return
        tx = ServerTransaction(request, addr, self._wire, self.timers)
        self._server_tx[key] = tx
        allow = self.allow_source
        if request.to.tag is None and allow is not None and not allow(addr[0]):
            self.counters.forbidden += 1
            self._respond(tx, 403, now)
            return
        if request.method == "CANCEL":
            self._on_cancel(request, tx, now)
            return
        required = [
            r for r in request.headers.get_list("Require") if r.lower() not in SUPPORTED_OPTIONS
        ]
        if required:
            self._respond(tx, 420, now, extra=(("Unsupported", ", ".join(required)),))
            return
        if request.to.tag is not None:
            self._on_in_dialog(request, tx, now)
            return
        if request.method == "INVITE":
            self._on_new_invite(request, tx, addr, now)
        elif request.method == "OPTIONS":
            self._respond(tx, 200, now, extra=self._capabilities())
        elif request.method in ("BYE", "INFO"):
            self._respond(tx, 481, now)
            self.counters.unknown_dialog += 1
        else:
            self._reject_method(request, tx, now)

    def _capabilities(self) -> tuple[tuple[str, str], ...]:
        return (
            ("Allow", ", ".join(ALLOWED_METHODS)),
            ("Accept", ", ".join(ACCEPTED_TYPES)),
            ("Supported", ", ".join(SUPPORTED_OPTIONS)),
            ("Contact", str(self.contact)),
        )

    def _reject_method(self, request: SipRequest, tx: ServerTransaction, now: float) -> None:
        status = 405 if request.method in KNOWN_METHODS else 501
        self._respond(tx, status, now, extra=(("Allow", ", ".join(ALLOWED_METHODS)),))

    def _on_new_invite(
        self, request: SipRequest, tx: ServerTransaction, addr: Addr, now: float
    ) -> None:
        from_tag, seq = request.from_.tag or "", request.cseq.seq
        if self.ended_dialogs.refuses(request.call_id, from_tag, seq, now):
            self.counters.ended_dialog_invites += 1
            self._respond(tx, 481, now)  # its dialog is over: see sip/ended.py
            return
        earlier = self._calls.get(request.call_id)
        if earlier is not None:
            if not _tried_again(earlier, from_tag, seq):
                self._respond(tx, 482, now)  # same Call-ID, new branch, no To tag: merged/looped
                return
            del self._calls[request.call_id]  # refused, not yet forgotten: its retry is new
        guard = self.auth_guard
        if guard is not None:
            verdict = guard.check(request, now)
            if verdict != "ok":
                self.counters.auth_refused += 1
                if verdict == "wrong":
                    self._respond(tx, 403, now, reason="Wrong credentials")
                else:
                    challenges = guard.challenges(now, stale=verdict == "stale")
                    extra = tuple(("WWW-Authenticate", value) for value in challenges)
                    self._respond(tx, 401, now, extra=extra)
                return
        if request.body and request.content_type != SDP_CONTENT_TYPE:
            self._respond(tx, 415, now, extra=(("Accept", SDP_CONTENT_TYPE),))
            return
        replaced: Call | None = None
        raw_replaces = request.headers.get("Replaces")
        if raw_replaces is not None:
            try:
                replaced = self._replaced_call(refer.parse_replaces(raw_replaces))
            except refer.ReferError:
                self._respond(tx, 400, now, reason="Bad Replaces")
                return
            if replaced is None:  # RFC 3891 section 3: no such confirmed dialog of ours
                self.counters.unknown_dialog += 1
                self._respond(tx, 481, now)
                return
        offer: SessionDescription | None = None
        try:
            if request.body:
                offer = SessionDescription.parse(request.body)
            dialog = Dialog.as_uas(request, self._token())
        except SipParseError as exc:
            self._respond(tx, 400, now, reason=f"Bad Request ({exc})"[:120])
            return
        if offer is not None:
            try:
                check_media(offer)
            except SdpNegotiationError as exc:
                self.counters.sdp_refused += 1
                warning = f"301 {self.local_host} {quote(str(exc)[:200])}"
                self._respond(tx, 488, now, extra=(("Warning", warning),))
                return
        call = Call(request.call_id, Role.CALLEE, dialog.local, dialog.remote, addr)
        call.state = CallState.INCOMING
        call.dialog = dialog
        call.remote_sdp = offer
        call.invite = request
        call._server_tx = tx
        self._calls[call.call_id] = call
        self._respond(tx, 100, now)
        self._events.append(IncomingCall(call, request.from_, request.to, offer, replaced))

    def _replaced_call(self, replaces: Replaces) -> Call | None:
        """Our confirmed call that a ``Replaces`` header names: its to-tag is ours (we receive
        the INVITE), its from-tag the far end's."""
        call = self._calls.get(replaces.call_id)
        if call is None or call.is_over or call.dialog is None:
            return None
        dialog = call.dialog
        if dialog.state is not DialogState.CONFIRMED:
            return None
        if (dialog.local_tag, dialog.remote_tag) != (replaces.to_tag, replaces.from_tag):
            return None
        return call

    def _on_cancel(self, request: SipRequest, tx: ServerTransaction, now: float) -> None:
        invite_tx = self._server_tx.get((*server_key(request)[:-1], "INVITE"))
        if invite_tx is None:
            self._respond(tx, 481, now)
            self.counters.unknown_dialog += 1
            return
        self._respond(tx, 200, now)
        call = self._calls.get(request.call_id)
        if call is not None and call.state is CallState.INCOMING and not invite_tx.final_sent:
            self._respond_invite(call, 487, now)
            call.end_status = 487
            self._terminate(call, now)
            self._events.append(CallEnded(call, "cancelled", by_remote=True))

    def _find_call(self, message: SipMessage) -> Call | None:
        call = self._calls.get(message.call_id)
        if call is None or call.dialog is None or call.is_over:
            return None
        if isinstance(message, SipRequest):
            local, remote = message.to.tag, message.from_.tag
        else:
            local, remote = message.from_.tag, message.to.tag
        if call.dialog.local_tag != local or call.dialog.remote_tag != (remote or ""):
            return None
        return call

    def _on_ack(self, request: SipRequest, now: float) -> None:
        tx = self._server_tx.get(server_key(request))
        if tx is not None and tx.invite:
            if tx.receive_ack(now):
                self._arm(tx)
            else:
                self.counters.retransmissions_received += 1
            return
        call = self._find_call(request)
        if call is None or call._ok is None or request.cseq.seq != call._ok_seq:
            return  # ACK for nothing we wait on, or a retransmitted ACK: ignore
        self._stop_2xx_retransmission(call)
        sdp = self._sdp_of(request)
        if sdp is not None:
            call.remote_sdp = sdp
        if call.state is CallState.ANSWERED:
            call.move_to(CallState.ESTABLISHED)
            self._events.append(CallEstablished(call, call.remote_sdp))
            if "bye_after_ack" in call.deadlines:
                self._send_bye(call, now, "BYE")

    def _on_in_dialog(self, request: SipRequest, tx: ServerTransaction, now: float) -> None:
        call = self._find_call(request)
        if call is None or call.dialog is None:
            self._respond(tx, 481, now)
            self.counters.unknown_dialog += 1
            return
        if not call.dialog.accept_remote_seq(request.cseq.seq):
            self._respond(tx, 500, now, reason="CSeq Out Of Order")
            return
        method = request.method
        if method == "BYE":
            if call.state is CallState.TERMINATING:
                self._drop_our_bye(call)
            self._respond(tx, 200, now)
            self._terminate(call, now)
            self._events.append(CallEnded(call, "BYE", by_remote=True))
        elif method == "INFO":
            self._on_info(call, request, tx, now)
        elif method == "INVITE":
            self._on_reinvite(call, request, tx, now)
        elif method == "OPTIONS":
            self._respond(tx, 200, now, extra=self._capabilities())
        elif method == "REFER":
            self._on_refer(call, request, tx, now)
        elif method == "NOTIFY":
            verdict = refer.read_notify(request)
            self._respond(tx, verdict.status, now, reason=verdict.reason)
            if verdict.progress is not None:
                self._events.append(refer.TransferProgress(call, *verdict.progress))
        else:
            self._reject_method(request, tx, now)

    def _on_refer(self, call: Call, request: SipRequest, tx: ServerTransaction, now: float) -> None:
        values = request.headers.get_raw("Refer-To") or request.headers.get_raw("r")
        if len(values) != 1:
            self._respond(tx, 400, now, reason="Exactly One Refer-To Needed")
            return
        if call._refer_tx is not None:
            self._respond(tx, 491, now)  # one REFER at a time
            return
        try:
            target, replaces = refer.parse_refer_to(values[0])
        except refer.ReferError:
            self._respond(tx, 400, now, reason="Bad Refer-To")
            return
        call._refer_tx = tx
        referred_by = request.headers.get("Referred-By") or request.headers.get("b")
        self._events.append(refer.ReferReceived(call, target, replaces, referred_by))

    def answer_refer(self, call: Call, status: int, now: float) -> None:
        """Answer the far end's pending REFER: 202 (we will call the target) or a refusal
        (e.g. 603 Decline, 403 Forbidden)."""
        tx, call._refer_tx = call._refer_tx, None
        if tx is None:
            raise SipStateError("no REFER is waiting for an answer on this call")
        self._respond(tx, status, now)

    def notify_refer(self, call: Call, status: int, reason: str, now: float, *, final: bool) -> int:
        """Tell the far end how our call to its REFER's target goes (NOTIFY, sipfrag body);
        ``final`` ends the implicit subscription. Returns the request id."""
        call.require("info")
        state = "terminated;reason=noresource" if final else "active;expires=60"
        extra = (("Event", "refer"), ("Subscription-State", state))
        body = refer.sipfrag(status, reason)
        return self._send_in_dialog(call, "NOTIFY", now, body, refer.SIPFRAG_TYPE, extra=extra)

    def _on_info(self, call: Call, request: SipRequest, tx: ServerTransaction, now: float) -> None:
        if not request.body:
            self._respond(tx, 200, now)  # RFC 6086: an empty INFO is a probe
            return
        try:
            signal = dtmf_relay.decode(request.content_type, request.body)
        except dtmf_relay.DtmfBodyError as exc:
            extra = (("Accept", ", ".join(dtmf_relay.CONTENT_TYPES)),) if exc.status == 415 else ()
            self._respond(tx, exc.status, now, extra=extra)
            return
        self._respond(tx, 200, now)
        self._events.append(InfoDtmf(call, signal.key, signal.duration_ms))

    def _on_reinvite(
        self, call: Call, request: SipRequest, tx: ServerTransaction, now: float
    ) -> None:
        assert call.dialog is not None
        if self._invite_in_flight(call) or call._ok is not None:
            self._respond(tx, 491, now)
            return
        if call.state is not CallState.ESTABLISHED:
            self._respond(tx, 500, now, extra=(("Retry-After", "1"),))
            return
        offer: SessionDescription | None = None
        answer: SessionDescription | None = None
        try:
            if request.body:
                if request.content_type != SDP_CONTENT_TYPE:
                    self._respond(tx, 415, now, extra=(("Accept", SDP_CONTENT_TYPE),))
                    return
                offer = SessionDescription.parse(request.body)
                answer = self._answer_reoffer(call, offer)
            else:
                answer = call.local_sdp  # offerless re-INVITE: our current SDP is the offer
        except SdpNegotiationError:
            self._respond(tx, 488, now)
            return
        except SipParseError:
            self._respond(tx, 400, now, reason="Bad SDP")
            return
        contacts = request.contacts
        if contacts:
            call.dialog.remote_target = contacts[0].uri  # target refresh (12.2.2)
        if offer is not None:
            call.remote_sdp = offer
        call.local_sdp = answer
        call._server_tx = tx
        call.invite = request
        self._respond_invite(call, 200, now, sdp=answer)
        self._start_2xx_retransmission(call, request.cseq.seq, now)
        media = audio_media(offer) if offer is not None else None
        self._events.append(ReInvite(call, offer, answer, media.on_hold if media else False))

    def _answer_reoffer(self, call: Call, offer: SessionDescription) -> SessionDescription:
        local = call.local_sdp
        ours = audio_media(local) if local is not None else None
        if local is None or ours is None:
            raise SdpNegotiationError("no local SDP to answer a re-INVITE from")
        codecs = [c for c in ours.codecs if c.name.lower() != "telephone-event"]

        def keep_our_key(offered: Sequence[CryptoAttribute]) -> CryptoAttribute | None:
            """SRTP goes on with our key, under the tag of an offered line of its suite."""
            for line in ours.crypto:
                for other in offered:
                    if other.suite.upper() == line.suite.upper():
                        return replace(line, tag=other.tag)
            return None

        answer = build_answer(
            offer,
            ours.address,
            ours.port,
            session_id=local.origin.session_id,
            version=local.origin.version,
            codecs=codecs,
            ptime=ours.ptime,
            username=local.origin.username,
            crypto=keep_our_key if ours.crypto else None,
        )
        return next_local_version(local, answer)

    # ================================================================== internals: responses

    def _on_response(self, response: SipResponse, addr: Addr, now: float) -> None:
        key = client_key(response)
        tx = self._client_tx.get(key)
        if tx is None:
            if response.cseq.method == "INVITE" and 200 <= response.status < 300:
                self._on_stray_2xx(response, addr, now)
            else:
                self.counters.stray_responses += 1
            return
        registering = self._registering.get(key)
        if registering is not None:
            pass_up = tx.receive_response(response, now)
            self._settle_client(tx)
            if pass_up and response.status >= 200:
                self._on_register_response(*registering, tx.request, response, now)
            return
        pending = self._pending[key]
        pass_up = tx.receive_response(response, now)
        self._settle_client(tx)
        if not pass_up:
            return
        purpose = pending.purpose
        if purpose == "invite":
            self._on_invite_response(pending.call, tx, response, now)
        elif purpose == "reinvite":
            self._on_reinvite_response(pending, tx, response, now)
        elif purpose == "bye":
            if response.status >= 200 and not self._retry_auth(pending, tx, response, now):
                self._bye_done(pending.call, now)
        elif (
            purpose == "request"
            and response.status >= 200
            and not self._retry_auth(pending, tx, response, now)
        ):
            self._request_outcome(pending, tx.request, response, now)

    def _on_invite_response(
        self, call: Call, tx: ClientTransaction, response: SipResponse, now: float
    ) -> None:
        status = response.status
        invite = tx.request
        call.deadlines.pop("silence", None)  # the destination answers
        if status < 200:
            call._provisional_seen = True
            if call.state is CallState.CALLING:
                call.move_to(CallState.PROCEEDING)
            if status > 100 and response.to.tag and call.dialog is None and response.contacts:
                call.dialog = Dialog.as_uac(invite, response)
            sdp = self._sdp_of(response)
            if sdp is not None:
                call.remote_sdp = sdp
            if call._cancel_requested:
                call._cancel_requested = False
                self._send_cancel(call, now)
            if status > 100 and call.state is not CallState.CANCELLING:
                self._events.append(CallRinging(call, status, response.reason, sdp))
            return
        if status < 300:
            self._on_invite_2xx(call, invite, response, now)
            return
        call.deadlines.pop("dial", None)
        call.deadlines.pop("cancel", None)
        if status in (401, 407) and call.state is not CallState.CANCELLING:
            failure = self._authorize_retry(call, invite, response, now, _Pending(call, "invite"))
            if failure is None:
                return
            detail = failure
        else:
            detail = ""
        call.end_status = status
        already_reported = call.state is CallState.TERMINATED
        if not already_reported:
            self._terminate(call, now)
            if not call._failure_reported:
                self._events.append(CallFailed(call, status, response.reason, detail))

    def _on_invite_2xx(
        self, call: Call, invite: SipRequest, response: SipResponse, now: float
    ) -> None:
        if call.dialog is None or call.dialog.remote_tag != response.to.tag:
            dialog = Dialog.as_uac(invite, response)
        else:
            dialog = call.dialog
            dialog.update_from_response(response)
        if call.state not in (CallState.CALLING, CallState.PROCEEDING):
            # Answered after we cancelled or gave up: acknowledge, then hang up (15).
            self._ack_and_bye(call, invite, response, now, dialog)
            return
        call.dialog = dialog
        call.remote = dialog.remote
        call._auth_attempts = 0
        call.deadlines.pop("dial", None)
        sdp = self._sdp_of(response)
        if sdp is not None:
            call.remote_sdp = sdp
        self._send_ack(call, dialog, invite, now)
        call.move_to(CallState.ESTABLISHED)
        self._events.append(CallEstablished(call, call.remote_sdp))

    def _ack_and_bye(
        self, call: Call, invite: SipRequest, response: SipResponse, now: float, dialog: Dialog
    ) -> None:
        self._send_ack(call, dialog, invite, now)
        if call.state is CallState.CANCELLING:
            call.dialog = dialog
            call.deadlines.pop("cancel", None)
            self._send_bye(call, now, "cancelled")
            return
        dest = self._hop(dialog)
        bye = dialog.request("BYE", self._via(dest), self._contact(dest))
        self._start_client(bye, dest, now, _Pending(call, "cleanup"))
        del response

    def _on_stray_2xx(self, response: SipResponse, addr: Addr, now: float) -> None:
        """A 2xx whose INVITE transaction is gone: ACK it again, or ACK and BYE a stray dialog."""
        call = self._calls.get(response.call_id)
        if call is None:
            self._on_orphan_2xx(response, addr, now)
            return
        if call.role is not Role.CALLER or call.invite is None:
            self.counters.stray_responses += 1
            return
        if response.cseq.seq != call.invite.cseq.seq:
            self._resend_reinvite_ack(call, response)
            return
        self.counters.retransmissions_received += 1
        if call.dialog is not None and response.to.tag == call.dialog.remote_tag and call._ack:
            self._wire.send(*call._ack, retransmission=True)
            return
        self._ack_and_bye(call, call.invite, response, now, Dialog.as_uac(call.invite, response))

    def _on_orphan_2xx(self, response: SipResponse, addr: Addr, now: float) -> None:
        """A 2xx to an INVITE we have no call for (this process restarted while it rang):
        ACK it, then BYE the dialog it made; a retransmission gets the same ACK again
        (:mod:`.orphan`). Not taken from a source :attr:`allow_source` refuses."""
        key = orphan_key(response)
        sent = self._orphans.ack_of(key, now)
        if sent is not None:
            self.counters.retransmissions_received += 1
            self._wire.send(*sent, retransmission=True)
            return
        allow = self.allow_source
        try:
            if (allow is not None and not allow(addr[0])) or self._orphans.full(now):
                raise SipParseError("orphan 2xx not taken")
            sent_by = {(self.local_host, self.local_port)}
            if self.tls_port is not None:
                sent_by.add((self.local_host, self.tls_port))
            dialog = orphan_dialog(response, sent_by)
            dest = self._hop(dialog)
        except SipParseError:
            self.counters.stray_responses += 1
            return
        ack = dialog.request("ACK", self._via(dest), self._contact(dest), seq=dialog.local_seq)
        self._wire.send(bytes(ack), dest)
        self._orphans.remember(key, bytes(ack), dest, now)
        self.counters.orphans_hung_up += 1
        gone = Call(dialog.call_id, Role.CALLER, dialog.local, dialog.remote, dest, dialog=dialog)
        gone.state = CallState.TERMINATED  # never one of our calls: nothing reports on it
        bye = dialog.request("BYE", self._via(dest), self._contact(dest))
        bye.headers.add("User-Agent", self.user_agent)
        self._start_client(bye, dest, now, _Pending(gone, "cleanup"))

    def _resend_reinvite_ack(self, call: Call, response: SipResponse) -> None:
        if call._reack is not None and call._reack[0] == response.cseq.seq:
            self.counters.retransmissions_received += 1
            self._wire.send(call._reack[1], call._reack[2], retransmission=True)
        else:
            self.counters.stray_responses += 1

    def _on_reinvite_response(
        self, pending: _Pending, tx: ClientTransaction, response: SipResponse, now: float
    ) -> None:
        call = pending.call
        status = response.status
        if status < 200:
            return
        if status < 300:
            dialog = self._require_dialog(call)
            dialog.update_from_response(response)
            dest = self._hop(dialog)
            ack = dialog.request(
                "ACK", self._via(dest), self._contact(dest), seq=tx.request.cseq.seq
            )
            data = bytes(ack)
            self._wire.send(data, dest)
            call._reack = (tx.request.cseq.seq, data, dest)
            sdp = self._sdp_of(response)
            if sdp is not None:
                call.remote_sdp = sdp
            if pending.offer is not None:
                call.local_sdp = pending.offer
            call._auth_attempts = 0
            assert pending.request_id is not None
            self._events.append(
                RequestCompleted(call, pending.request_id, "INVITE", status, response.reason, sdp)
            )
            return
        if self._retry_auth(pending, tx, response, now):
            return
        self._request_outcome(pending, tx.request, response, now)

    def _request_outcome(
        self, pending: _Pending, request: SipRequest, response: SipResponse, now: float
    ) -> None:
        call = pending.call
        assert pending.request_id is not None
        if response.status < 300:
            call._auth_attempts = 0
            self._events.append(
                RequestCompleted(
                    call, pending.request_id, request.method, response.status, response.reason
                )
            )
            return
        self._events.append(
            RequestFailed(
                call, pending.request_id, request.method, response.status, response.reason
            )
        )
        if response.status == 481 and not call.is_over:
            # RFC 3261 12.2.1.2: the dialog is gone at the far end.
            self._terminate(call, now)
            self._events.append(CallEnded(call, "dialog does not exist", by_remote=True))

    def _drop_our_bye(self, call: Call) -> None:
        """Both ends hung up at once: the far end's BYE ends the dialog, so ours (which it
        may never answer: its side of the dialog is gone) stops being retransmitted."""
        for key, pending in list(self._pending.items()):
            if pending.call is call and pending.purpose == "bye":
                tx = self._client_tx[key]
                if not tx.terminated:
                    tx.terminate()
                    self.counters.byes_crossed += 1
                self._settle_client(tx)

    def _bye_done(self, call: Call, now: float) -> None:
        if call.state is CallState.TERMINATING:
            self._terminate(call, now)
            if not call._failure_reported:
                self._events.append(CallEnded(call, call._end_reason, by_remote=False))

    def _retry_auth(
        self, pending: _Pending, tx: ClientTransaction, response: SipResponse, now: float
    ) -> bool:
        """Resend an in-dialog request with credentials after 401/407; ``True`` if resent."""
        if response.status not in (401, 407):
            return False
        failure = self._authorize_retry(pending.call, tx.request, response, now, pending)
        if failure is None:
            return True
        if pending.purpose == "bye":
            return False
        assert pending.request_id is not None
        self._events.append(
            RequestFailed(
                pending.call, pending.request_id, tx.request.method, response.status, failure
            )
        )
        return True

    def _authorize_retry(
        self,
        call: Call,
        request: SipRequest,
        response: SipResponse,
        now: float,
        pending: _Pending,
    ) -> str | None:
        """Resend ``request`` answering the challenge; returns why not, or ``None`` if sent."""
        answer = self._answer_challenge(
            call.credentials, call._auth_attempts, call._nonce_counts, request, response
        )
        if isinstance(answer, str):
            return answer
        call._auth_attempts += 1
        headers = request.headers.copy()
        headers.remove("Via")
        headers.remove(answer[0])
        if pending.purpose == "invite" or call.dialog is None:
            seq = request.cseq.seq + 1
            call.dialog = None  # an early dialog of the challenged INVITE is void
        else:
            call.dialog.local_seq += 1
            seq = call.dialog.local_seq
        dest = call.peer_addr if call.dialog is None else self._hop(call.dialog)
        new_headers = Headers([("Via", str(self._via(dest)))])
        for name, value_ in headers:
            new_headers.add(name, str(CSeq(seq, request.method)) if name == "CSeq" else value_)
        new_headers.add(*answer)
        new_request = SipRequest(request.method, request.uri, new_headers, request.body)
        if pending.purpose == "invite":
            call.invite = new_request
        self._start_client(new_request, dest, now, pending)
        return None

    def _answer_challenge(
        self,
        credentials: Credentials | None,
        attempts: int,
        nonce_counts: dict[str, int],
        request: SipRequest,
        response: SipResponse,
    ) -> tuple[str, str] | str:
        """The (Proxy-)Authorization header answering a 401/407 to ``request`` after
        ``attempts`` answered challenges (``nonce_counts`` is updated), or why there is none."""
        if credentials is None:
            return "authentication required and no credentials were given"
        proxy = response.status == 407
        header = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        try:
            challenges = [parse_challenge(v, proxy=proxy) for v in response.headers.get_raw(header)]
            challenge = choose_challenge(challenges)
        except DigestError as exc:
            return f"cannot answer the challenge: {exc}"
        if credentials.realm is not None and credentials.realm != challenge.realm:
            return f"no credentials for realm {challenge.realm!r}"
        if attempts >= 1 and not challenge.stale:
            return f"credentials rejected by realm {challenge.realm!r}"
        if attempts >= 3:
            return "too many stale-nonce challenges"
        count = nonce_counts.get(challenge.nonce, 0) + 1
        nonce_counts[challenge.nonce] = count
        value = authorization(
            challenge,
            credentials,
            request.method,
            str(request.uri),
            cnonce=self._token(),
            nonce_count=count,
            body=request.body,
        )
        return ("Proxy-Authorization" if proxy else "Authorization", value)

    # ================================================================== internals: registrations

    def _send_register(
        self,
        registration: Registration,
        now: float,
        expires: int,
        authorization: tuple[str, str] | None = None,
    ) -> None:
        extra = Headers()
        self._common_headers(extra)
        if authorization is not None:
            extra.add(*authorization)
        # again each time: a connection that closed made the server a UDP peer for the wire
        self._note_transport(registration.registrar, registration.destination, strict=False)
        request = registration.request(self._via(registration.destination), expires, extra)
        registration.deadline = None  # the transaction times the attempt
        tx = ClientTransaction(request, registration.destination, self._wire, self.timers)
        self._client_tx[tx.key] = tx
        self._registering[tx.key] = (registration, expires)
        tx.start(now)
        self._arm(tx)

    def _on_register_response(
        self,
        registration: Registration,
        asked: int,
        request: SipRequest,
        response: SipResponse,
        now: float,
    ) -> None:
        if _overtaken(registration, asked):
            return
        status, reason = response.status, response.reason
        if status < 300:
            if asked == 0:
                self._end_registration(registration)
                self._events.append(Unregistered(registration, status, reason))
                return
            granted = registration.granted(response, asked)
            if granted > 0:
                registration.confirmed(granted, now)
                self._arm(registration)
                contacts = tuple(response.headers.get_list("Contact"))
                self._events.append(Registered(registration, granted, contacts))
                return
            detail = "the registrar's 2xx grants our binding no time (expires=0)"
        elif status in (401, 407):
            answer = self._answer_challenge(
                registration.credentials,
                registration.auth_attempts,
                registration.nonce_counts,
                request,
                response,
            )
            if not isinstance(answer, str):
                registration.auth_attempts += 1
                self._send_register(registration, now, asked, answer)
                return
            detail = answer
        elif status == 423 and asked:
            needed = min_expires(response)
            if needed is not None and needed > asked:
                registration.expires_requested = needed
                self._send_register(registration, now, needed)
                return
            detail = "interval too brief, and no usable Min-Expires"
        else:
            detail = ""
        self._register_failed(registration, asked, status, reason, detail, response, now)

    def _register_failed(
        self,
        registration: Registration,
        asked: int,
        status: int,
        reason: str,
        detail: str,
        response: SipResponse | None,
        now: float,
    ) -> None:
        if _overtaken(registration, asked):
            return
        if asked == 0:  # removing the binding failed: it lapses at the registrar on its own
            registration.last_status, registration.last_reason = status, reason
            self._end_registration(registration)
            self._events.append(Unregistered(registration, status, reason))
            return
        retry_at = registration.failed(status, reason, response, now)
        self._arm(registration)
        self._events.append(
            RegistrationFailed(registration, status, reason, detail, response is None, retry_at)
        )

    def _fire_registration(self, registration: Registration, now: float) -> None:
        """A refresh or a retry is due."""
        if registration.state is RegistrationState.FAILED:
            registration.state = RegistrationState.REGISTERING
        if registration.state in (RegistrationState.REGISTERING, RegistrationState.REGISTERED):
            self._send_register(registration, now, registration.expires_requested)

    # ================================================================== internals: timers

    def _settle_client(self, tx: ClientTransaction) -> None:
        if tx.terminated:
            self._client_tx.pop(tx.key, None)
            self._pending.pop(tx.key, None)
            self._registering.pop(tx.key, None)
        else:
            self._arm(tx)

    def _settle_server(self, tx: ServerTransaction) -> None:
        if tx.terminated:
            if self._server_tx.get(tx.key) is tx:
                del self._server_tx[tx.key]
        else:
            self._arm(tx)

    def _fire_client(self, tx: ClientTransaction, now: float) -> None:
        pending = self._pending.get(tx.key)
        registering = self._registering.get(tx.key)
        timed_out = tx.handle_timer(now)
        self._settle_client(tx)
        if timed_out:
            timer = "F" if tx.request.method != "INVITE" else "B"
            detail = f"no final response (Timer {timer})"
            self._client_failed(tx, pending, registering, 408, detail, now)

    def flow_failed(self, addr: Addr, now: float) -> None:
        """The connection to ``addr`` is dead although it looked open (a keep-alive went
        unanswered, RFC 5626 4.4.1): each registration bound through it registers again at
        once, on a new connection (its failure then moves it on as any other)."""
        self.forget_stream_peer(addr)
        for registration in list(self._registrations.values()):
            if (
                registration.destination == addr
                and registration.state is RegistrationState.REGISTERED
                and registration.deadline is not None  # no REGISTER of it in flight
            ):
                registration.deadline = now
                self._arm(registration)

    def connection_failed(self, addr: Addr, now: float, detail: str) -> None:
        """The TCP or TLS connection to ``addr`` could not be opened: each of our requests
        waiting on it fails at once as if answered 503 (RFC 3261 8.1.3.1), ``detail`` saying
        why (e.g. the certificate check that failed)."""
        self.forget_stream_peer(addr)
        for tx in list(self._client_tx.values()):
            if tx.dest != addr or tx.terminated:
                continue
            pending = self._pending.get(tx.key)
            registering = self._registering.get(tx.key)
            tx.terminate()
            self._settle_client(tx)
            self._client_failed(tx, pending, registering, 503, detail, now)

    def _client_failed(
        self,
        tx: ClientTransaction,
        pending: _Pending | None,
        registering: tuple[Registration, int] | None,
        status: int,
        detail: str,
        now: float,
    ) -> None:
        """Our request got no final response: it timed out (408) or could not be sent (503)."""
        reason = status_reason(status)
        if registering is not None:
            registration, asked = registering
            self._register_failed(registration, asked, status, reason, detail, None, now)
            return
        if pending is None:
            return
        call = pending.call
        if pending.purpose == "invite":
            if call.state in (CallState.CALLING, CallState.PROCEEDING, CallState.CANCELLING):
                reported = call._failure_reported
                call.end_status = status
                self._terminate(call, now)
                if not reported:
                    unanswered = not call._provisional_seen
                    self._events.append(
                        CallFailed(call, status, reason, detail, status == 408, unanswered)
                    )
        elif pending.purpose == "bye":
            self._bye_done(call, now)
        elif pending.purpose in ("request", "reinvite") and pending.request_id is not None:
            self._events.append(
                RequestFailed(
                    call, pending.request_id, tx.request.method, status, reason, status == 408
                )
            )

    def _fire_call(self, call: Call, now: float) -> None:
        due = sorted(name for name, when in call.deadlines.items() if when <= now)
        for name in due:
            call.deadlines.pop(name, None)
        for name in due:
            if name == "ok" and call._ok is not None:
                self._wire.send(*call._ok, retransmission=True)
                call._ok_interval = min(2 * call._ok_interval, self.timers.t2)
                call.deadlines["ok"] = now + call._ok_interval
            elif name == "ok_giveup" and call._ok is not None:
                self._stop_2xx_retransmission(call)
                if call.state is CallState.ANSWERED:
                    self._send_bye(call, now, "no ACK")
            elif name == "dial" and call.state in (CallState.CALLING, CallState.PROCEEDING):
                self._dial_timeout(call, now)
            elif name == "silence" and call.state is CallState.CALLING:
                host, port = call.peer_addr
                detail = f"no response from {host}:{port}"
                self._events.append(CallFailed(call, 408, "Request Timeout", detail, True, True))
                call._failure_reported = True
                self._abandon_invite(call)
                call.end_status = 408
                self._terminate(call, now)
            elif name == "cancel" and call.state is CallState.CANCELLING:
                self._abandon_invite(call)
                reported = call._failure_reported
                call.end_status = 408
                self._terminate(call, now)
                if not reported:
                    self._events.append(
                        CallFailed(
                            call, 408, "Request Timeout", "no final response to CANCEL", True
                        )
                    )
            elif name == "forget" and self._calls.get(call.call_id) is call:
                del self._calls[call.call_id]
        self._arm(call)

    def _dial_timeout(self, call: Call, now: float) -> None:
        detail = "no answer before the dial timeout"
        self._events.append(CallFailed(call, 408, "Request Timeout", detail, True))
        call._failure_reported = True
        if call._provisional_seen:
            self.cancel(call, now)
        else:
            self._abandon_invite(call)
            call.end_status = 408
            self._terminate(call, now)

    def _abandon_invite(self, call: Call) -> None:
        for key, pending in list(self._pending.items()):
            if pending.call is call and pending.purpose == "invite":
                self._client_tx[key].terminate()
                self._settle_client(self._client_tx[key])

    # ================================================================== small helpers

    def _invite_in_flight(self, call: Call) -> bool:
        return any(
            p.call is call and p.purpose == "reinvite" and not self._client_tx[k].terminated
            for k, p in self._pending.items()
        )

    def _require_dialog(self, call: Call) -> Dialog:
        if call.dialog is None:
            raise SipStateError("the call has no dialog yet")
        return call.dialog

    def _require_sdp(self, call: Call) -> SessionDescription:
        if call.local_sdp is None:
            raise SipStateError("the call has no local SDP to modify")
        return call.local_sdp

    def _local_direction(self, call: Call) -> Direction:
        media = audio_media(self._require_sdp(call))
        return media.direction if media else Direction.SENDRECV

    @staticmethod
    def _sdp_of(message: SipMessage) -> SessionDescription | None:
        if not message.body or message.content_type != SDP_CONTENT_TYPE:
            return None
        try:
            sdp = SessionDescription.parse(message.body)
            check_media(sdp)
        except (SipParseError, SdpNegotiationError):
            return None  # unusable: as if there were none (the phone then ends the call)
        return sdp


def status_reason(status: int) -> str:
    """The standard reason phrase of ``status`` (empty when unknown)."""
    return REASON_PHRASES.get(status, "")


def _overtaken(registration: Registration, asked: int) -> bool:
    """Whether an outcome is stale: the registration is over, or an unregister overtook the
    REGISTER (``asked`` > 0) it answers."""
    return registration.is_over or (
        registration.state is RegistrationState.UNREGISTERING and asked != 0
    )


def _tried_again(earlier: Call, from_tag: str, seq: int) -> bool:
    """Whether a new INVITE with the Call-ID of ``earlier`` (still remembered, 64*T1 after it
    ended) is that refused call tried again with a higher CSeq (RFC 3261 8.1.3.5: after a 486,
    a 503 with Retry-After, a 422), a new request rather than a merged copy (8.2.2.2)."""
    dialog = earlier.dialog
    return (
        earlier.role is Role.CALLEE
        and earlier.state is CallState.TERMINATED
        and dialog is not None
        and dialog.state is not DialogState.CONFIRMED
        and dialog.remote_tag == from_tag
        and seq > (dialog.remote_seq or 0)
    )
