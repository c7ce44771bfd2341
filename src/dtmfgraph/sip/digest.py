"""Digest authentication of outbound SIP requests (RFC 3261 22, RFC 2617, 7616, 8760)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from dtmfgraph.sip.errors import DigestError, SipParseError
from dtmfgraph.sip.grammar import is_token, quote, split_outside_quotes, unquote

_HASHES: Final[dict[str, Callable[[bytes], str]]] = {
    "MD5": lambda data: hashlib.md5(data, usedforsecurity=False).hexdigest(),
    "SHA-256": lambda data: hashlib.sha256(data).hexdigest(),
}
_PREFERENCE: Final = ("SHA-256", "SHA-256-SESS", "MD5", "MD5-SESS")
"""Algorithms we answer, strongest first (RFC 8760: prefer SHA-256 when several are offered)."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """A username and password; ``realm`` restricts them to one realm when set."""

    username: str
    password: str = field(repr=False)
    realm: str | None = None


@dataclass(frozen=True, slots=True)
class Challenge:
    """One ``WWW-Authenticate`` / ``Proxy-Authenticate`` Digest challenge."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False
    proxy: bool = False

    @property
    def supported(self) -> bool:
        """Whether we can answer it (known algorithm; qop absent, ``auth`` or ``auth-int``)."""
        algorithm = self.algorithm.upper().removesuffix("-SESS")
        return algorithm in _HASHES and (not self.qop or bool({"auth", "auth-int"} & set(self.qop)))


def parse_challenge(value: str, *, proxy: bool = False) -> Challenge:
    """Parse a challenge header value; non-Digest schemes raise :class:`DigestError`."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise DigestError(f"unsupported authentication scheme {scheme!r}")
    params = parse_auth_params(rest)
    if "realm" not in params or "nonce" not in params:
        raise DigestError("Digest challenge without realm or nonce")
    qop = tuple(q.strip().lower() for q in params.get("qop", "").split(",") if q.strip())
    return Challenge(
        realm=params["realm"],
        nonce=params["nonce"],
        algorithm=params.get("algorithm", "MD5"),
        qop=qop,
        opaque=params.get("opaque"),
        stale=params.get("stale", "false").lower() == "true",
        proxy=proxy,
    )


def parse_auth_params(text: str) -> dict[str, str]:
    """``name=value, name="quoted"`` pairs into a dict with lower-case names."""
    params: dict[str, str] = {}
    try:
        items = split_outside_quotes(text, ",")
    except SipParseError as exc:
        raise DigestError(str(exc)) from exc
    for item in items:
        if not item.strip():
            continue
        name, sep, value = item.strip().partition("=")
        name = name.strip()
        if not sep or not is_token(name):
            raise DigestError(f"bad auth parameter {item.strip()!r}")
        try:
            params[name.lower()] = unquote(value)
        except SipParseError as exc:
            raise DigestError(str(exc)) from exc
    return params


def choose_challenge(challenges: Sequence[Challenge]) -> Challenge:
    """The challenge we answer among several: the strongest supported algorithm."""
    usable = [c for c in challenges if c.supported]
    if not usable:
        names = ", ".join(f"{c.algorithm}/qop={','.join(c.qop) or '-'}" for c in challenges)
        raise DigestError(f"no supported digest challenge among: {names or 'none'}")
    return min(
        usable,
        key=lambda c: (
            _PREFERENCE.index(c.algorithm.upper())
            if c.algorithm.upper() in _PREFERENCE
            else len(_PREFERENCE)
        ),
    )


def digest_response(
    challenge: Challenge,
    credentials: Credentials,
    method: str,
    uri: str,
    *,
    cnonce: str = "",
    nonce_count: int = 1,
    body: bytes = b"",
) -> str:
    """The ``response`` value (RFC 7616 3.4.1; RFC 2617 without qop)."""
    algorithm = challenge.algorithm.upper()
    session = algorithm.endswith("-SESS")
    hash_name = algorithm.removesuffix("-SESS")
    if hash_name not in _HASHES:
        raise DigestError(f"unsupported digest algorithm {challenge.algorithm!r}")
    h = _HASHES[hash_name]

    def kd(*parts: str) -> str:
        return h(":".join(parts).encode())

    ha1 = kd(credentials.username, challenge.realm, credentials.password)
    if session:
        ha1 = kd(ha1, challenge.nonce, cnonce)
    qop = _pick_qop(challenge)
    ha2 = kd(method, uri, h(body)) if qop == "auth-int" else kd(method, uri)
    if qop is None:
        return kd(ha1, challenge.nonce, ha2)
    return kd(ha1, challenge.nonce, f"{nonce_count:08x}", cnonce, qop, ha2)


def authorization(
    challenge: Challenge,
    credentials: Credentials,
    method: str,
    uri: str,
    *,
    cnonce: str = "",
    nonce_count: int = 1,
    body: bytes = b"",
) -> str:
    """The ``Authorization`` / ``Proxy-Authorization`` header value answering ``challenge``."""
    response = digest_response(
        challenge, credentials, method, uri, cnonce=cnonce, nonce_count=nonce_count, body=body
    )
    parts = [
        f"username={quote(credentials.username)}",
        f"realm={quote(challenge.realm)}",
        f"nonce={quote(challenge.nonce)}",
        f"uri={quote(uri)}",
        f"response={quote(response)}",
        f"algorithm={challenge.algorithm}",
    ]
    qop = _pick_qop(challenge)
    if qop is not None:
        parts += [f"cnonce={quote(cnonce)}", f"qop={qop}", f"nc={nonce_count:08x}"]
    if challenge.opaque is not None:
        parts.append(f"opaque={quote(challenge.opaque)}")
    return "Digest " + ", ".join(parts)


def _pick_qop(challenge: Challenge) -> str | None:
    if not challenge.qop:
        return None
    if "auth" in challenge.qop:
        return "auth"
    if "auth-int" in challenge.qop:
        return "auth-int"
    raise DigestError(f"unsupported qop {','.join(challenge.qop)!r}")
