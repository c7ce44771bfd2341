"""The errors of the SIP layer."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dtmfgraph.sip.message import SipMessage


class SipError(Exception):
    """Base of every error raised by :mod:`dtmfgraph.sip`."""


class SipParseError(SipError):
    """A SIP message, header, URI or SDP body that does not follow the grammar.

    ``status`` is the response a UAS should answer a request carrying the fault with
    (400 unless a more precise code applies: 416 for an unsupported URI scheme, 505 for an
    unsupported SIP version). ``message`` is the request or response as far as it could be
    split into a start line and headers, or ``None`` when even that failed.
    """

    def __init__(self, text: str, *, status: int = 400, message: SipMessage | None = None) -> None:
        super().__init__(text)
        self.status = status
        self.message = message


class SdpParseError(SipParseError):
    """An SDP body that does not follow RFC 4566."""


class SdpNegotiationError(SipError):
    """An SDP offer that has no media format in common with ours (answer 488)."""


class DigestError(SipError):
    """A digest challenge we cannot answer (unknown algorithm, unsupported qop, bad syntax)."""


class SipStateError(SipError):
    """An API call that the call's current state does not allow (e.g. ``answer`` after ``bye``)."""
