"""``dtmfgraph serve`` as a user runs it (subprocess): --no-auth rules, RS256 key files."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import jwt
import pytest

from dtmfgraph.notify import CallbackSigner

from .harness import APP, free_port
from .test_auth_rs256 import claims, rsa_pair, verify_with_jwks


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DTMFGRAPH_")}
    env.update(extra)
    return env


def run_serve(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dtmfgraph", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env or _env(),
        cwd=cwd,
        check=False,
    )


def test_no_auth_refused_off_loopback(tmp_path: Path) -> None:
    for host in ("0.0.0.0", "::", "192.0.2.10"):
        done = run_serve(
            "--no-auth", "--host", host, "--media", "loopback", "--data-dir", str(tmp_path)
        )
        assert done.returncode == 2, (host, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert lines[0].startswith(
            "error: --no-auth (auth_enabled=false) is allowed only on a loopback address"
        ), done.stderr
        assert repr(host) in lines[0]
    # the same through the environment
    done = run_serve(
        "--host",
        "0.0.0.0",
        "--media",
        "loopback",
        "--data-dir",
        str(tmp_path),
        env=_env(DTMFGRAPH_AUTH_ENABLED="false"),
    )
    assert done.returncode == 2 and "allowed only on a loopback address" in done.stderr
    assert not (tmp_path / "dtmfgraph.sqlite3").exists()  # refused before anything started


@contextmanager
def serving(tmp: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[tuple[str, Path]]:
    """``dtmfgraph serve`` on a free port; yields (base URL, its stderr file)."""
    port = free_port()
    log = tmp / f"serve-{port}.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dtmfgraph",
                "serve",
                "--port",
                str(port),
                "--media",
                "loopback",
                "--data-dir",
                str(tmp),
                *args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env or _env(),
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                httpx.get(f"{base}/openapi.json", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        yield base, log
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_no_auth_on_loopback_warns_loudly(tmp_path: Path) -> None:
    with serving(tmp_path, "--no-auth", "--host", "127.0.0.1") as (base, log):
        text = log.read_text()
        assert "WARNING: AUTHENTICATION IS DISABLED (--no-auth)" in text, text
        assert "token (24 h" not in text
        resp = httpx.post(
            f"{base}/v1.0/communications/calls",
            json={
                "callbackUri": "http://127.0.0.1:9/cb",
                "targets": [{"identity": {"phone": {"id": "+14255550100"}}}],
            },
        )
        assert resp.status_code == 201, resp.text  # no token needed


def test_rs256_key_files_through_the_cli(tmp_path: Path) -> None:
    pub = tmp_path / "api.pem"
    pub.write_text(rsa_pair("api")[1])
    with serving(tmp_path, "--jwt-rs256-public-key-file", str(pub)) as (base, log):
        text = log.read_text()
        assert "API tokens are RS256" in text and "callbacks signed RS256" in text, text
        # no callback key configured: one was made in the data dir, private to its owner
        key_file = tmp_path / "callback-key.pem"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        token = jwt.encode(claims(), rsa_pair("api")[0], algorithm="RS256")
        resp = httpx.post(
            f"{base}/v1.0/communications/calls",
            headers={"Authorization": f"Bearer {token}"},
            json={
                "callbackUri": "http://127.0.0.1:9/cb",
                "targets": [{"identity": {"phone": {"id": "+14255550100"}}}],
            },
        )
        assert resp.status_code == 201, resp.text
        jwks = httpx.get(f"{base}/.well-known/dtmfgraph/jwks.json").json()
        assert len(jwks["keys"]) == 1
    # a callback token signed with that key verifies against what was published
    signer = CallbackSigner(issuer=base, rs256_private_key=key_file.read_text())
    assert signer.jwks() == jwks
    with serving(tmp_path, "--jwt-rs256-public-key-file", str(pub)) as (base, _):
        signer.issuer = base  # (a new port: a new default issuer)
        header = "Bearer " + signer.token(audience=APP, call_id="c1")
        seen = asyncio.run(verify_with_jwks(base, header, audience=APP))  # same key on restart
    assert seen["callId"] == "c1"


def test_bad_key_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    done = run_serve("--media", "loopback", "--jwt-rs256-public-key-file", str(bad), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("error: jwt_rs256_public_key: not a PEM public key"), done.stderr
    done = run_serve(
        "--media", "loopback", "--jwt-rs256-public-key-file", str(tmp_path / "none"), cwd=tmp_path
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: jwt_rs256_public_key_file: cannot read"), done.stderr
    assert list(tmp_path.iterdir()) == [bad]  # nothing was written


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--media-timeout", "-1"],
            "error: --media-timeout: Input should be greater than or equal",
        ),
        (["--sip-port", "70000"], "error: --sip-port: Input should be less than or equal to 65535"),
        (["--loopback-speed", "0"], "error: --loopback-speed: Input should be greater than 0"),
        (["--srtp", "sometimes"], "error: --srtp: Input should be 'never', 'optional' or"),
        (["--sip-failover-after", "0"], "error: --sip-failover-after: Input should be greater"),
        (["--sip-tls-port", "70000"], "error: --sip-tls-port: Input should be less than"),
    ],
)
def test_out_of_range_option_is_one_line_and_exit_2(
    tmp_path: Path, args: list[str], message: str
) -> None:
    done = run_serve(*args, "--data-dir", str(tmp_path / "data"), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()], done.stderr
    assert done.stderr.startswith(message), done.stderr
    assert not (tmp_path / "data").exists()  # refused before anything started


def test_sip_account_options_are_checked_before_start(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    done = run_serve("--sip-auth-user", "bot", "--data-dir", data, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(
        "error: sip_auth_password: the SIP user needs a password (DTMFGRAPH_SIP_AUTH_PASSWORD"
    ), done.stderr
    missing = tmp_path / "nope"
    done = run_serve(
        "--sip-auth-user", "bot", "--sip-auth-password-file", str(missing), "--data-dir", data
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"error: sip_auth_password_file: cannot read {str(missing)!r}"), (
        done.stderr
    )
    done = run_serve("--data-dir", data, env=_env(DTMFGRAPH_SIP_AUTH_PASSWORD="pw"), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: sip_auth_user: a SIP password needs a user name")
    done = run_serve("--sip-dns-server", "dns.example:53", "--data-dir", data, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(
        "error: sip_dns_server: 'dns.example:53' is not an IP address[:port]"
    ), done.stderr
    done = run_serve("--sip-register-expires", "5", "--data-dir", data, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: --sip-register-expires: Input should be greater")
    assert not (tmp_path / "data").exists()  # refused before anything started


def test_sip_register_without_a_user_part_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "sip-password"
    secret.write_text("pw\n")
    done = run_serve(
        *("--sip-port", "0", "--port", str(free_port()), "--data-dir", str(tmp_path / "data")),
        *("--sip-auth-user", "bot", "--sip-auth-password-file", str(secret)),
        *("--sip-register", "sip:127.0.0.1:5999"),
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --sip-register: registering sip:127.0.0.1:5999 failed"), last
    assert "needs a user part" in last


def test_unusable_tls_files_are_one_line_and_exit_2(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    base = ("--sip-port", "0", "--port", str(free_port()), "--data-dir", str(tmp_path / "data"))
    done = run_serve(*base, "--sip-tls-cert-file", str(missing), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: sip_tls_cert_file: cannot use the TLS certificate"), last
    assert str(missing) in last
    done = run_serve(*base, "--sip-tls-ca-file", str(missing), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last == "error: sip_tls_ca_file: TLS needs sip_tls_cert_file too", last
    done = run_serve(*base, "--sip-tls-require-client-cert", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last == "error: sip_tls_require_client_cert: TLS needs sip_tls_cert_file too", last


def test_a_bad_sip_allow_from_network_is_one_line_and_exit_2(tmp_path: Path) -> None:
    base = ("--sip-port", "0", "--port", str(free_port()), "--data-dir", str(tmp_path / "data"))
    done = run_serve(*base, "--sip-allow-from", "10.0.0.0/8", "--sip-allow-from", "pbx.example",
                     cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --sip-allow-from: ") and "'pbx.example' is not a network" in last


def test_an_inbound_auth_user_without_a_password_is_one_line_and_exit_2(tmp_path: Path) -> None:
    base = ("--sip-port", "0", "--port", str(free_port()), "--data-dir", str(tmp_path / "data"))
    done = run_serve(*base, "--sip-inbound-auth-user", "alice", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "error: sip_inbound_auth_password: the SIP user needs a password "
        "(DTMFGRAPH_SIP_INBOUND_AUTH_PASSWORD or a password file)"
    )


def test_callback_issuer_and_prompt_options(tmp_path: Path) -> None:
    args = ("--callback-issuer", "https://api.botframework.com", "--prompt-dir", str(tmp_path))
    with serving(tmp_path, *args) as (base, log):
        config = httpx.get(f"{base}/v1/.well-known/OpenIdConfiguration").json()
        assert config["issuer"] == "https://api.botframework.com"
        assert config["jwks_uri"] == f"{base}/v1/keys"
        assert "callbacks signed RS256 (iss https://api.botframework.com)" in log.read_text()


def test_settings_file_under_environment_under_flags(tmp_path: Path) -> None:
    """``serve --config FILE``: the file's settings apply unless a DTMFGRAPH_* variable or a
    flag gives the same one."""
    config = tmp_path / "dtmfgraph.toml"
    config.write_text(
        'port = 1\ncallback_issuer = "https://file.example"\n\n'
        '[auth]\nauth_enabled = false\njwt_issuer = "from-file"\n'
    )
    env = _env(DTMFGRAPH_CALLBACK_ISSUER="https://env.example")
    with serving(tmp_path, "--config", str(config), env=env) as (base, log):
        text = log.read_text()
        assert f"Graph API on {base}/v1.0" in text, text  # the flag's port, not the file's
        assert "AUTHENTICATION IS DISABLED" in text, text  # the file's auth_enabled
        assert "(iss https://env.example)" in text, text  # the variable over the file
    done = run_serve("--config", str(tmp_path / "missing.toml"))
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: {tmp_path / 'missing.toml'}: cannot read"), done.stderr
