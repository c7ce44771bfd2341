"""Counters a user agent keeps about what it saw and did on the wire."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(slots=True)
class SipCounters:
    """Monotonic counts since the user agent was created."""

    datagrams_received: int = 0
    datagrams_sent: int = 0
    malformed_dropped: int = 0
    """Datagrams that could not be parsed and could not be answered (or were responses)."""
    bad_requests_answered: int = 0
    """Unparseable requests answered with 400 (or 416/505)."""
    retransmissions_sent: int = 0
    """Requests and responses sent again by a retransmission timer."""
    retransmissions_received: int = 0
    """Requests or responses that matched a transaction as a retransmission."""
    stray_responses: int = 0
    """Responses that matched no transaction and no dialog."""
    unknown_dialog: int = 0
    """In-dialog requests answered 481."""
    timeouts: int = 0
    """Client transactions ended by Timer B or F."""
    auth_refused: int = 0
    """Calls to us without a good answer to our digest challenge (401 or 403)."""
    forbidden: int = 0
    """Out-of-dialog requests from sources not allowed (``UserAgent.allow_source``), answered
    403."""
    orphans_hung_up: int = 0
    """2xx to INVITEs we had no call for (sent before a restart), ACKed and then BYEd."""

    sdp_refused: int = 0
    """INVITEs refused with 488 before ringing because their SDP cannot be used safely (an
    address that is not an IP literal, a number out of range)."""

    ended_dialog_invites: int = 0
    """INVITEs (no To tag) of a dialog that is over, a late retransmission or a stray copy,
    answered 481 instead of starting a new call (``sip/ended.py``)."""
    byes_crossed: int = 0
    """Our BYEs no longer retransmitted because the far end's BYE for the same dialog came
    first (both hung up at once) and was answered 200."""

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict."""
        return asdict(self)
