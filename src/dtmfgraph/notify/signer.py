"""Signing of callbacks: ``Authorization: Bearer <JWT>`` that receivers can verify."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from jwt.algorithms import RSAAlgorithm


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


def _public_jwk(key: RSAPublicKey) -> dict[str, Any]:
    jwk = RSAAlgorithm.to_jwk(key, as_dict=True)
    return {
        "kty": "RSA",
        "use": "sig",
        "alg": "RS256",
        "kid": rsa_kid(key),
        "n": jwk["n"],
        "e": jwk["e"],
    }


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


class CallbackSigner:
    """Mints one short-lived JWT per callback: ``iss`` the service, ``aud`` the app id.

    RS256 with a private key when one is configured: the header names the key (``kid``, its
    RFC 7638 thumbprint) and :meth:`jwks` publishes the public half, so receivers verify
    without sharing a secret. Otherwise HS256 with the shared callback secret (and an empty
    key set: a secret is never published)."""

    def __init__(
        self,
        *,
        issuer: str,
        hs256_secret: str | None = None,
        rs256_private_key: str | None = None,
        extra_public_keys: Sequence[RSAPublicKey] = (),
    ) -> None:
        if hs256_secret is None and rs256_private_key is None:
            raise ValueError("callbacks need a signing key: a secret or an RS256 private key")
        self.issuer = issuer
        self._jwk: dict[str, Any] | None = None
        self.kid: str | None = None
        self._key: RSAPrivateKey | str
        if rs256_private_key:
            private = load_rs256_private_key(rs256_private_key)
            self._jwk = _public_jwk(private.public_key())
            self.kid = str(self._jwk["kid"])
            self._key, self.algorithm = private, "RS256"
        else:
            self._key, self.algorithm = hs256_secret or "", "HS256"
        self._extra = [_public_jwk(key) for key in extra_public_keys]
        if self._extra and self._jwk is None:
            raise ValueError("extra callback keys need an RS256 signing key (callbacks are HS256)")

    def jwks(self) -> dict[str, Any]:
        """The JSON Web Key Set receivers verify callbacks with: the signing key first, then
        the extra ones (the next key before a rotation, the previous one after it); empty for
        HS256."""
        keys = [] if self._jwk is None else [dict(self._jwk)]
        keys += [dict(k) for k in self._extra if k["kid"] not in {j["kid"] for j in keys}]
        return {"keys": keys}

    def token(self, *, audience: str, call_id: str, lifetime_s: int = 600) -> str:
        t = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": audience,
            "iat": t,
            "nbf": t - 5,
            "exp": t + lifetime_s,
            "jti": str(uuid.uuid4()),
            "callId": call_id,
        }
        headers = {"kid": self.kid} if self.kid else None
        return jwt.encode(claims, self._key, algorithm=self.algorithm, headers=headers)
