"""Small pieces of the RFC 3261 grammar shared by headers, URIs and digest parameters."""

from __future__ import annotations

import ipaddress
import re
from typing import Final

from dtmfgraph.sip.errors import SipParseError

TOKEN_RE: Final = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")
"""RFC 3261 ``token``."""

_HOSTNAME_RE: Final = re.compile(
    r"^[A-Za-z0-9]([A-Za-z0-9\-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9\-]*[A-Za-z0-9])?)*\.?$"
)


def is_token(text: str) -> bool:
    """Whether ``text`` is a non-empty RFC 3261 token."""
    return TOKEN_RE.match(text) is not None


def split_outside_quotes(text: str, separator: str, *, angle: bool = False) -> list[str]:
    """Split ``text`` on ``separator`` where it is not inside a quoted string (or ``<...>``)."""
    parts: list[str] = []
    current: list[str] = []
    in_quotes = False
    depth = 0
    escaped = False
    for ch in text:
        if escaped:
            current.append(ch)
            escaped = False
            continue
        if in_quotes:
            if ch == "\\":
                escaped = True
            elif ch == '"':
                in_quotes = False
            current.append(ch)
            continue
        if ch == '"':
            in_quotes = True
        elif angle and ch == "<":
            depth += 1
        elif angle and ch == ">" and depth:
            depth -= 1
        elif ch == separator and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    if in_quotes:
        raise SipParseError(f"unterminated quoted string in {text!r}")
    parts.append("".join(current))
    return parts


def unquote(text: str) -> str:
    """The content of a quoted string (escapes removed), or ``text`` itself if not quoted."""
    text = text.strip()
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        out: list[str] = []
        escaped = False
        for ch in text[1:-1]:
            if escaped:
                out.append(ch)
                escaped = False
            elif ch == "\\":
                escaped = True
            else:
                out.append(ch)
        return "".join(out)
    if text.startswith('"'):
        raise SipParseError(f"unterminated quoted string {text!r}")
    return text


def quote(text: str) -> str:
    """``text`` as a quoted string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_params(text: str) -> dict[str, str | None]:
    """``;name=value;flag`` parameters into an ordered dict with lower-case names.

    Quoted values keep their quotes out; a name without ``=`` maps to ``None``.
    """
    params: dict[str, str | None] = {}
    if not text.strip():
        return params
    for raw in split_outside_quotes(text, ";"):
        item = raw.strip()
        if not item:
            raise SipParseError(f"empty parameter in {text!r}")
        name, sep, value = item.partition("=")
        name = name.strip()
        if not is_token(name):
            raise SipParseError(f"bad parameter name {name!r}")
        if sep:
            value = value.strip()
            if value.startswith('"'):
                params[name.lower()] = unquote(value)
            else:
                if not value or any(c.isspace() for c in value):
                    raise SipParseError(f"bad value for parameter {name!r}")
                params[name.lower()] = value
        else:
            params[name.lower()] = None
    return params


def format_params(params: dict[str, str | None]) -> str:
    """Parameters as ``;name=value`` text (values needing it are quoted)."""
    out: list[str] = []
    for name, value in params.items():
        if value is None:
            out.append(f";{name}")
        elif value and all(c not in value for c in ' ";,<>') and "\t" not in value:
            out.append(f";{name}={value}")
        else:
            out.append(f";{name}={quote(value)}")
    return "".join(out)


def parse_hostport(text: str, *, default_port: int | None = None) -> tuple[str, int | None]:
    """``host[:port]`` (IPv6 in brackets) into ``(host, port)``; IPv6 hosts lose the brackets."""
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SipParseError(f"unterminated IPv6 reference {text!r}")
        host = text[1:end]
        try:
            ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise SipParseError(f"bad IPv6 address {host!r}") from exc
        rest = text[end + 1 :]
        if not rest:
            return host, default_port
        if not rest.startswith(":"):
            raise SipParseError(f"junk after IPv6 reference in {text!r}")
        return host, _parse_port(rest[1:])
    host, sep, port_text = text.partition(":")
    if not host or _HOSTNAME_RE.match(host) is None:
        raise SipParseError(f"bad host {host!r}")
    if not sep:
        return host, default_port
    return host, _parse_port(port_text)


def small_int(text: str, max_digits: int) -> int | None:
    """``text`` as an integer when it is 1 to ``max_digits`` ASCII digits, else ``None``: a
    number read off the wire never reaches ``int()`` unbounded (4,300+ digits raise there)."""
    if 0 < len(text) <= max_digits and text.isascii() and text.isdigit():
        return int(text)
    return None


def _parse_port(text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 5:
        raise SipParseError(f"bad port {text!r}")
    port = int(text)
    if port > 65535:
        raise SipParseError(f"port out of range {port}")
    return port


def format_host(host: str) -> str:
    """``host`` ready for a URI or Via: IPv6 addresses in brackets."""
    return f"[{host}]" if ":" in host else host


def format_hostport(host: str, port: int | None) -> str:
    """``host:port`` with IPv6 brackets; the port is left out when ``None``."""
    return format_host(host) if port is None else f"{format_host(host)}:{port}"


def is_ip_address(host: str) -> bool:
    """Whether ``host`` is an IPv4 or IPv6 literal (no DNS is done at this layer)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
