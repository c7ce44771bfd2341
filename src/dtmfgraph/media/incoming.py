"""A call ringing at a :class:`~dtmfgraph.media.phone.Phone`, to answer or reject."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from dtmfgraph.sip import (
    TELEPHONE_EVENT,
    CallEnded,
    CallState,
    IncomingCall,
    SdpNegotiationError,
    audio_media,
    build_answer,
    build_offer,
)
from dtmfgraph.sip import Call as SipCall

from ..refusals import out_of_fds
from .phone_call import PhoneCall
from .phone_types import (
    RTP_FULL_RETRY_AFTER_S,
    CallEnd,
    CallEndedError,
    EndReason,
    PhoneError,
    _answer_key,
    _sdp_codecs,
)
from .udp import (
    MediaError,
    PortRangeExhaustedError,
    open_udp_endpoint,
)

if TYPE_CHECKING:
    from .phone import Phone

logger = logging.getLogger(__name__)


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
