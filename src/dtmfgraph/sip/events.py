"""What a :class:`~dtmfgraph.sip.agent.UserAgent` reports through ``next_event()``.

Every call event names the :class:`~dtmfgraph.sip.call.Call` it concerns; registration
events name the :class:`~dtmfgraph.sip.registration.Registration`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dtmfgraph.sip.sdp import SessionDescription
from dtmfgraph.sip.uri import NameAddr

if TYPE_CHECKING:
    from dtmfgraph.sip.call import Call
    from dtmfgraph.sip.registration import Registration


@dataclass(frozen=True, slots=True, eq=False)
class Event:
    """Base of all user agent events."""

    call: Call


@dataclass(frozen=True, slots=True, eq=False)
class IncomingCall(Event):
    """An INVITE arrived (100 Trying already sent); answer, ring or reject it."""

    caller: NameAddr
    callee: NameAddr
    offer: SessionDescription | None
    replaces: Call | None = None
    """The confirmed call of ours its ``Replaces`` header names (RFC 3891): the new call is
    to take that one's place (an attended transfer to us)."""


@dataclass(frozen=True, slots=True, eq=False)
class CallRinging(Event):
    """Our INVITE got a provisional response other than 100 (180 Ringing, 183 Progress...)."""

    status: int
    reason: str
    sdp: SessionDescription | None = None


@dataclass(frozen=True, slots=True, eq=False)
class CallEstablished(Event):
    """The dialog is confirmed: 2xx received and ACKed (caller) or the ACK arrived (callee).

    ``sdp`` is the peer's session description (its answer, or its offer when we answered).
    """

    sdp: SessionDescription | None


@dataclass(frozen=True, slots=True, eq=False)
class CallFailed(Event):
    """Our INVITE ended without a call: a 3xx-6xx, a timeout (408) or an auth failure."""

    status: int
    reason: str
    detail: str = ""
    timed_out: bool = False
    unanswered: bool = False
    """Not a single response came from the destination (Timer B, or the INVITE's
    ``give_up_s``): another server for the same target may do better (RFC 3263 4.3)."""


@dataclass(frozen=True, slots=True, eq=False)
class CallEnded(Event):
    """A call that was ringing or established is over (BYE, CANCEL, no ACK...)."""

    reason: str
    by_remote: bool


@dataclass(frozen=True, slots=True, eq=False)
class InfoDtmf(Event):
    """A SIP INFO carried a DTMF key (``F`` is flash); its 200 is already sent."""

    key: str
    duration_ms: int | None


@dataclass(frozen=True, slots=True, eq=False)
class ReInvite(Event):
    """The peer changed the session (hold, resume, new address); our answer is already sent."""

    offer: SessionDescription | None
    answer: SessionDescription | None
    on_hold: bool


@dataclass(frozen=True, slots=True, eq=False)
class RequestCompleted(Event):
    """An in-dialog request we sent (INFO, re-INVITE, OPTIONS) got a 2xx."""

    request_id: int
    method: str
    status: int
    reason: str
    sdp: SessionDescription | None = None


@dataclass(frozen=True, slots=True, eq=False)
class RequestFailed(Event):
    """An in-dialog request we sent got a non-2xx final response or timed out (408)."""

    request_id: int
    method: str
    status: int
    reason: str
    timed_out: bool = False


@dataclass(frozen=True, slots=True, eq=False)
class RegistrationEvent:
    """Base of the registration events."""

    registration: Registration


@dataclass(frozen=True, slots=True, eq=False)
class Registered(RegistrationEvent):
    """The registrar confirmed our binding (first time or a refresh) for ``expires`` seconds;
    ``contacts`` are every binding of the AOR it listed."""

    expires: int
    contacts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, eq=False)
class RegistrationFailed(RegistrationEvent):
    """A REGISTER failed (a 3xx-6xx, a timeout, an unanswerable challenge); the next try goes
    at ``retry_at``."""

    status: int
    reason: str
    detail: str = ""
    timed_out: bool = False
    retry_at: float | None = None


@dataclass(frozen=True, slots=True, eq=False)
class Unregistered(RegistrationEvent):
    """Our binding was removed (``status`` 2xx), or removing it failed (and it will lapse at
    the registrar on its own); the registration is over."""

    status: int
    reason: str
