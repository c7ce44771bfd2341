"""Signing of callbacks: ``Authorization: Bearer <JWT>`` that receivers can verify."""

from __future__ import annotations

import time
import uuid

import jwt


class CallbackSigner:
    """Mints one short-lived JWT per callback: ``iss`` the service, ``aud`` the app id.

    RS256 with a private key when one is configured (receivers verify with the public key),
    otherwise HS256 with the shared callback secret."""

    def __init__(
        self, *, issuer: str, hs256_secret: str | None = None, rs256_private_key: str | None = None
    ) -> None:
        if hs256_secret is None and rs256_private_key is None:
            raise ValueError("callbacks need a signing key: a secret or an RS256 private key")
        self.issuer = issuer
        self._key = rs256_private_key or hs256_secret or ""
        self.algorithm = "RS256" if rs256_private_key else "HS256"

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
        return jwt.encode(claims, self._key, algorithm=self.algorithm)
