"""SIP requests and responses: parse from a datagram, serialize to bytes (RFC 3261 7, 18.3)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from dtmfgraph.sip.errors import SipParseError
from dtmfgraph.sip.grammar import is_token, small_int
from dtmfgraph.sip.headers import CSeq, Headers, Via
from dtmfgraph.sip.uri import NameAddr, Uri, parse_uri

SIP_VERSION: Final = "SIP/2.0"
MAX_MESSAGE_SIZE: Final = 65535
"""Largest datagram we parse (the UDP limit)."""

REASON_PHRASES: Final[dict[int, str]] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}

_STATUS_LINE_RE: Final = re.compile(r"^SIP/2\.0 ([1-6][0-9]{2}) ?(.*)$", re.IGNORECASE)
_VERSION_RE: Final = re.compile(r"^SIP/(\d+)\.(\d+)$", re.IGNORECASE)
_MANDATORY: Final = ("Via", "From", "To", "Call-ID", "CSeq")


class _Accessors:
    """Typed views of the headers every SIP message carries."""

    __slots__ = ()
    headers: Headers
    body: bytes

    @property
    def vias(self) -> list[Via]:
        """All Via values, topmost first."""
        return [Via.parse(v) for v in self.headers.get_list("Via")]

    @property
    def top_via(self) -> Via:
        """The topmost Via."""
        value = self.headers.get_list("Via")
        if not value:
            raise SipParseError("no Via header")
        return Via.parse(value[0])

    @property
    def from_(self) -> NameAddr:
        """The From value."""
        return NameAddr.parse(self._single("From"))

    @property
    def to(self) -> NameAddr:
        """The To value."""
        return NameAddr.parse(self._single("To"))

    @property
    def call_id(self) -> str:
        """The Call-ID."""
        return self._single("Call-ID")

    @property
    def cseq(self) -> CSeq:
        """The CSeq value."""
        return CSeq.parse(self._single("CSeq"))

    @property
    def contacts(self) -> list[NameAddr]:
        """Contact values (empty for ``*`` or none)."""
        values = self.headers.get_list("Contact")
        if values == ["*"]:
            return []
        return [NameAddr.parse(v) for v in values]

    @property
    def record_routes(self) -> list[NameAddr]:
        """Record-Route values in message order."""
        return [NameAddr.parse(v) for v in self.headers.get_list("Record-Route")]

    @property
    def routes(self) -> list[NameAddr]:
        """Route values in message order."""
        return [NameAddr.parse(v) for v in self.headers.get_list("Route")]

    @property
    def content_type(self) -> str | None:
        """The media type of the body, lower case, without parameters."""
        value = self.headers.get("Content-Type")
        if value is None:
            return None
        return value.split(";", 1)[0].strip().lower()

    def _single(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise SipParseError(f"missing {name} header")
        return value

    def _serialize(self, start_line: str) -> bytes:
        headers = self.headers.copy()
        headers.set("Content-Length", str(len(self.body)))
        return (start_line + "\r\n" + headers.serialize() + "\r\n").encode() + self.body


@dataclass(eq=False, slots=True)
class SipRequest(_Accessors):
    """A SIP request. ``bytes(request)`` serializes it with a correct Content-Length."""

    method: str
    uri: Uri
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    def __bytes__(self) -> bytes:
        return self._serialize(f"{self.method} {self.uri} {SIP_VERSION}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SipRequest) and bytes(self) == bytes(other)

    __hash__ = None  # type: ignore[assignment]


@dataclass(eq=False, slots=True)
class SipResponse(_Accessors):
    """A SIP response. ``bytes(response)`` serializes it with a correct Content-Length."""

    status: int
    reason: str = ""
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    def __bytes__(self) -> bytes:
        reason = self.reason or REASON_PHRASES.get(self.status, "")
        return self._serialize(f"{SIP_VERSION} {self.status} {reason}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SipResponse) and bytes(self) == bytes(other)

    __hash__ = None  # type: ignore[assignment]


SipMessage = SipRequest | SipResponse


def parse_message(data: bytes) -> SipMessage:
    """Parse one datagram into a request or response.

    Raises :class:`SipParseError` (and nothing else) on any fault. When the start line and
    header block could be split, the error's ``message`` holds what was read so a UAS can
    still answer 400.
    """
    if len(data) > MAX_MESSAGE_SIZE:
        raise SipParseError("message too large", status=513)
    data = data.lstrip(b"\r\n")  # RFC 3261 7.5: ignore leading empty lines
    head, body = _split_head(data)
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipParseError("header block is not UTF-8") from exc
    lines = _unfold(text)
    if not lines or not lines[0]:
        raise SipParseError("empty message")
    message = _start_line(lines[0])
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            raise SipParseError(f"header line without ':' {line!r}", message=message)
        name = name.strip()
        if not is_token(name):
            raise SipParseError(f"bad header name {name!r}", message=message)
        message.headers.add(name, value)
    message.body = _body(message, body)
    _validate(message)
    return message


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    crlf = data.find(b"\r\n\r\n")
    lf = data.find(b"\n\n")
    if crlf < 0 and lf < 0:
        # A datagram without the empty line has no body; tolerate a missing final CRLF.
        return data, b""
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return data[:crlf], data[crlf + 4 :]
    return data[:lf], data[lf + 2 :]


def _unfold(text: str) -> list[str]:
    lines: list[str] = []
    for raw in text.replace("\r\n", "\n").split("\n"):
        if "\r" in raw or "\x00" in raw:
            raise SipParseError("stray CR or NUL in header block")
        if raw[:1] in (" ", "\t"):
            if len(lines) < 2:
                raise SipParseError("continuation line without a header")
            lines[-1] = lines[-1].rstrip() + " " + raw.strip()
        else:
            lines.append(raw)
    if len(lines) > 1 and not lines[-1]:
        lines.pop()  # a header block that ended in CRLF without the empty line
    return lines


def _start_line(line: str) -> SipMessage:
    if line.upper().startswith("SIP/"):
        match = _STATUS_LINE_RE.match(line)
        if match is None:
            raise SipParseError(f"bad status line {line!r}")
        return SipResponse(int(match.group(1)), match.group(2).strip())
    parts = line.split(" ")
    if len(parts) != 3:
        raise SipParseError(f"bad request line {line!r}")
    method, uri_text, version = parts
    if not is_token(method):
        raise SipParseError(f"bad method {method!r}")
    version_match = _VERSION_RE.match(version)
    if version_match is None:
        raise SipParseError(f"bad SIP version {version!r}")
    try:
        uri = parse_uri(uri_text)
    except SipParseError as exc:
        raise SipParseError(f"bad Request-URI {uri_text!r}: {exc}") from exc
    request = SipRequest(method, uri)
    if (version_match.group(1), version_match.group(2)) != ("2", "0"):
        raise SipParseError(f"unsupported version {version!r}", status=505, message=request)
    return request


def _body(message: SipMessage, body: bytes) -> bytes:
    length_values = message.headers.get_raw("Content-Length")
    if not length_values:
        return body  # UDP: the body runs to the end of the datagram (RFC 3261 18.3)
    if len(set(length_values)) != 1:
        raise SipParseError("conflicting Content-Length headers", message=message)
    text = length_values[0]
    if not text.isascii() or not text.isdigit() or len(text) > 9:
        raise SipParseError(f"bad Content-Length {text!r}", message=message)
    length = int(text)
    if length > len(body):
        raise SipParseError(
            f"body truncated: Content-Length {length}, {len(body)} bytes present",
            message=message,
        )
    return body[:length]


def _validate(message: SipMessage) -> None:
    """Check every header that the transaction and dialog layers read."""
    try:
        for name in _MANDATORY:
            if name not in message.headers:
                raise SipParseError(f"missing {name} header")
        for name in ("From", "To", "Call-ID", "CSeq", "Max-Forwards", "Content-Type"):
            if len(message.headers.get_raw(name)) > 1:
                raise SipParseError(f"more than one {name} header")
        if not message.vias:
            raise SipParseError("empty Via header")
        message.from_  # noqa: B018
        message.to  # noqa: B018
        message.contacts  # noqa: B018
        message.record_routes  # noqa: B018
        message.routes  # noqa: B018
        if not message.call_id or any(c.isspace() for c in message.call_id):
            raise SipParseError("bad Call-ID")
        cseq = message.cseq
        max_forwards = message.headers.get("Max-Forwards")
        if max_forwards is not None and (
            (hops := small_int(max_forwards.lstrip("0") or "0", 3)) is None or hops > 255
        ):
            raise SipParseError(f"bad Max-Forwards {max_forwards!r}")
        if isinstance(message, SipRequest) and cseq.method != message.method:
            raise SipParseError(f"CSeq method {cseq.method} does not match {message.method}")
    except SipParseError as exc:
        raise SipParseError(str(exc), status=exc.status, message=message) from exc


def response_to(
    request: SipRequest,
    status: int,
    reason: str = "",
    *,
    to_tag: str | None = None,
    body: bytes = b"",
) -> SipResponse:
    """A response with the Via, From, To, Call-ID and CSeq of ``request`` (RFC 3261 8.2.6)."""
    headers = Headers()
    for via in request.headers.get_raw("Via"):
        headers.add("Via", via)
    from_value = request.headers.get("From")
    to_value = request.headers.get("To")
    call_id = request.headers.get("Call-ID")
    cseq = request.headers.get("CSeq")
    if from_value is None or to_value is None or call_id is None or cseq is None:
        raise SipParseError("request lacks the headers a response needs")
    headers.add("From", from_value)
    if to_tag is not None and status != 100 and "tag" not in _to_params(to_value):
        to_value = f"{to_value};tag={to_tag}"
    headers.add("To", to_value)
    headers.add("Call-ID", call_id)
    headers.add("CSeq", cseq)
    return SipResponse(status, reason or REASON_PHRASES.get(status, ""), headers, body)


def _to_params(value: str) -> dict[str, str | None]:
    try:
        return NameAddr.parse(value).params
    except SipParseError:
        return {}
