"""https callbacks are delivered over real TLS and verified: a receiver whose certificate comes
from a private CA gets them once the service trusts that CA (``callback_ca_file``), and none
(a logged, retried TLS failure) while it does not."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from dtmfgraph.api import create_app
from dtmfgraph.service.loopback import LoopbackMedia

from .harness import (
    APP,
    Receiver,
    free_port,
    make_settings,
    running_service,
    serve_in_task,
    stop,
)


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_pki(tmp: Path) -> tuple[Path, Path, Path]:
    """A private CA and a server certificate it signs for 127.0.0.1 and localhost; returns the
    CA certificate, the server certificate and the server key (PEM files)."""
    now = datetime.datetime.now(datetime.UTC)
    valid = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1))
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("dtmfgraph test CA"))
        .issuer_name(_name("dtmfgraph test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = (tmp / "ca.pem", tmp / "server.pem", tmp / "server.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@pytest.fixture
async def tls_receiver(tmp_path: Path) -> AsyncIterator[tuple[Receiver, Path]]:
    """An https webhook receiver on 127.0.0.1 with a private CA's certificate; and that CA."""
    ca, cert, key = make_pki(tmp_path)
    r = Receiver(scheme="https")
    server, task = await serve_in_task(
        r.app(), r.port, ssl_certfile=str(cert), ssl_keyfile=str(key)
    )
    try:
        yield r, ca
    finally:
        await stop(server, task)


async def _place_call(base: str, token: str, callback: str) -> str:
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}) as c:
        body = {
            "callbackUri": callback,
            "requestedModalities": ["audio"],
            "targets": [{"identity": {"user": {"id": "sip:alice@127.0.0.1:5070"}}}],
        }
        r = await c.post("/v1.0/communications/calls", json=body)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])


async def test_trusted_private_ca_gets_signed_callbacks_over_tls(
    tmp_path: Path, tls_receiver: tuple[Receiver, Path]
) -> None:
    receiver, ca = tls_receiver
    db = f"sqlite+aiosqlite:///{tmp_path / 'g.sqlite3'}"
    settings = make_settings(tmp_path, db, free_port(), callback_ca_file=ca)
    async with running_service(settings, LoopbackMedia(speed=0.05)) as svc:
        cid = await _place_call(svc.base, svc.token(), receiver.url)
        await receiver.wait_for(lambda n: n["resourceData"].get("state") == "established")
        claims = svc.verify_callback(receiver.auth_headers[0], audience=APP)
    assert receiver.url.startswith("https://")
    assert claims["callId"] == cid


async def test_untrusted_certificate_is_not_delivered_and_says_why(
    tmp_path: Path, tls_receiver: tuple[Receiver, Path]
) -> None:
    receiver, _ = tls_receiver
    db = f"sqlite+aiosqlite:///{tmp_path / 'g.sqlite3'}"
    settings = make_settings(tmp_path, db, free_port())  # the public CAs only
    async with running_service(settings, LoopbackMedia(speed=0.05)) as svc:
        cid = await _place_call(svc.base, svc.token(), receiver.url)
        rows: list[dict[str, object]] = []
        for _ in range(100):
            rows = await svc.app.state.repo.outbox_rows(cid)
            if rows and all(r["attempts"] for r in rows):
                break
            await asyncio.sleep(0.05)
        assert rows and {r["state"] for r in rows} == {"pending"}  # kept, to be retried
        assert "CERTIFICATE_VERIFY_FAILED" in str(rows[0]["last_error"]), rows[0]
    assert receiver.batches == []


def test_bad_ca_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    db = f"sqlite+aiosqlite:///{tmp_path / 'g.sqlite3'}"
    settings = make_settings(tmp_path, db, free_port(), callback_ca_file=bad)
    with pytest.raises(ValueError, match="callback_ca_file: cannot read"):
        create_app(settings, LoopbackMedia())
