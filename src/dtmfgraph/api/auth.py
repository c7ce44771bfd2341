"""Bearer JWT authentication of API callers -> ``service.Principal``."""

from __future__ import annotations

import time
import uuid

import jwt

from ..service import ROLE_INITIATE, ROLE_MEDIA, Principal
from ..settings import Settings

DEV_PRINCIPAL = Principal(
    tenant_id="00000000-0000-0000-0000-000000000000",
    app_id="dtmfgraph-dev-app",
    roles=frozenset({ROLE_INITIATE, ROLE_MEDIA}),
)


class AuthError(Exception):
    """No or invalid credentials (401 ``unauthenticated``)."""


class Authenticator:
    """Verifies issuer, audience, signature (HS256 secret or RS256 public key) and lifetime."""

    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.auth_enabled
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        if settings.jwt_rs256_public_key:
            self._key, self._alg = settings.jwt_rs256_public_key, "RS256"
        else:
            self._key, self._alg = settings.jwt_hs256_secret or "", "HS256"
        if self.enabled and not self._key:
            raise ValueError("auth is enabled but no JWT key is configured")

    def principal(self, authorization: str | None) -> Principal:
        if not self.enabled:
            return DEV_PRINCIPAL
        if not authorization:
            raise AuthError("Access token is empty.")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise AuthError("The Authorization header must be 'Bearer <token>'.")
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[self._alg],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise AuthError(f"Access token validation failure: {exc}.") from None
        tid = claims.get("tid")
        app = claims.get("appid") or claims.get("azp")
        if not isinstance(tid, str) or not isinstance(app, str):
            raise AuthError("Access token validation failure: 'tid' and 'appid'/'azp' required.")
        roles = claims.get("roles") or []
        if not isinstance(roles, list):
            raise AuthError("Access token validation failure: 'roles' must be a list.")
        return Principal(tenant_id=tid, app_id=app, roles=frozenset(str(r) for r in roles))


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
