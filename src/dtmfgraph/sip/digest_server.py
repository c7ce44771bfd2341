"""Digest authentication of requests that reach us (RFC 3261 22.4, RFC 7616): challenge, check.

:class:`DigestGuard` holds one user name and password and our realm. A request without a good
``Authorization`` is answered 401 with a ``WWW-Authenticate`` challenge per algorithm, on one
nonce (``qop=auth``): MD5 alone by default, which every SIP phone answers; with ``SHA-256`` too
(RFC 8760), a caller answers the strongest it knows, but some (baresip 1.0's libre) give up on
a 401 naming an algorithm they do not know, so SHA-256 is opt-in. A wrong password gets 403.
Nonces carry their time and an HMAC under a secret of the guard, so any of them can be checked
without keeping state, and one older than ``nonce_life`` is answered ``stale=true`` (the
caller retries without asking its user).
Replays are refused: the guard remembers, for each nonce answered right while it is young, the
highest nonce count (``nc``) used with it, and an answer that does not count higher is a
``replay`` (RFC 7616 3.4.1; without ``qop`` a nonce is good once). Time comes in as ``now``.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import secrets
from typing import Final, Literal

from dtmfgraph.sip.digest import Challenge, Credentials, digest_response, parse_auth_params
from dtmfgraph.sip.errors import DigestError, SipParseError
from dtmfgraph.sip.grammar import quote
from dtmfgraph.sip.message import SipRequest

Verdict = Literal["ok", "missing", "stale", "wrong", "replay"]
ALGORITHMS: Final = ("SHA-256", "MD5")
"""The digest algorithms we can challenge with, strongest first."""
NONCE_LIFE_S: Final = 300.0
_PRUNE_AT: Final = 256
"""Nonces remembered before the expired ones are forgotten (checked on each new one)."""


class DigestGuard:
    """Challenges and checks the ``Authorization`` of requests to us for one user."""

    def __init__(
        self,
        credentials: Credentials,
        realm: str,
        *,
        secret: bytes | None = None,
        nonce_life: float = NONCE_LIFE_S,
        algorithms: tuple[str, ...] = ("MD5",),
    ) -> None:
        if not credentials.username or not credentials.password:
            raise ValueError("inbound digest authentication needs a user name and a password")
        unknown = [a for a in algorithms if a.upper() not in ALGORITHMS]
        if unknown or not algorithms:
            raise ValueError(f"digest algorithms must be among {', '.join(ALGORITHMS)}: {unknown}")
        self.algorithms = tuple(a for a in ALGORITHMS if a in {x.upper() for x in algorithms})
        """What we challenge with (and take answers in), strongest first."""
        self.answered: collections.Counter[str] = collections.Counter()
        """Right answers let in, by the algorithm the caller chose."""
        self.credentials = credentials
        self.realm = realm
        self.nonce_life = nonce_life
        self._secret = secret if secret is not None else secrets.token_bytes(32)
        self._counts: dict[str, tuple[int, float]] = {}
        """Per nonce answered right while young: the highest nonce count used, and when the
        nonce was issued."""
        self.replays = 0
        """Right answers refused because their nonce count was used already (replays)."""

    def challenge(self, now: float, *, stale: bool = False) -> str:
        """An MD5 ``WWW-Authenticate`` header value with a fresh nonce."""
        return self.challenges(now, stale=stale, algorithms=("MD5",))[0]

    def challenges(
        self, now: float, *, stale: bool = False, algorithms: tuple[str, ...] | None = None
    ) -> tuple[str, ...]:
        """``WWW-Authenticate`` header values, one per algorithm (default: ours, strongest
        first as RFC 8760 3 asks), all on one fresh nonce."""
        algorithms = self.algorithms if algorithms is None else algorithms
        stamp = f"{int(now * 1000):x}.{secrets.token_hex(8)}"
        nonce = f"{stamp}.{self._mac(stamp)}"
        tail = ", stale=true" if stale else ""
        return tuple(
            f"Digest realm={quote(self.realm)}, nonce={quote(nonce)}, algorithm={algorithm}, "
            f'qop="auth"{tail}'
            for algorithm in algorithms
        )

    def check(self, request: SipRequest, now: float) -> Verdict:
        """``ok``: a right answer to one of our nonces still young; ``missing``: no answer for
        our realm (challenge it); ``stale``: right, but the nonce is too old (challenge again,
        stale); ``wrong``: the password (or user) is wrong; ``replay``: right, but with a nonce
        count already used (a copy of an earlier request: challenge it)."""
        for value in request.headers.get_raw("Authorization"):
            scheme, _, rest = value.strip().partition(" ")
            if scheme.lower() != "digest":
                continue
            try:
                params = parse_auth_params(rest)
            except SipParseError:
                continue
            if params.get("realm") != self.realm:
                continue
            return self._check(request, params, now)
        return "missing"

    def _check(self, request: SipRequest, params: dict[str, str], now: float) -> Verdict:
        nonce, uri = params.get("nonce", ""), params.get("uri", "")
        stamp, _, mac = nonce.rpartition(".")
        if not stamp or not hmac.compare_digest(mac, self._mac(stamp)):
            return "missing"  # not our nonce (or forged): a new challenge
        if params.get("username") != self.credentials.username or not uri:
            return "wrong"
        qop = params.get("qop")
        algorithm = (params.get("algorithm") or "MD5").upper()
        if algorithm not in self.algorithms or qop not in (None, "auth"):
            return "wrong"
        try:
            count = int(params.get("nc", "1"), 16)
            expected = digest_response(
                Challenge(self.realm, nonce, algorithm, (qop,) if qop else ()),
                self.credentials,
                request.method,
                uri,
                cnonce=params.get("cnonce", ""),
                nonce_count=count,
            )
        except (DigestError, ValueError):
            return "wrong"
        if not hmac.compare_digest(expected, params.get("response", "")):
            return "wrong"
        issued = int(stamp.partition(".")[0], 16) / 1000
        if now - issued > self.nonce_life:
            return "stale"
        verdict = self._count(nonce, count, issued, now)
        if verdict == "ok":
            self.answered[algorithm] += 1
        return verdict

    def _count(self, nonce: str, count: int, issued: float, now: float) -> Verdict:
        """``ok`` when ``count`` is above every count used with ``nonce``; else ``replay``."""
        counts = self._counts
        used = counts.get(nonce)
        if used is not None and count <= used[0]:
            self.replays += 1
            return "replay"
        if used is None and len(counts) >= _PRUNE_AT:
            young = now - self.nonce_life
            for old in [n for n, (_, at) in counts.items() if at < young]:
                del counts[old]
        counts[nonce] = (count, issued)
        return "ok"

    def _mac(self, stamp: str) -> str:
        return hmac.new(self._secret, stamp.encode(), hashlib.sha256).hexdigest()[:32]
