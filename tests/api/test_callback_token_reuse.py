"""Callback tokens reused for a bounded time (``notify_token_reuse_s``): one signature per call
and app, still a token a stock validator accepts (iss, aud, tid, callId, at least half its
lifetime left when sent); the notification's own id stays in ``Notification-Id``; a new
signing key takes over at once; with reuse 0 each notification has its own token, ``jti`` =
its id."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jwt

from dtmfgraph.notify.keystore import data_dir_keys
from dtmfgraph.notify.signer import CallbackSigner
from dtmfgraph.notify.tokens import TokenCache

from .harness import APP, TENANT
from .test_webhook_delivery import Hook, _add, dispatching, hooks, outbox, until

ISSUER = "https://dtmfgraph.example"


def _signer(tmp_path: Path) -> CallbackSigner:
    return CallbackSigner(issuer=ISSUER, keys=data_dir_keys(tmp_path))


def _validate(signer: CallbackSigner, token: str) -> dict[str, Any]:
    """As a bot validates a callback: the published keys, RS256, issuer, audience, tenant."""
    keys = jwt.PyJWKSet.from_dict(signer.jwks())
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in keys.keys if k.key_id == kid)
    claims: dict[str, Any] = jwt.decode(
        token,
        key.key,
        algorithms=["RS256"],
        audience=APP,
        issuer=ISSUER,
        options={"require": ["exp", "iat", "nbf", "iss", "aud", "tid"]},
    )
    return claims


def test_a_token_is_reused_for_a_call_and_app_then_renewed(tmp_path: Path) -> None:
    t = [time.time()]
    signer = _signer(tmp_path)
    tokens = TokenCache(signer, 300.0, clock=lambda: t[0])

    def token(call_id: str = "c1", app: str = APP, jti: str = "n") -> str:
        return tokens.token(audience=app, call_id=call_id, tenant_id=TENANT, jti=jti)

    first = token(jti="n1")
    t[0] += 299.0
    assert token(jti="n2") == first and tokens.signed == 1  # one signature for both
    claims = jwt.decode(first, options={"verify_signature": False})
    assert claims["exp"] - t[0] >= 300  # sent with at least half its lifetime left
    assert (claims["aud"], claims["tid"], claims["callId"]) == (APP, TENANT, "c1")
    assert claims["jti"] not in ("n1", "n2")  # the token's id, not a notification's
    assert token("c2") != first and token(app="other-app") != first  # per call, per app
    t[0] += 1.0
    renewed = token()
    assert renewed != first and tokens.signed == 4
    assert _validate(signer, first)["callId"] == "c1"  # as a bot checks it
    assert jwt.decode(renewed, options={"verify_signature": False})["iat"] == int(t[0])


def test_reuse_is_bounded_by_half_the_lifetime_and_zero_is_a_token_per_notification(
    tmp_path: Path,
) -> None:
    signer = _signer(tmp_path)
    assert TokenCache(signer, 3600.0).reuse_s == 300.0
    tokens = TokenCache(signer, 0.0)
    a = tokens.token(audience=APP, call_id="c", tenant_id=TENANT, jti="note-1")
    b = tokens.token(audience=APP, call_id="c", tenant_id=TENANT, jti="note-2")
    ids = [jwt.decode(x, options={"verify_signature": False})["jti"] for x in (a, b)]
    assert ids == ["note-1", "note-2"] and tokens.signed == 2


def test_a_new_signing_key_takes_over_at_once(tmp_path: Path) -> None:
    data_dir_keys(tmp_path)
    subprocess.run(
        [sys.executable, "-m", "dtmfgraph", "callback-key", "roll", "--data-dir",
         str(tmp_path), "--after", "3600"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    old, new = data_dir_keys(tmp_path)
    t0 = 1_800_000_000.0
    keys = [old, type(new)(new.private, t0 + 100, new.jwk)]
    signer = CallbackSigner(issuer=ISSUER, keys=keys)
    t = [t0 + 99]
    tokens = TokenCache(signer, 300.0, clock=lambda: t[0])
    before = tokens.token(audience=APP, call_id="c", tenant_id=TENANT, jti="n")
    t[0] = t0 + 101  # within the reuse time, but the new key signs now
    after = tokens.token(audience=APP, call_id="c", tenant_id=TENANT, jti="n")
    kids = [jwt.get_unverified_header(x)["kid"] for x in (before, after)]
    assert kids == [old.kid, new.kid]


async def test_one_token_for_a_calls_notifications_each_with_its_own_id(db_url: str) -> None:
    hook = Hook("ok")
    async with hooks(hook), outbox(db_url) as repo, dispatching(repo) as d:
        for _ in range(3):
            await _add(repo, "A", hook.url)
        await _add(repo, "B", hook.url)
        await until(lambda: len(hook.accepted) == 4, "the four notifications")
        signed = d.tokens.signed
    # the Notification-Id header of each POST: the ids of its notifications (A's may share one)
    ids = [i for p in hook.posts for i in p[0].split(", ")]
    assert len(set(ids)) == 4 and all(len(i) == 36 for i in ids)
    assert signed == 2  # call A's three share one token; call B has its own
    tokens = {i: p[1] for p in hook.posts for i in p[0].split(", ")}  # jti of its POST's token
    assert len(set(tokens.values())) == 2
