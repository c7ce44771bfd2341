"""RS256: API tokens verified with a configured public key, callbacks signed with a private key
and verified by the receiver against the published JWKS. HS256 keeps working beside it."""

from __future__ import annotations

import time
import uuid
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from dtmfgraph.api import create_app
from dtmfgraph.notify.signer import rsa_kid
from dtmfgraph.service import LoopbackMedia

from .conftest import ServiceFactory
from .harness import APP, SECRET, TENANT, Receiver, Service, free_port, make_settings
from .sdkhelp import new_call

JWKS_PATH = "/.well-known/dtmfgraph/jwks.json"


@cache
def rsa_pair(name: str) -> tuple[str, str]:
    """(private PEM, public PEM) of a 2048-bit RSA key, one per name for the whole session."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def claims(**over: Any) -> dict[str, Any]:
    t = int(time.time())
    out: dict[str, Any] = {
        "iss": "dtmfgraph",
        "aud": "dtmfgraph",
        "iat": t,
        "nbf": t - 5,
        "exp": t + 600,
        "tid": TENANT,
        "appid": APP,
        "roles": ["Calls.Initiate.All", "Calls.AccessMedia.All"],
        "jti": str(uuid.uuid4()),
    }
    for key, value in over.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def rs256(key: str = "api", **over: Any) -> str:
    return jwt.encode(claims(**over), rsa_pair(key)[0], algorithm="RS256")


def call_body(receiver: Receiver) -> dict[str, Any]:
    return {"callbackUri": receiver.url, "targets": [{"identity": {"user": {"id": "sip:b@h"}}}]}


async def create(svc: Service, receiver: Receiver, token: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=f"{svc.base}/v1.0") as http:
        return await http.post(
            "/communications/calls",
            json=call_body(receiver),
            headers={"Authorization": f"Bearer {token}"},
        )


async def verify_with_jwks(base: str, header: str, audience: str) -> dict[str, Any]:
    """What a receiver does: fetch the published key set, pick the key by ``kid``, verify."""
    assert header.startswith("Bearer ")
    token = header[7:]
    async with httpx.AsyncClient() as http:
        resp = await http.get(f"{base}{JWKS_PATH}")
    assert resp.status_code == 200, resp.text
    keys = jwt.PyJWKSet.from_dict(resp.json())
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in keys.keys if k.key_id == kid)
    out: dict[str, Any] = jwt.decode(
        token, key.key, algorithms=["RS256"], audience=audience, issuer=base
    )
    return out


@pytest.fixture
def rs_factory(service_factory: ServiceFactory) -> ServiceFactory:
    def factory(**over: Any) -> Any:
        over.setdefault("jwt_rs256_public_key", rsa_pair("api")[1])
        over.setdefault("callback_rs256_private_key", rsa_pair("callbacks")[0])
        return service_factory(**over)

    return factory


async def test_rs256_token_accepted_and_callback_verifies_with_jwks(
    rs_factory: ServiceFactory, receiver: Receiver
) -> None:
    async with rs_factory() as svc:
        resp = await create(svc, receiver, rs256())
        assert resp.status_code == 201, resp.text
        cid = resp.json()["id"]
        await receiver.wait_for(lambda n: n["resourceData"].get("state") == "established")
        header = receiver.auth_headers[-1]
        claims_seen = await verify_with_jwks(svc.base, header, audience=APP)
        assert claims_seen["callId"] == cid
        assert jwt.get_unverified_header(header[7:])["alg"] == "RS256"
        # the key set publishes exactly the public half of the configured key, nothing secret
        async with httpx.AsyncClient() as http:
            jwks = (await http.get(f"{svc.base}{JWKS_PATH}")).json()
        [jwk] = jwks["keys"]
        assert (jwk["kty"], jwk["alg"], jwk["use"]) == ("RSA", "RS256", "sig")
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(jwk)
        # a receiver holding only the HS256 secret cannot be fooled into accepting it
        with pytest.raises(jwt.PyJWTError):
            jwt.decode(header[7:], SECRET, algorithms=["HS256"], audience=APP)

        # the official SDK with an RS256 bearer token
        client = svc.sdk("v1.0", token=rs256())
        call = await client.communications.calls.post(new_call("v1.0", receiver.url))
        assert call.id
        # HS256 still works beside RS256
        assert (await create(svc, receiver, svc.token())).status_code == 201


BAD_TOKENS: list[tuple[str, Any, str]] = [
    (
        "another key",
        lambda: rs256(key="intruder"),
        "Access token validation failure: the RS256 signature does not match any configured key.",
    ),
    (
        "wrong issuer",
        lambda: rs256(iss="https://evil.example"),
        "Access token validation failure: issuer 'https://evil.example' is not the expected "
        "'dtmfgraph'.",
    ),
    (
        "wrong audience",
        lambda: rs256(aud="someone-else"),
        "Access token validation failure: audience 'someone-else' is not the expected 'dtmfgraph'.",
    ),
    (
        "expired",
        lambda: rs256(iat=int(time.time()) - 7200, nbf=int(time.time()) - 7200, exp=1_000_000),
        "Access token has expired.",
    ),
    (
        "no tid",
        lambda: rs256(tid=None),
        "Access token validation failure: the 'tid' (tenant id) claim is missing.",
    ),
    (
        "no appid",
        lambda: rs256(appid=None),
        "Access token validation failure: the 'appid' (or 'azp') application id claim is missing.",
    ),
    (
        "no exp",
        lambda: rs256(exp=None),
        "Access token validation failure: the 'exp' claim is missing.",
    ),
    (
        "alg none",
        lambda: jwt.encode(claims(), None, algorithm="none"),
        "Access token validation failure: the token is signed with 'none'; this service "
        "accepts RS256 or HS256.",
    ),
    (
        "another algorithm",
        lambda: jwt.encode(claims(), ec.generate_private_key(ec.SECP256R1()), algorithm="ES256"),
        "Access token validation failure: the token is signed with 'ES256'; this service "
        "accepts RS256 or HS256.",
    ),
    (
        "garbage",
        lambda: "not.a.jwt",
        "Access token validation failure: the token is not a well-formed JWT.",
    ),
]


async def test_rs256_rejections_are_precise(rs_factory: ServiceFactory, receiver: Receiver) -> None:
    async with rs_factory() as svc:
        for what, make, message in BAD_TOKENS:
            resp = await create(svc, receiver, make())
            assert resp.status_code == 401, (what, resp.text)
            err = resp.json()["error"]
            assert (err["code"], err["message"]) == ("unauthenticated", message), what
            assert resp.headers["www-authenticate"] == "Bearer"
        # 'azp' stands in for 'appid' (v2 tokens)
        assert (await create(svc, receiver, rs256(appid=None, azp=APP))).status_code == 201


async def test_keys_from_pem_files_rs256_only(
    service_factory: ServiceFactory, receiver: Receiver, tmp_path: Path
) -> None:
    pub = tmp_path / "api-public.pem"
    pub.write_text(rsa_pair("api")[1])
    priv = tmp_path / "callbacks-private.pem"
    priv.write_text(rsa_pair("callbacks")[0])
    async with service_factory(
        jwt_hs256_secret=None,
        jwt_rs256_public_key_file=pub,
        callback_rs256_private_key_file=priv,
    ) as svc:
        resp = await create(svc, receiver, rs256())
        assert resp.status_code == 201, resp.text
        await receiver.wait_for(lambda n: n["resourceData"].get("state") == "established")
        claims_seen = await verify_with_jwks(svc.base, receiver.auth_headers[-1], audience=APP)
        assert claims_seen["callId"] == resp.json()["id"]
        hs = await create(svc, receiver, jwt.encode(claims(), SECRET, algorithm="HS256"))
        assert hs.status_code == 401
        assert hs.json()["error"]["message"] == (
            "Access token validation failure: the token is signed with 'HS256'; this service "
            "accepts RS256."
        )


async def test_hs256_callbacks_publish_no_key(
    service_factory: ServiceFactory, receiver: Receiver
) -> None:
    async with service_factory(callback_algorithm="HS256") as svc:
        async with httpx.AsyncClient() as http:
            resp = await http.get(f"{svc.base}{JWKS_PATH}")
        assert resp.status_code == 200 and resp.json() == {"keys": []}
        assert (await create(svc, receiver, svc.token())).status_code == 201
        await receiver.wait_for(lambda n: n["resourceData"].get("state") == "established")
    claims = jwt.decode(
        receiver.auth_headers[-1][7:], SECRET, algorithms=["HS256"], audience=APP, issuer=svc.base
    )
    assert claims["tid"] == TENANT


async def test_key_rotation_api_tokens_and_callback_jwks(
    rs_factory: ServiceFactory, receiver: Receiver, tmp_path: Path
) -> None:
    """Rotation without downtime: tokens signed by the current or the next API key are both
    accepted (by ``kid``, or by trying each key when the token names none), a third key is
    not; the callbacks' JWKS publishes the signing key first and the extra (next) key after."""
    next_api = tmp_path / "next-api.pem"
    next_api.write_text(rsa_pair("api-next")[1])
    next_cb = tmp_path / "next-callbacks.pem"
    next_cb.write_text(rsa_pair("callbacks-next")[1])
    pub = serialization.load_pem_public_key(rsa_pair("api-next")[1].encode())
    async with rs_factory(
        jwt_rs256_extra_public_key_files=[next_api],
        callback_jwks_extra_public_key_files=[next_cb],
    ) as svc:
        kid = rsa_kid(pub)  # type: ignore[arg-type]
        named = jwt.encode(
            claims(), rsa_pair("api-next")[0], algorithm="RS256", headers={"kid": kid}
        )
        for token in (rs256(), rs256("api-next"), named):
            resp = await create(svc, receiver, token)
            assert resp.status_code == 201, resp.text
        resp = await create(svc, receiver, rs256("intruder"))
        assert resp.status_code == 401
        assert "does not match any configured key" in resp.json()["error"]["message"]
        async with httpx.AsyncClient() as http:
            keys = (await http.get(f"{svc.base}{JWKS_PATH}")).json()["keys"]
        signing = jwt.get_unverified_header(svc.app.state.signer.token(audience=APP, call_id="c"))
        next_pub = serialization.load_pem_public_key(rsa_pair("callbacks-next")[1].encode())
        assert [k["kid"] for k in keys] == [signing["kid"], rsa_kid(next_pub)]  # type: ignore[arg-type]


def test_extra_key_file_that_cannot_be_read_is_a_clear_error(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        f"sqlite+aiosqlite:///{tmp_path / 'g.sqlite3'}",
        free_port(),
        jwt_rs256_extra_public_key_files=[tmp_path / "missing.pem"],
    )
    with pytest.raises(ValueError, match="jwt_rs256_extra_public_key_files: cannot read"):
        create_app(settings, LoopbackMedia())
