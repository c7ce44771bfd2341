"""What the phone's modules share: its errors, the results and ends of calls, its policies, and
the helpers and constants of codecs and SRTP keys (see :mod:`dtmfgraph.media.phone`)."""

from __future__ import annotations

import enum
import itertools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeAlias

from dtmfgraph.rtp import Codec as RtpCodec
from dtmfgraph.rtp.srtp import SrtpKey, SrtpSuite
from dtmfgraph.sip import PCMA, PCMU, CryptoAttribute
from dtmfgraph.sip import Codec as SdpCodec

from .udp import MediaError

if TYPE_CHECKING:
    from .incoming import IncomingInvite

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
