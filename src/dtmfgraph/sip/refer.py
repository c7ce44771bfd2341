"""REFER (RFC 3515) and the NOTIFYs that report on it (``message/sipfrag``, RFC 3420): sans-I/O.

The :class:`~dtmfgraph.sip.agent.UserAgent` delegates here: it sends REFER with the headers
:func:`refer_headers` makes and hands each in-dialog NOTIFY to :func:`read_notify`, which says
how to answer it and which :class:`TransferProgress` event (if any) it means.

What we send: ``Refer-To: <target>`` (with ``?Replaces=...`` for an attended transfer, RFC 3891
carried as RFC 5589 section 7 says) and ``Referred-By: <our URI>`` (RFC 3892). What we take: a
NOTIFY with ``Event: refer`` (an ``;id=`` parameter is allowed), a sipfrag body whose first line
is a status line (``SIP/2.0 180 Ringing``); ``Subscription-State: terminated`` ends the
subscription. Anything else: 489 Bad Event (another package), 400 (no usable sipfrag).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, unquote

from dtmfgraph.sip.events import Event
from dtmfgraph.sip.message import SipRequest

SIPFRAG: Final = "message/sipfrag"
SIPFRAG_TYPE: Final = "message/sipfrag;version=2.0"
MAX_SIPFRAG: Final = 4096
"""The longest sipfrag body we read (its first line is all we use)."""


class ReferError(ValueError):
    """A sipfrag body that is not a SIP status line."""


@dataclass(frozen=True, slots=True, eq=False)
class TransferProgress(Event):
    """A NOTIFY about a REFER we sent: the transferee's call to the target got ``status``.

    ``final``: a final status (>= 200); ``terminated``: the far end ended the subscription."""

    status: int
    reason: str
    terminated: bool

    @property
    def final(self) -> bool:
        return self.status >= 200


@dataclass(frozen=True, slots=True, eq=False)
class ReferReceived(Event):
    """The far end asks us to call ``target`` (its REFER); answer with
    ``UserAgent.answer_refer`` (202 or a refusal), report with ``UserAgent.notify_refer``."""

    target: str
    replaces: Replaces | None
    referred_by: str | None


@dataclass(frozen=True, slots=True)
class Replaces:
    """The dialog an attended transfer replaces (RFC 3891): ``to_tag`` is the tag of the UA
    that will receive the INVITE with Replaces (the transfer target)."""

    call_id: str
    to_tag: str
    from_tag: str

    def header_value(self) -> str:
        return f"{self.call_id};to-tag={self.to_tag};from-tag={self.from_tag}"


def refer_headers(
    target: str, referred_by: str, replaces: Replaces | None = None
) -> tuple[tuple[str, str], ...]:
    """The headers of a REFER to ``target`` (a SIP URI) sent by ``referred_by``."""
    uri = target
    if replaces is not None:
        sep = "&" if "?" in uri else "?"
        uri = f"{uri}{sep}Replaces={quote(replaces.header_value(), safe='')}"
    return (("Refer-To", f"<{uri}>"), ("Referred-By", f"<{referred_by}>"))


def parse_refer_to(value: str) -> tuple[str, Replaces | None]:
    """The target URI of a ``Refer-To`` value and the dialog its ``Replaces`` header names
    (``ReferError`` for anything that is not a SIP URI)."""
    text = value.strip()
    if text.startswith("<"):
        end = text.find(">")
        if end < 0:
            raise ReferError("Refer-To: no closing '>'")
        text = text[1:end]
    else:  # without <>, what follows ';' are header parameters
        text = text.split(";", 1)[0]
    uri, _, headers = text.partition("?")
    if not uri.lower().startswith(("sip:", "sips:")) or len(uri) > 512:
        raise ReferError(f"Refer-To: not a SIP URI: {uri[:80]!r}")
    replaces = None
    for item in headers.split("&") if headers else ():
        name, _, raw = item.partition("=")
        if name.lower() == "replaces":
            replaces = parse_replaces(unquote(raw))
    return uri, replaces


def parse_replaces(value: str) -> Replaces:
    """A ``Replaces`` header value (RFC 3891: ``call-id;to-tag=..;from-tag=..``, other
    parameters such as ``early-only`` ignored); ``ReferError`` when a part is missing."""
    parts = value.strip().split(";")
    params = dict(p.strip().partition("=")[::2] for p in parts[1:])
    to_tag, from_tag = params.get("to-tag"), params.get("from-tag")
    if not parts[0].strip() or not to_tag or not from_tag or len(value) > 1024:
        raise ReferError("Replaces needs a Call-ID, to-tag and from-tag")
    return Replaces(parts[0].strip(), to_tag, from_tag)


def parse_sipfrag(body: bytes) -> tuple[int, str]:
    """The status code and reason of a sipfrag body's status line."""
    head = body[:MAX_SIPFRAG].split(b"\n", 1)[0].strip().decode("utf-8", "replace")
    parts = head.split(" ", 2)
    if len(parts) < 2 or parts[0].upper() != "SIP/2.0" or not parts[1].isdigit():
        raise ReferError(f"not a SIP status line: {head[:80]!r}")
    status = int(parts[1])
    if not 100 <= status <= 699:
        raise ReferError(f"status {status} out of range")
    return status, parts[2] if len(parts) > 2 else ""


def sipfrag(status: int, reason: str) -> bytes:
    """A sipfrag body reporting ``status`` (for the NOTIFYs we send about a REFER we took)."""
    return f"SIP/2.0 {status} {reason}\r\n".encode()


@dataclass(frozen=True, slots=True)
class NotifyVerdict:
    """How to answer a NOTIFY, and what it reported (``None``: nothing to report)."""

    status: int
    reason: str = ""
    progress: tuple[int, str, bool] | None = None
    """(status, reason, terminated) of the transferee's call."""


def read_notify(request: SipRequest) -> NotifyVerdict:
    """Judge an in-dialog NOTIFY (see the module docstring)."""
    event = (request.headers.get("Event") or request.headers.get("o") or "").strip()
    if event.split(";", 1)[0].strip().lower() != "refer":
        return NotifyVerdict(489, "Bad Event")
    state = (request.headers.get("Subscription-State") or "").split(";", 1)[0].strip().lower()
    terminated = state == "terminated"
    ctype = (request.content_type or "").split(";", 1)[0].strip().lower()
    if not request.body:
        return NotifyVerdict(200, progress=None)  # an empty NOTIFY: only the state
    if ctype != SIPFRAG:
        return NotifyVerdict(415, "Unsupported Media Type")
    try:
        status, reason = parse_sipfrag(request.body)
    except ReferError:
        return NotifyVerdict(400, "Bad Request")
    return NotifyVerdict(200, progress=(status, reason, terminated))


__all__ = [
    "SIPFRAG",
    "SIPFRAG_TYPE",
    "NotifyVerdict",
    "ReferError",
    "ReferReceived",
    "Replaces",
    "TransferProgress",
    "parse_refer_to",
    "parse_replaces",
    "parse_sipfrag",
    "read_notify",
    "refer_headers",
    "sipfrag",
]
