"""SIP header fields: an ordered, case-insensitive multi-map, plus the Via and CSeq values."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Final

from dtmfgraph.sip.errors import SipParseError
from dtmfgraph.sip.grammar import (
    format_hostport,
    format_params,
    is_token,
    parse_hostport,
    parse_params,
    split_outside_quotes,
)

COMPACT_FORMS: Final[dict[str, str]] = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}
"""RFC 3261 7.3.3 (and later RFCs) single-letter header names."""

_CANONICAL: Final[dict[str, str]] = {
    name.lower(): name
    for name in (
        *COMPACT_FORMS.values(),
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Alert-Info",
        "Allow",
        "Authentication-Info",
        "Authorization",
        "Call-Info",
        "Content-Disposition",
        "Content-Language",
        "CSeq",
        "Date",
        "Error-Info",
        "Expires",
        "In-Reply-To",
        "Max-Forwards",
        "MIME-Version",
        "Min-Expires",
        "Organization",
        "Priority",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Proxy-Require",
        "Reason",
        "Record-Route",
        "Reply-To",
        "Require",
        "Retry-After",
        "Route",
        "Server",
        "Timestamp",
        "Unsupported",
        "User-Agent",
        "Warning",
        "WWW-Authenticate",
        "RSeq",
        "RAck",
        "P-Asserted-Identity",
    )
}

LIST_HEADERS: Final[frozenset[str]] = frozenset(
    name.lower()
    for name in (
        "Via",
        "Contact",
        "Route",
        "Record-Route",
        "Allow",
        "Supported",
        "Require",
        "Proxy-Require",
        "Unsupported",
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Content-Encoding",
        "Content-Language",
        "Allow-Events",
        "Alert-Info",
        "Call-Info",
        "Error-Info",
        "In-Reply-To",
        "Reply-To",
        "Warning",
        "Reason",
        "P-Asserted-Identity",
    )
)
"""Headers whose value is a comma-separated list (RFC 3261 7.3.1), so may be split or joined."""


BRANCH_MAGIC_COOKIE: Final = "z9hG4bK"
"""Prefix of every RFC 3261 Via branch."""


def canonical_name(name: str) -> str:
    """The canonical spelling of a header name; compact forms are expanded."""
    lower = name.lower()
    if len(lower) == 1 and lower in COMPACT_FORMS:
        return COMPACT_FORMS[lower]
    return _CANONICAL.get(lower, name)


class Headers:
    """Header fields in wire order; lookups ignore case and understand compact forms."""

    __slots__ = ("_fields",)

    def __init__(self, fields: Iterable[tuple[str, str]] = ()) -> None:
        self._fields: list[tuple[str, str]] = []
        for name, value in fields:
            self.add(name, value)

    def add(self, name: str, value: str) -> None:
        """Append one header field."""
        if not is_token(name):
            raise SipParseError(f"bad header name {name!r}")
        if "\r" in value or "\n" in value:
            raise SipParseError(f"line break in header {name!r}")
        self._fields.append((canonical_name(name), value.strip()))

    def set(self, name: str, value: str) -> None:
        """Replace every field of this name with one (kept at the first one's position)."""
        key = canonical_name(name).lower()
        for index, (existing, _) in enumerate(self._fields):
            if existing.lower() == key:
                self._fields[index] = (canonical_name(name), value.strip())
                self._fields = [
                    f for i, f in enumerate(self._fields) if i <= index or f[0].lower() != key
                ]
                return
        self.add(name, value)

    def remove(self, name: str) -> None:
        """Drop every field of this name."""
        key = canonical_name(name).lower()
        self._fields = [f for f in self._fields if f[0].lower() != key]

    def get(self, name: str) -> str | None:
        """The first field's value (whole, not split), or ``None``."""
        key = canonical_name(name).lower()
        for existing, value in self._fields:
            if existing.lower() == key:
                return value
        return None

    def get_raw(self, name: str) -> list[str]:
        """Every field's value for ``name``, unsplit, in order."""
        key = canonical_name(name).lower()
        return [value for existing, value in self._fields if existing.lower() == key]

    def get_list(self, name: str) -> list[str]:
        """All values of a list header: repeated fields and comma-separated values, in order."""
        values: list[str] = []
        for raw in self.get_raw(name):
            values.extend(
                item.strip() for item in split_outside_quotes(raw, ",", angle=True) if item.strip()
            )
        return values

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(list(self._fields))

    def __len__(self) -> int:
        return len(self._fields)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._fields == other._fields

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({self._fields!r})"

    def copy(self) -> Headers:
        """An independent copy."""
        new = Headers()
        new._fields = list(self._fields)
        return new

    def serialize(self) -> str:
        """Header lines, each ending in CRLF."""
        return "".join(f"{name}: {value}\r\n" for name, value in self._fields)


@dataclass(frozen=True, slots=True)
class Via:
    """One Via value: ``SIP/2.0/UDP host:port;branch=...;rport``."""

    host: str
    port: int | None = None
    transport: str = "UDP"
    params: dict[str, str | None] = field(default_factory=dict)
    protocol: str = "SIP/2.0"

    @property
    def branch(self) -> str | None:
        """The ``branch`` parameter."""
        return self.params.get("branch")

    @property
    def sent_by(self) -> tuple[str, int]:
        """``(host, port)`` as written in the Via (port 5060 when absent)."""
        return self.host, self.port if self.port is not None else 5060

    def with_params(self, **params: str | None) -> Via:
        """A copy with parameters added or replaced."""
        return replace(self, params={**self.params, **params})

    @classmethod
    def parse(cls, text: str) -> Via:
        """Parse one Via value (whitespace around ``/`` is allowed, as RFC 3261 permits)."""
        head, _, param_text = text.strip().partition(";")
        parts = head.split("/")
        if len(parts) != 3:
            raise SipParseError(f"bad Via {text!r}")
        name, version = parts[0].strip(), parts[1].strip()
        transport_and_host = parts[2].strip().split(None, 1)
        if len(transport_and_host) != 2:
            raise SipParseError(f"bad Via sent-by in {text!r}")
        transport, sent_by = transport_and_host
        if not (is_token(name) and is_token(version) and is_token(transport)):
            raise SipParseError(f"bad Via protocol in {text!r}")
        host, port = parse_hostport(sent_by)
        params = parse_params(param_text) if param_text else {}
        return cls(host, port, transport.upper(), params, f"{name.upper()}/{version}")

    def __str__(self) -> str:
        sent_by = format_hostport(self.host, self.port)
        return f"{self.protocol}/{self.transport} {sent_by}{format_params(self.params)}"


@dataclass(frozen=True, slots=True)
class CSeq:
    """A CSeq value: sequence number and method."""

    seq: int
    method: str

    @classmethod
    def parse(cls, text: str) -> CSeq:
        """Parse ``<number> <method>``; the number must fit in 32 bits."""
        parts = text.split()
        if len(parts) != 2 or not parts[0].isascii() or not parts[0].isdigit():
            raise SipParseError(f"bad CSeq {text!r}")
        if len(parts[0]) > 10 or int(parts[0]) >= 2**32:
            raise SipParseError(f"CSeq number out of range in {text!r}")
        if not is_token(parts[1]):
            raise SipParseError(f"bad CSeq method in {text!r}")
        return cls(int(parts[0]), parts[1])

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"
