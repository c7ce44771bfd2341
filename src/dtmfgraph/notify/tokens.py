"""Callback tokens reused for a bounded time: one RS256 signature per receiving call, not one
per notification.

A notification's ``Authorization: Bearer`` token says who sends it (``iss``, the signing key),
to whom (``aud``, ``tid``) and about which call (``callId``); nothing in it is specific to one
notification except ``jti``, and the notifications' stable ids travel in the
``Notification-Id`` header (a POST may carry several of a call's notifications: one token).
So the same token goes with every notification of one call to one app for ``reuse_s`` (at
most half its lifetime, so a token always has at least half of it left when sent), as Graph's
own callbacks reuse a token for its lifetime. Its ``jti`` then names the token (a random
UUID), not a notification. With ``reuse_s`` 0 each notification gets its own token, whose
``jti`` is the notification's id (as before reuse existed; the dispatcher then sends one
notification per POST).

A new signing key (rollover) takes over at once: the key's id is part of what is reused.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .signer import LIFETIME_S, CallbackSigner

MAX_TOKENS = 10_000
"""Tokens kept at most (then the oldest go first)."""

_Key = tuple[str, str | None, str, str | None]


class TokenCache:
    """Hands out callback tokens, each signed once and reused for ``reuse_s`` (see the
    module docstring)."""

    def __init__(
        self,
        signer: CallbackSigner,
        reuse_s: float,
        *,
        clock: Callable[[], float] = time.time,
        max_tokens: int = MAX_TOKENS,
    ) -> None:
        self._signer = signer
        self.reuse_s = max(0.0, min(reuse_s, LIFETIME_S / 2))
        self._clock = clock
        self._max = max(1, max_tokens)
        self._tokens: dict[_Key, tuple[float, str]] = {}
        """(audience, tenant, call, key id) -> (reuse until, token); oldest first."""
        self.signed = 0
        """Tokens signed (for tests and the bench)."""

    def token(self, *, audience: str, call_id: str, tenant_id: str | None, jti: str) -> str:
        """The token for a notification of ``call_id`` to ``audience``; ``jti``: the
        notification's id, the token's ``jti`` when tokens are not reused."""
        now = self._clock()
        if self.reuse_s <= 0:
            self.signed += 1
            return self._signer.token(
                audience=audience, call_id=call_id, tenant_id=tenant_id, jti=jti, now=now
            )
        signing = self._signer.signing_key(now)
        key = (audience, tenant_id, call_id, signing.kid if signing is not None else None)
        held = self._tokens.get(key)
        if held is not None and now < held[0]:
            return held[1]
        self.signed += 1
        token = self._signer.token(audience=audience, call_id=call_id, tenant_id=tenant_id, now=now)
        self._tokens.pop(key, None)
        self._tokens[key] = (now + self.reuse_s, token)
        if len(self._tokens) > self._max:
            self._evict(now)
        return token

    def _evict(self, now: float) -> None:
        for key in [k for k, (until, _) in self._tokens.items() if until <= now]:
            del self._tokens[key]
        while len(self._tokens) > self._max:
            del self._tokens[next(iter(self._tokens))]


__all__ = ["MAX_TOKENS", "TokenCache"]
