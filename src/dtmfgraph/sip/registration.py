"""A binding of our Contact at a registrar (RFC 3261 10): states, requests, refresh and retry.

A :class:`Registration` builds each REGISTER (one Call-ID and From tag for its whole life, the
CSeq rising by one each time) and turns final responses into its next state and deadline; the
:class:`~dtmfgraph.sip.agent.UserAgent` runs the transactions and answers digest challenges.
Time comes in as ``now``: nothing here reads a clock.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Final

from dtmfgraph.sip.digest import Credentials
from dtmfgraph.sip.errors import SipParseError
from dtmfgraph.sip.headers import CSeq, Headers, Via
from dtmfgraph.sip.message import SipRequest, SipResponse
from dtmfgraph.sip.transaction import Addr
from dtmfgraph.sip.uri import NameAddr, SipUri

DEFAULT_EXPIRES: Final = 3600
"""Seconds of binding asked for unless told otherwise (RFC 3261 10.2.1.1's default)."""
DEFAULT_RETRY_S: Final = 30.0
"""Wait before trying again after a failure the registrar gave no ``Retry-After`` for."""
REFRESH_MARGIN_S: Final = 60.0
"""A binding is refreshed this long before it runs out (halfway, for bindings under twice it)."""
MAX_RETRY_AFTER_S: Final = 3600.0
"""A ``Retry-After`` above this is capped."""


class RegistrationState(enum.StrEnum):
    """Where a registration stands."""

    REGISTERING = "registering"
    """A REGISTER is on its way; no binding confirmed yet (or the last one ran out)."""
    REGISTERED = "registered"
    """The registrar holds our binding; a refresh is due at :attr:`Registration.deadline`."""
    FAILED = "failed"
    """The last REGISTER failed; another goes at :attr:`Registration.deadline`."""
    UNREGISTERING = "unregistering"
    """A REGISTER with ``Expires: 0`` is on its way."""
    UNREGISTERED = "unregistered"
    """Over: our binding was removed (or never made). Nothing more is sent."""


@dataclass(eq=False, repr=False)
class Registration:
    """One address-of-record bound to our Contact. Read it; change it through the UserAgent."""

    aor: SipUri
    """The address-of-record (From and To), e.g. ``sip:bot@pbx.example.com``."""
    registrar: SipUri
    """The Request-URI: the AOR's domain (and port) unless given."""
    destination: Addr
    """Where REGISTERs are sent."""
    contact: NameAddr
    """Our Contact, the binding's target."""
    call_id: str
    tag: str
    expires_requested: int = DEFAULT_EXPIRES
    credentials: Credentials | None = None
    retry_s: float = DEFAULT_RETRY_S
    state: RegistrationState = RegistrationState.REGISTERING
    expires: int | None = None
    """Seconds the registrar granted in its last 2xx."""
    registered_until: float | None = None
    """When the binding the registrar confirmed runs out (``now`` + granted expires)."""
    deadline: float | None = None
    """When the next REGISTER goes (refresh or retry), or ``None``."""
    last_status: int | None = None
    last_reason: str = ""
    seq: int = 0
    auth_attempts: int = 0
    nonce_counts: dict[str, int] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"<Registration {self.aor} {self.state}>"

    @property
    def is_over(self) -> bool:
        """Whether the registration has ended (nothing more will be sent)."""
        return self.state is RegistrationState.UNREGISTERED

    def next_deadline(self) -> float | None:
        """When the user agent must next act on this registration."""
        return self.deadline

    def request(self, via: Via, expires: int, extra: Headers | None = None) -> SipRequest:
        """The next REGISTER asking for ``expires`` seconds (0: remove our binding), with
        ``extra`` headers (Allow, User-Agent, an Authorization) appended."""
        self.seq += 1
        headers = Headers()
        headers.add("Via", str(via))
        headers.add("Max-Forwards", "70")
        headers.add("From", str(NameAddr(self.aor, params={"tag": self.tag})))
        headers.add("To", str(NameAddr(self.aor)))
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", str(CSeq(self.seq, "REGISTER")))
        headers.add("Contact", str(self.contact))
        headers.add("Expires", str(expires))
        for name, value in extra or ():
            headers.add(name, value)
        return SipRequest("REGISTER", self.registrar, headers)

    def granted(self, response: SipResponse, asked: int) -> int:
        """Seconds a 2xx grants our binding: our Contact's ``expires`` parameter, else the
        ``Expires`` header, else what we asked for (RFC 3261 10.2.4)."""
        ours = self.contact.sip_uri
        try:
            contacts = response.contacts
        except SipParseError:
            contacts = []
        for contact in contacts:
            uri = contact.uri
            if (
                isinstance(uri, SipUri)
                and uri.user == ours.user
                and uri.host.lower() == ours.host.lower()
                and uri.address[1] == ours.address[1]
            ):
                value = _seconds(contact.params.get("expires"))
                if value is not None:
                    return value
        value = _seconds(response.headers.get("Expires"))
        return asked if value is None else value

    def confirmed(self, expires: int, now: float) -> None:
        """A 2xx granted ``expires`` seconds: refresh before they run out."""
        self.state = RegistrationState.REGISTERED
        self.expires = expires
        self.registered_until = now + expires
        self.auth_attempts = 0
        lead = REFRESH_MARGIN_S if expires >= 2 * REFRESH_MARGIN_S else expires / 2.0
        self.deadline = now + max(expires - lead, 1.0)

    def failed(self, status: int, reason: str, response: SipResponse | None, now: float) -> float:
        """The attempt failed: try again after ``Retry-After`` or :attr:`retry_s`; returns
        when. A binding confirmed earlier still counts until it runs out."""
        self.state = RegistrationState.FAILED
        self.last_status, self.last_reason = status, reason
        self.auth_attempts = 0
        wait = self.retry_s
        if response is not None:
            # delta-seconds, then an optional (comment) and ;params (RFC 3261 20.33)
            raw = response.headers.get("Retry-After") or ""
            header = _seconds(raw.split(";")[0].split("(")[0])
            if header is not None and header > 0:
                wait = min(float(header), MAX_RETRY_AFTER_S)
        self.deadline = now + wait
        return self.deadline

    def ended(self) -> None:
        """The binding is gone (or was never made): stop."""
        self.state = RegistrationState.UNREGISTERED
        self.deadline = None
        self.expires = None
        self.registered_until = None


def min_expires(response: SipResponse) -> int | None:
    """The ``Min-Expires`` of a 423 (Interval Too Brief), if readable."""
    return _seconds(response.headers.get("Min-Expires"))


def _seconds(text: str | None) -> int | None:
    if text is None:
        return None
    text = text.strip()
    if not text.isascii() or not text.isdigit():
        return None
    if len(text) > 10:  # more than 32 bits: capped, never an unbounded int()
        return 2**32 - 1
    return min(int(text), 2**32 - 1)
