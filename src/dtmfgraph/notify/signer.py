"""Signing of callbacks: ``Authorization: Bearer <JWT>`` that a stock validator accepts.

RS256 by default (spec 8): the header names the key (``kid``: its RFC 7638 thumbprint; ``x5t``:
the SHA-1 thumbprint of a self-signed certificate for it), the claims are ``iss`` (the
configured issuer), ``aud`` (the app that owns the call), ``tid`` (its tenant: validators
modelled on Graph's samples require one), ``appid``, ``iat``/``nbf``/``exp``, ``jti``,
``callId``. :meth:`CallbackSigner.jwks` publishes the public keys with their certificate
(``x5c``), so a validator needs only our OpenID metadata. HS256 with a shared secret on request
(nothing is published then).

Key rollover: the signer holds keys each active from a time. It signs with the newest key that
is active, and publishes the keys still to come (so receivers have them before they are used),
the one signing, and the one before it until ``grace_s`` after its successor took over: while a
new key takes over, two keys are published.

The certificate is made from the key alone (fixed subject, serial from the thumbprint, fixed
validity; RSA PKCS#1 v1.5 signatures are deterministic), so ``x5t`` is the same on every node
and after every restart without being stored.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from cryptography.x509.oid import NameOID
from jwt.algorithms import RSAAlgorithm

from ..openid import openid_configuration

LIFETIME_S = 600
GRACE_S = 86_400.0
"""How long the previous key stays published after its successor took over (a day: validators
cache metadata for hours; Graph's samples refresh every 2 h)."""
_EPOCH = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
_END = datetime.datetime(2100, 1, 1, tzinfo=datetime.UTC)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint of an RSA JWK (used as its ``kid``)."""
    members = {k: jwk[k] for k in ("e", "kty", "n")}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return _b64url(hashlib.sha256(canonical).digest())


def rsa_kid(key: RSAPublicKey) -> str:
    """The ``kid`` of an RSA public key: the RFC 7638 thumbprint of its JWK."""
    return jwk_thumbprint(RSAAlgorithm.to_jwk(key, as_dict=True))


def self_signed(private: RSAPrivateKey, kid: str) -> bytes:
    """The DER of a self-signed certificate for ``private`` (the same bytes every time)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dtmfgraph callback signing")])
    serial = int.from_bytes(hashlib.sha256(kid.encode()).digest()[:16]) >> 1 or 1
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(serial)
        .not_valid_before(_EPOCH)
        .not_valid_after(_END)
        .sign(private, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def _public_jwk(key: RSAPublicKey, cert_der: bytes | None = None) -> dict[str, Any]:
    jwk = RSAAlgorithm.to_jwk(key, as_dict=True)
    out: dict[str, Any] = {
        "kty": "RSA",
        "use": "sig",
        "alg": "RS256",
        "kid": rsa_kid(key),
        "n": jwk["n"],
        "e": jwk["e"],
    }
    if cert_der is not None:
        out["x5t"] = _b64url(hashlib.sha1(cert_der).digest())
        out["x5c"] = [base64.b64encode(cert_der).decode()]
    return out


def load_rs256_private_key(pem: str, name: str = "callback_rs256_private_key") -> RSAPrivateKey:
    """Parse an unencrypted PEM RSA private key, naming the setting ``name`` on error."""
    try:
        key = serialization.load_pem_private_key(pem.strip().encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, RSAPrivateKey):
        raise ValueError(f"{name}: RS256 needs an RSA key, got {type(key).__name__}")
    if key.key_size < 2048:
        raise ValueError(f"{name}: the RSA key has {key.key_size} bits; use at least 2048")
    return key


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One RS256 key and the time (epoch seconds) from which it signs."""

    private: RSAPrivateKey
    active_from: float
    jwk: dict[str, Any]

    @classmethod
    def from_pem(cls, pem: str, active_from: float = 0.0, name: str = "callback key") -> SigningKey:
        private = load_rs256_private_key(pem, name)
        kid = rsa_kid(private.public_key())
        return cls(
            private, active_from, _public_jwk(private.public_key(), self_signed(private, kid))
        )

    @property
    def kid(self) -> str:
        return str(self.jwk["kid"])


class CallbackSigner:
    """Mints one short-lived JWT per callback (see the module docstring).

    ``rs256_private_key``: one PEM key, active from the start; ``keys``: several
    (:class:`SigningKey`, rollover); ``hs256_secret``: HS256 instead (only if no RSA key is
    given). ``extra_public_keys`` are published beside (a key of another deployment, or the
    next key held elsewhere)."""

    def __init__(
        self,
        *,
        issuer: str,
        hs256_secret: str | None = None,
        rs256_private_key: str | None = None,
        keys: Sequence[SigningKey] = (),
        extra_public_keys: Sequence[RSAPublicKey] = (),
        app_id: str = "dtmfgraph",
        grace_s: float = GRACE_S,
    ) -> None:
        signing = list(keys)
        if rs256_private_key:
            signing.append(
                SigningKey.from_pem(rs256_private_key, 0.0, "callback_rs256_private_key")
            )
        if not signing and hs256_secret is None:
            raise ValueError("callbacks need a signing key: an RSA key or an HS256 secret")
        self.issuer = issuer
        self.app_id = app_id
        self.grace_s = grace_s
        self._keys = sorted(signing, key=lambda k: k.active_from)
        self._secret = hs256_secret or ""
        self.algorithm = "RS256" if self._keys else "HS256"
        self._extra = [_public_jwk(key) for key in extra_public_keys]
        if self._extra and not self._keys:
            raise ValueError("extra callback keys need an RS256 signing key (callbacks are HS256)")

    def signing_key(self, now: float | None = None) -> SigningKey | None:
        """The key that signs at ``now`` (the newest active one; the first before any is)."""
        t = time.time() if now is None else now
        if not self._keys:
            return None
        active = [k for k in self._keys if k.active_from <= t]
        return active[-1] if active else self._keys[0]

    @property
    def kid(self) -> str | None:
        key = self.signing_key()
        return key.kid if key is not None else None

    def published(self, now: float | None = None) -> list[SigningKey]:
        """The keys in the JWKS at ``now``: the signing one first, then those still to come,
        then its predecessor within ``grace_s`` of the takeover."""
        t = time.time() if now is None else now
        current = self.signing_key(t)
        if current is None:
            return []
        out = [current]
        out += [k for k in self._keys if k.active_from > t and k is not current]
        index = self._keys.index(current)
        if index > 0 and current.active_from + self.grace_s > t:
            out.append(self._keys[index - 1])
        return out

    def jwks(self, now: float | None = None) -> dict[str, Any]:
        """The JSON Web Key Set receivers verify callbacks with; empty for HS256."""
        keys = [dict(k.jwk) for k in self.published(now)]
        kids = {j["kid"] for j in keys}
        keys += [dict(k) for k in self._extra if k["kid"] not in kids]
        return {"keys": keys}

    def token(
        self,
        *,
        audience: str,
        call_id: str,
        tenant_id: str | None = None,
        jti: str | None = None,
        lifetime_s: int = LIFETIME_S,
        now: float | None = None,
    ) -> str:
        """A JWT for one callback; ``jti``: the notification's stable id (default: random)."""
        t = int(time.time() if now is None else now)
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": audience,
            "iat": t,
            "nbf": t - 5,
            "exp": t + lifetime_s,
            "appid": self.app_id,
            "jti": jti or str(uuid.uuid4()),
            "callId": call_id,
        }
        if tenant_id:
            claims["tid"] = tenant_id
        key = self.signing_key(t)
        if key is None:
            return jwt.encode(claims, self._secret, algorithm="HS256")
        headers = {"kid": key.kid, "x5t": key.jwk["x5t"]}
        return jwt.encode(claims, key.private, algorithm="RS256", headers=headers)

    def openid_configuration(self, base_url: str) -> dict[str, Any]:
        """The OpenID metadata document (shape of Bot Framework's, with our addresses)."""
        return openid_configuration(self.issuer, base_url)


__all__ = [
    "GRACE_S",
    "CallbackSigner",
    "SigningKey",
    "jwk_thumbprint",
    "load_rs256_private_key",
    "rsa_kid",
    "self_signed",
]
