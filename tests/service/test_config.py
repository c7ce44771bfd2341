"""Settings parsing and key material on their own (no server)."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from dtmfgraph.api.app import build_media
from dtmfgraph.api.metrics import UNMATCHED, route_template
from dtmfgraph.notify import CallbackSigner
from dtmfgraph.service.sip_media import SipMedia
from dtmfgraph.settings import Settings


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def test_allowed_hosts_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DTMFGRAPH_CALLBACK_ALLOWED_HOSTS", " hooks.lan , 10.0.0.5,")
    assert Settings().callback_allowed_hosts == ["hooks.lan", "10.0.0.5"]
    monkeypatch.setenv("DTMFGRAPH_CALLBACK_ALLOWED_HOSTS", '["a.lan", "b.lan"]')
    assert Settings().callback_allowed_hosts == ["a.lan", "b.lan"]


def test_pem_text_or_file(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    path.write_text("PEM")
    assert Settings(jwt_rs256_public_key_file=path).rs256_public_key_pem() == "PEM"
    assert Settings(callback_rs256_private_key="X").callback_private_key_pem() == "X"
    with pytest.raises(ValueError, match="not both"):
        Settings(jwt_rs256_public_key="X", jwt_rs256_public_key_file=path).rs256_public_key_pem()
    with pytest.raises(ValueError, match="callback_rs256_private_key_file: cannot read"):
        Settings(callback_rs256_private_key_file=tmp_path / "no").callback_private_key_pem()


def test_loopback_listener() -> None:
    for host in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"):
        assert Settings(host=host).listens_on_loopback(), host
    for host in ("0.0.0.0", "::", "192.0.2.1", "example.com"):
        assert not Settings(host=host).listens_on_loopback(), host


def test_signer_kid_and_jwks() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signer = CallbackSigner(issuer="me", rs256_private_key=_pem(key))
    token = signer.token(audience="app", call_id="c")
    [jwk] = signer.jwks()["keys"]
    assert jwt.get_unverified_header(token)["kid"] == jwk["kid"] == signer.kid
    public = jwt.PyJWK.from_dict(jwk).key
    assert jwt.decode(token, public, algorithms=["RS256"], audience="app")["callId"] == "c"
    with pytest.raises(ValueError, match="RS256 needs an RSA key"):
        CallbackSigner(issuer="me", rs256_private_key=_pem(ec.generate_private_key(ec.SECP256R1())))
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ValueError, match="use at least 2048"):
        CallbackSigner(issuer="me", rs256_private_key=_pem(small))
    with pytest.raises(ValueError, match="not an unencrypted PEM private key"):
        CallbackSigner(issuer="me", rs256_private_key="junk")
    assert CallbackSigner(issuer="me", hs256_secret="s").jwks() == {"keys": []}


def test_route_template() -> None:
    from fastapi.routing import APIRoute

    async def endpoint() -> None:
        return None

    route = APIRoute("/communications/calls/{call_id}", endpoint)
    assert route_template(route, "/v1.0/communications/calls/abc") == (
        "/v1.0/communications/calls/{call_id}"
    )
    assert route_template(route, "/communications/calls/abc") == "/communications/calls/{call_id}"
    assert route_template(None, "/nowhere") == UNMATCHED


def test_public_key_forms() -> None:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    from dtmfgraph.api.auth import load_rs256_public_key

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pub = key.public_key()
    spki = pub.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    pkcs1 = pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1).decode()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "issuer")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(pub)
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )
    for pem in (spki, pkcs1, cert):
        assert load_rs256_public_key(pem).public_numbers() == pub.public_numbers()
    ec_pub = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    with pytest.raises(ValueError, match="RS256 needs an RSA key"):
        load_rs256_public_key(ec_pub)
    pkcs1_private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    assert CallbackSigner(issuer="me", rs256_private_key=pkcs1_private).kid


def test_strict_rtp_is_on_by_default_and_reaches_the_phone(monkeypatch: pytest.MonkeyPatch) -> None:
    on = build_media(Settings(media="sip"))
    assert isinstance(on, SipMedia) and on.strict_rtp
    monkeypatch.setenv("DTMFGRAPH_STRICT_RTP", "false")
    off = build_media(Settings(media="sip"))
    assert isinstance(off, SipMedia) and not off.strict_rtp
