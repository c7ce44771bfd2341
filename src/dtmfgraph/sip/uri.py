"""SIP URIs (RFC 3261 19.1) and name-addr values (``"Bob" <sip:bob@host>;tag=x``)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Final

from dtmfgraph.sip.errors import SipParseError
from dtmfgraph.sip.grammar import (
    format_hostport,
    format_params,
    parse_hostport,
    parse_params,
    quote,
    split_outside_quotes,
    unquote,
)

_SCHEME_RE: Final = re.compile(r"^([A-Za-z][A-Za-z0-9+\-.]*):(.*)$", re.DOTALL)
_USER_CHARS_RE: Final = re.compile(r"^[A-Za-z0-9\-_.!~*'()%&=+$,;?/:]*$")
_DISPLAY_TOKEN_RE: Final = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~ \t]*$")


@dataclass(frozen=True, slots=True)
class SipUri:
    """A ``sip:`` or ``sips:`` URI. ``host`` holds IPv6 addresses without brackets."""

    host: str
    user: str | None = None
    port: int | None = None
    scheme: str = "sip"
    password: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: str | None = None

    @classmethod
    def parse(cls, text: str) -> SipUri:
        """Parse a SIP URI; anything else raises :class:`SipParseError`."""
        uri = parse_uri(text)
        if not isinstance(uri, SipUri):
            raise SipParseError(f"not a SIP URI: {text!r}", status=416)
        return uri

    @property
    def address(self) -> tuple[str, int]:
        """Where to send to reach this URI (port 5060 unless given; 5061 for TLS: ``sips:``
        or ``;transport=tls``)."""
        default = 5061 if self.secure else 5060
        return self.host, self.port if self.port is not None else default

    @property
    def secure(self) -> bool:
        """Whether the URI asks for TLS (``sips:``, or ``;transport=tls``)."""
        transport = str(self.params.get("transport") or "").lower()
        return self.scheme == "sips" or transport == "tls"

    @property
    def loose_route(self) -> bool:
        """Whether the URI carries the ``lr`` parameter (RFC 3261 loose routing)."""
        return "lr" in self.params

    def without_params(self) -> SipUri:
        """The URI without its parameters and headers."""
        return replace(self, params={}, headers=None)

    def __str__(self) -> str:
        userinfo = ""
        if self.user is not None:
            userinfo = self.user
            if self.password is not None:
                userinfo += ":" + self.password
            userinfo += "@"
        text = f"{self.scheme}:{userinfo}{format_hostport(self.host, self.port)}"
        text += format_params(self.params)
        if self.headers:
            text += "?" + self.headers
        return text


@dataclass(frozen=True, slots=True)
class AbsoluteUri:
    """A URI of another scheme (``tel:``, ``urn:``...), kept as text."""

    scheme: str
    rest: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.rest}"


Uri = SipUri | AbsoluteUri


def parse_uri(text: str) -> Uri:
    """Parse any absolute URI; ``sip``/``sips`` get a structured :class:`SipUri`."""
    text = text.strip()
    match = _SCHEME_RE.match(text)
    if match is None:
        raise SipParseError(f"not an absolute URI: {text!r}")
    scheme, rest = match.group(1).lower(), match.group(2)
    if any(c.isspace() or c in '<>"' for c in rest) or not rest or not rest.isascii():
        raise SipParseError(f"bad characters in URI {text!r}")
    if scheme not in ("sip", "sips"):
        return AbsoluteUri(scheme, rest)
    headers: str | None = None
    if "?" in rest:
        at = rest.find("@")
        question = rest.find("?")
        if at < 0 or question > at:
            rest, headers = rest[:question], rest[question + 1 :]
    user: str | None = None
    password: str | None = None
    if "@" in rest:
        userinfo, _, rest = rest.rpartition("@")
        user, colon, pw = userinfo.partition(":")
        if colon:
            password = pw
        if not user or not _USER_CHARS_RE.match(userinfo):
            raise SipParseError(f"bad user part in {text!r}")
    hostport, _, param_text = rest.partition(";")
    host, port = parse_hostport(hostport)
    params = parse_params(param_text) if param_text else {}
    return SipUri(host, user, port, scheme, password, params, headers)


@dataclass(frozen=True, slots=True)
class NameAddr:
    """A From/To/Contact/Route value: optional display name, URI, header parameters."""

    uri: Uri
    display_name: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def tag(self) -> str | None:
        """The ``tag`` parameter (From/To), if any."""
        return self.params.get("tag")

    def with_tag(self, tag: str) -> NameAddr:
        """A copy with ``tag`` set."""
        return replace(self, params={**self.params, "tag": tag})

    @property
    def sip_uri(self) -> SipUri:
        """The URI, which must be a SIP URI."""
        if not isinstance(self.uri, SipUri):
            raise SipParseError(f"not a SIP URI: {self.uri}", status=416)
        return self.uri

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        """Parse ``name-addr`` or ``addr-spec`` followed by header parameters."""
        text = text.strip()
        if not text:
            raise SipParseError("empty address")
        display: str | None = None
        if text.startswith('"') or "<" in text:
            if text.startswith('"'):
                head = split_outside_quotes(text, "<")
                if len(head) < 2:
                    raise SipParseError(f"quoted display name without <uri> in {text!r}")
                display_raw = head[0].strip()
                display = unquote(display_raw)
                if not display_raw.endswith('"'):
                    raise SipParseError(f"junk after display name in {text!r}")
                rest = "<".join(head[1:])
            else:
                display_raw, _, rest = text.partition("<")
                display_raw = display_raw.strip()
                if not _DISPLAY_TOKEN_RE.match(display_raw):
                    raise SipParseError(f"bad display name {display_raw!r}")
                display = " ".join(display_raw.split()) or None
            uri_text, close, param_text = rest.partition(">")
            if not close:
                raise SipParseError(f"missing '>' in {text!r}")
            param_text = param_text.strip()
            if param_text and not param_text.startswith(";"):
                raise SipParseError(f"junk after '>' in {text!r}")
            uri = parse_uri(uri_text)
            params = parse_params(param_text[1:]) if param_text else {}
            return cls(uri, display, params)
        # addr-spec: every ';' parameter belongs to the header, not the URI (RFC 3261 20.10)
        uri_text, _, param_text = text.partition(";")
        if any(c in uri_text for c in ",?"):
            raise SipParseError(f"addr-spec with reserved characters must use <>: {text!r}")
        return cls(parse_uri(uri_text), None, parse_params(param_text) if param_text else {})

    def __str__(self) -> str:
        head = f"{quote(self.display_name)} " if self.display_name else ""
        return f"{head}<{self.uri}>{format_params(self.params)}"
