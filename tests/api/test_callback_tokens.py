"""Callback tokens a stock validator accepts (spec 8): RS256 by default with a key made in the
data directory, kid/x5t/x5c, tid, our issuer, OpenID metadata at both paths, and key rollover.

The validator is written as Graph's comms samples validate Microsoft's callbacks, in Python:
PyJWT's ``PyJWKClient`` fed the ``jwks_uri`` of our OpenID configuration, RS256 only, issuer
and audience checked, a tenant (``tid``) required."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography import x509

from dtmfgraph.notify.keystore import data_dir_keys, roll
from dtmfgraph.notify.signer import CallbackSigner
from dtmfgraph.service import LoopbackMedia

from .harness import APP, TENANT, Receiver, Service, free_port, make_settings, running_service
from .sdkhelp import new_call


def validate(metadata_url: str, token: str, audience: str) -> dict[str, Any]:
    """What a bot does with each callback (blocking, as PyJWT is: run it in a thread)."""
    with httpx.Client() as http:
        config = http.get(metadata_url).json()
    client = jwt.PyJWKClient(config["jwks_uri"], cache_keys=True)
    key = client.get_signing_key_from_jwt(token)
    claims: dict[str, Any] = jwt.decode(
        token,
        key.key,
        algorithms=config["id_token_signing_alg_values_supported"],
        audience=audience,
        issuer=config["issuer"],
        options={"require": ["exp", "iat", "nbf", "iss", "aud", "tid"]},
    )
    return claims


@pytest.fixture
async def svc(tmp_path: Path, receiver: Receiver) -> AsyncIterator[Service]:
    settings = make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'g.sqlite3'}", free_port())
    async with running_service(settings, LoopbackMedia(speed=0.05)) as s:
        yield s


async def test_callbacks_validate_with_pyjwkclient_at_our_metadata(
    svc: Service, receiver: Receiver, tmp_path: Path
) -> None:
    # RS256 by default: a key was made in the data dir on first start, private to its owner
    key_file = tmp_path / "callback-key.pem"
    assert key_file.stat().st_mode & 0o777 == 0o600
    client = svc.sdk()
    call = await client.communications.calls.post(new_call("v1.0", receiver.url))
    await receiver.wait_for(lambda n: n["resourceData"].get("state") == "established")
    header = receiver.auth_headers[-1]
    token = header.removeprefix("Bearer ")
    head = jwt.get_unverified_header(token)
    assert head["alg"] == "RS256" and head["kid"] and head["x5t"]

    for path in ("/v1/.well-known/OpenIdConfiguration", "/.well-known/openid-configuration"):
        claims = await asyncio.to_thread(validate, svc.base + path, token, APP)
        assert claims["tid"] == TENANT and claims["callId"] == call.id
        assert claims["iss"] == svc.base  # the default issuer: public_base_url
        assert claims["exp"] - claims["iat"] == 600
    # another app's audience, or a validator expecting Microsoft's issuer, is refused
    with pytest.raises(jwt.InvalidAudienceError):
        await asyncio.to_thread(
            validate, svc.base + "/.well-known/openid-configuration", token, "another-app"
        )

    async with httpx.AsyncClient(base_url=svc.base) as http:
        config = (await http.get("/.well-known/openid-configuration")).json()
        assert config == {
            "issuer": svc.base,
            "authorization_endpoint": f"{svc.base}/invalid",
            "jwks_uri": f"{svc.base}/v1/keys",
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        }
        keys = (await http.get("/v1/keys")).json()
        assert keys == (await http.get("/.well-known/dtmfgraph/jwks.json")).json()
    [jwk] = keys["keys"]
    assert jwk["kid"] == head["kid"] and jwk["x5t"] == head["x5t"]
    # x5c: a certificate for the same key (some validators build the key from it)
    der = base64.b64decode(jwk["x5c"][0])
    cert = x509.load_der_x509_certificate(der)
    assert base64.urlsafe_b64encode(hashlib.sha1(der).digest()).rstrip(b"=").decode() == jwk["x5t"]
    jwt.decode(token, cert.public_key(), algorithms=["RS256"], audience=APP, issuer=svc.base)  # type: ignore[arg-type]


def test_rollover_two_keys_published_while_the_new_one_takes_over(tmp_path: Path) -> None:
    t0 = 1_800_000_000.0
    (tmp_path / "keys").mkdir()
    old = data_dir_keys(tmp_path / "keys")[0]
    # a new key taking over in an hour (what `dtmfgraph callback-key roll --after 3600` makes)
    done = subprocess.run(
        [sys.executable, "-m", "dtmfgraph", "callback-key", "roll", "--data-dir",
         str(tmp_path / "keys"), "--after", "3600"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "new callback key" in done.stdout
    keys = data_dir_keys(tmp_path / "keys")
    assert len(keys) == 2
    new = keys[1]
    # rebase its activation on our fake clock
    keys = [old, type(new)(new.private, t0 + 3600, new.jwk)]
    signer = CallbackSigner(issuer="https://dtmfgraph.example", keys=keys, grace_s=86_400)

    def published(at: float) -> list[str]:
        return [k["kid"] for k in signer.jwks(at)["keys"]]

    def signed_by(at: float) -> str:
        token = signer.token(audience=APP, call_id="c", tenant_id=TENANT, now=at)
        return str(jwt.get_unverified_header(token)["kid"])

    # before: the old key signs; the new one is already published
    assert published(t0) == [old.kid, new.kid] and signed_by(t0) == old.kid
    # after the takeover: the new key signs; the old one stays published for the grace period
    assert published(t0 + 3601) == [new.kid, old.kid] and signed_by(t0 + 3601) == new.kid
    assert published(t0 + 3600 + 86_401) == [new.kid]
    # tokens of both keys validate against the set published during the takeover
    during = jwt.PyJWKSet.from_dict(signer.jwks(t0 + 3601))
    for at in (t0, t0 + 3601):
        token = signer.token(audience=APP, call_id="c", tenant_id=TENANT, now=at)
        kid = jwt.get_unverified_header(token)["kid"]
        key = next(k for k in during.keys if k.key_id == kid)
        jwt.decode(
            token,
            key.key,
            algorithms=["RS256"],
            audience=APP,
            issuer="https://dtmfgraph.example",
            options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
        )


async def test_a_rolled_key_that_has_taken_over_signs_live_callbacks(
    tmp_path: Path, receiver: Receiver
) -> None:
    data = tmp_path / "data"
    first = data_dir_keys(data)[0]  # the first start's key
    roll(data, after_s=-10)  # a new key, active since 10 s ago
    settings = make_settings(
        data, f"sqlite+aiosqlite:///{tmp_path / 'g.sqlite3'}", free_port(),
        callback_issuer="https://api.botframework.com",
    )  # fmt: skip
    async with running_service(settings, LoopbackMedia(speed=0.05)) as svc:
        await svc.sdk().communications.calls.post(new_call("v1.0", receiver.url))
        await receiver.wait_for(lambda n: n["resourceData"].get("state") == "established")
        token = receiver.auth_headers[-1].removeprefix("Bearer ")
        metadata = svc.base + "/v1/.well-known/OpenIdConfiguration"
        claims = await asyncio.to_thread(validate, metadata, token, APP)
        async with httpx.AsyncClient() as http:
            kids = [k["kid"] for k in (await http.get(svc.base + "/v1/keys")).json()["keys"]]
    assert claims["iss"] == "https://api.botframework.com"  # configurable issuer
    head = jwt.get_unverified_header(token)
    assert head["kid"] != first.kid and kids == [head["kid"], first.kid]


def test_signer_takes_a_jti_from_the_caller() -> None:
    signer = CallbackSigner(issuer="i", hs256_secret="s" * 32)
    token = signer.token(audience=APP, call_id="c", tenant_id=TENANT, jti="note-42")
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims["jti"] == "note-42" and claims["tid"] == TENANT and claims["appid"]
    assert abs(claims["iat"] - time.time()) < 60
