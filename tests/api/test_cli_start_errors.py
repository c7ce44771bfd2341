"""``dtmfgraph serve`` that cannot start says why in one line and exits 2 (no traceback): a data
directory it cannot write, a database it cannot reach or use, a port already taken (HTTP, SIP),
a certificate file that is not one. Each through the real CLI."""

from __future__ import annotations

import resource
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from dtmfgraph.cli.preflight import StartError, bind_http, check_database

from .harness import PG_DSN, free_port
from .test_cli_serve import _env, run_serve


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The single line ``serve`` printed, after checking it exited 2 and printed only that."""
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


def base_args(tmp_path: Path) -> tuple[str, ...]:
    return ("--sip-port", "0", "--port", str(free_port()), "--data-dir", str(tmp_path / "data"))


def test_a_data_dir_that_cannot_be_written(tmp_path: Path) -> None:
    """The case of the issue: a data directory the service may not write (its secret comes from
    the environment, so the database and the callback keys need it). Read-only for a normal
    user; for root, which may write anywhere, a file-size limit of 0 makes every write fail."""
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o555)

    def no_writes() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails, EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))

    done = subprocess.run(
        [sys.executable, "-m", "dtmfgraph", "serve", "--sip-port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(
            DTMFGRAPH_JWT_HS256_SECRET="s" * 40,
            DTMFGRAPH_PORT=str(free_port()),
            DTMFGRAPH_DATA_DIR=str(data),
        ),
        cwd=tmp_path,
        check=False,
        preexec_fn=no_writes,
    )
    line = one_error_line(done)
    assert line.startswith(f"error: the data directory {str(data)!r} cannot be written ("), line
    assert "(Permission denied)" in line or "(File too large)" in line, line
    assert "it keeps the SQLite database and the callbacks' signing keys" in line, line
    assert "--data-dir" in line and list(data.iterdir()) == []


def test_a_database_nobody_answers_on(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql+asyncpg://bot:hunter2@127.0.0.1:{port}/graph"
    line = one_error_line(run_serve(*base_args(tmp_path), "--database-url", url))
    assert line.startswith(
        f"error: cannot reach the database at 'postgresql+asyncpg://bot:***@127.0.0.1:{port}/graph'"
    ), line
    assert "hunter2" not in line and "check that the server runs" in line


def test_a_database_that_refuses_us(tmp_path: Path) -> None:
    server = PG_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    line = one_error_line(
        run_serve(*base_args(tmp_path), "--database-url", f"{server}/no_such_database_13c")
    )
    assert "refused the connection" in line and 'database "no_such_database_13c" does not' in line
    assert "check the URL's user, password and database name" in line


def test_a_url_that_is_no_database_we_use(tmp_path: Path) -> None:
    url = "mysql://bot@db.example/graph"
    line = one_error_line(run_serve(*base_args(tmp_path), "--database-url", url))
    assert line == (
        f"error: --database-url {url!r} is not a database dtmfgraph can use (No module named "
        "'MySQLdb'): use postgresql+asyncpg://USER:PASSWORD@HOST:PORT/DATABASE or "
        "sqlite+aiosqlite:///PATH"
    )


@pytest.mark.parametrize(
    ("url", "start"),
    [
        ("not a url", "--database-url 'not a url' is not a database dtmfgraph can use (Could"),
        ("oracle+oracledb://bot@db.example/graph", "--database-url 'oracle+oracledb://bot@"),
        ("sqlite+aiosqlite:///{tmp}/missing/graph.sqlite3", "cannot open the SQLite database"),
    ],
)
async def test_database_urls_checked_before_start(tmp_path: Path, url: str, start: str) -> None:
    """The same check, in this process (the CLI prints what it raises, as above)."""
    with pytest.raises(StartError) as caught:
        await check_database(url.format(tmp=tmp_path))
    assert str(caught.value).startswith(start), caught.value


@contextmanager
def taken_tcp() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@contextmanager
def taken_udp() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_an_http_port_in_use(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    with taken_tcp() as port:
        line = one_error_line(run_serve("--sip-port", "0", "--port", str(port), "--data-dir", data))
    assert line == (
        f"error: cannot listen for HTTP on 127.0.0.1:{port} (Address already in use): another "
        "process uses that port: stop it, or choose another with --port"
    )


def test_a_sip_port_in_use(tmp_path: Path) -> None:
    data = ("--port", str(free_port()), "--data-dir", str(tmp_path / "data"))
    with taken_udp() as port:
        line = one_error_line(run_serve("--sip-port", str(port), *data))
    assert line.startswith(f"error: cannot start SIP on 127.0.0.1:{port}: "), line
    assert line.endswith("another process uses that port: stop it, or choose another with "
                         "--sip-port or --sip-tls-port"), line  # fmt: skip


def test_a_certificate_file_that_is_not_one(tmp_path: Path) -> None:
    bad = tmp_path / "cert.pem"
    bad.write_text("this is not a certificate\n")
    line = one_error_line(run_serve(*base_args(tmp_path), "--sip-tls-cert-file", str(bad)))
    assert line.startswith(f"error: sip_tls_cert_file: cannot use the TLS certificate {str(bad)!r}")
    assert "give readable PEM files" in line


def test_http_addresses_that_cannot_be_listened_on() -> None:
    """The same check in this process: an address this machine does not have, a name that
    does not resolve (each says to check --host); localhost is IPv4 as the web server takes it."""
    for host in ("192.0.2.77", "no-such-host.invalid"):
        with pytest.raises(StartError) as caught:
            bind_http(host, 0)
        assert str(caught.value).startswith(f"cannot listen for HTTP on {host}:0 (")
        assert str(caught.value).endswith("no such address on this machine: check --host")
    sock = bind_http("localhost", 0)
    try:
        assert sock.getsockname()[0] == "127.0.0.1"
    finally:
        sock.close()
