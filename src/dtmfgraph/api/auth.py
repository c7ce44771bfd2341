"""Bearer JWT authentication of API callers -> ``service.Principal``."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from ..notify.signer import rsa_kid
from ..service import ROLE_INITIATE, ROLE_MEDIA, Principal
from ..settings import Settings

log = logging.getLogger(__name__)

DEV_PRINCIPAL = Principal(
    tenant_id="00000000-0000-0000-0000-000000000000",
    app_id="dtmfgraph-dev-app",
    roles=frozenset({ROLE_INITIATE, ROLE_MEDIA}),
)


class AuthError(Exception):
    """No or invalid credentials (401 ``unauthenticated``)."""


def load_rs256_public_key(pem: str, name: str = "jwt_rs256_public_key") -> RSAPublicKey:
    """Parse a PEM RSA public key (a bare key or an X.509 certificate), naming ``name`` on error."""
    data = pem.strip().encode()
    try:
        if b"CERTIFICATE" in data:
            key: object = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise ValueError(f"{name}: not a PEM public key or certificate ({exc})") from None
    if not isinstance(key, RSAPublicKey):
        raise ValueError(f"{name}: RS256 needs an RSA key, got {type(key).__name__}")
    return key


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class Authenticator:
    """Verifies bearer JWTs: signature, issuer, audience, lifetime, then ``tid`` and ``appid``.

    Keys: an HS256 secret, an RS256 public key, or both (each token is checked with the key of
    the algorithm in its header; no other algorithm is accepted)."""

    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.auth_enabled
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._keys: dict[str, Any] = {}
        pems = [pem] if (pem := settings.rs256_public_key_pem()) else []
        pems += settings.extra_pems("jwt_rs256_extra_public_key_files")
        if pems:
            keys = [load_rs256_public_key(p, "jwt_rs256 public key") for p in pems]
            self._keys["RS256"] = [(rsa_kid(key), key) for key in keys]
        if settings.jwt_hs256_secret:
            self._keys["HS256"] = settings.jwt_hs256_secret
        if self.enabled and not self._keys:
            raise ValueError(
                "auth is enabled but no JWT key is configured "
                "(jwt_hs256_secret, jwt_rs256_public_key or jwt_rs256_public_key_file)"
            )

    @property
    def algorithms(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def principal(self, authorization: str | None) -> Principal:
        if not self.enabled:
            return DEV_PRINCIPAL
        if not authorization:
            raise AuthError("Access token is empty.")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError("The Authorization header must be 'Bearer <token>'.")
        try:
            claims = self._verify(token)
        except AuthError:
            raise
        except Exception as exc:  # whatever a forged token makes the JWT library raise
            log.warning("a bearer token made the JWT check fail: %s: %s", type(exc).__name__, exc)
            raise AuthError("Access token validation failure: the token is malformed.") from None
        tid = claims.get("tid")
        if not isinstance(tid, str) or not tid:
            raise AuthError(
                "Access token validation failure: the 'tid' (tenant id) claim is missing."
            )
        app = claims.get("appid") or claims.get("azp")
        if not isinstance(app, str) or not app:
            raise AuthError(
                "Access token validation failure: the 'appid' (or 'azp') application id claim "
                "is missing."
            )
        roles = claims.get("roles") or []
        if not isinstance(roles, list):
            raise AuthError("Access token validation failure: 'roles' must be a list.")
        return Principal(tenant_id=tid, app_id=app, roles=frozenset(str(r) for r in roles))

    def _verify(self, token: str) -> dict[str, Any]:
        fail = "Access token validation failure"
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError(f"{fail}: the token is not a well-formed JWT.") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._keys:
            accepted = " or ".join(self._keys)
            raise AuthError(
                f"{fail}: the token is signed with {_short(alg)}; this service accepts {accepted}."
            )
        try:
            claims = self._decode(token, alg, header.get("kid"))
        except jwt.ExpiredSignatureError:
            raise AuthError("Access token has expired.") from None
        except jwt.ImmatureSignatureError:
            raise AuthError(f"{fail}: the token is not valid yet (nbf/iat).") from None
        except jwt.InvalidSignatureError:
            raise AuthError(
                f"{fail}: the {alg} signature does not match any configured key."
            ) from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(f"{fail}: the '{exc.claim}' claim is missing.") from None
        except jwt.InvalidIssuerError:
            got = _unverified(token).get("iss")
            raise AuthError(
                f"{fail}: issuer {_short(got)} is not the expected {self._issuer!r}."
            ) from None
        except jwt.InvalidAudienceError:
            got = _unverified(token).get("aud")
            raise AuthError(
                f"{fail}: audience {_short(got)} is not the expected {self._audience!r}."
            ) from None
        except jwt.PyJWTError as exc:
            raise AuthError(f"{fail}: {exc}.") from None
        return claims

    def _decode(self, token: str, alg: str, kid: object) -> dict[str, Any]:
        """Verify with the key of ``alg``; for RS256 the key named by ``kid`` (the RFC 7638
        thumbprint), or each configured key in turn when the token names none we have."""
        keys: list[Any] = [self._keys[alg]]
        if alg == "RS256":
            pairs = self._keys[alg]
            keys = [key for k, key in pairs if k == kid] or [key for _, key in pairs]
        for i, key in enumerate(keys):
            try:
                out: dict[str, Any] = jwt.decode(
                    token,
                    key,
                    algorithms=[alg],
                    audience=self._audience,
                    issuer=self._issuer,
                    options={"require": ["exp", "iss", "aud"]},
                )
                return out
            except jwt.InvalidSignatureError:
                if i == len(keys) - 1:
                    raise
        raise jwt.InvalidSignatureError("no key")  # unreachable: keys is never empty


def _unverified(token: str) -> dict[str, Any]:
    try:
        out: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return {}
    return out


def mint_token(
    settings: Settings,
    *,
    tenant_id: str = DEV_PRINCIPAL.tenant_id,
    app_id: str = DEV_PRINCIPAL.app_id,
    roles: tuple[str, ...] = (ROLE_INITIATE, ROLE_MEDIA),
    lifetime_s: int = 24 * 3600,
    private_key: str | None = None,
) -> str:
    """A development token the service accepts (HS256 secret, or RS256 with ``private_key``)."""
    t = int(time.time())
    claims = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": t,
        "nbf": t - 5,
        "exp": t + lifetime_s,
        "tid": tenant_id,
        "appid": app_id,
        "roles": list(roles),
        "jti": str(uuid.uuid4()),
    }
    if private_key is not None:
        return jwt.encode(claims, private_key, algorithm="RS256")
    if not settings.jwt_hs256_secret:
        raise ValueError("no HS256 secret configured to sign a token with")
    return jwt.encode(claims, settings.jwt_hs256_secret, algorithm="HS256")
