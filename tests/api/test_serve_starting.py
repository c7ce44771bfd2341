"""``dtmfgraph serve`` answers while it starts: it listens before the API, the store and the
media stack have loaded; ``/health``, ``/ready`` and the OpenID metadata are answered at once,
every other request waits for the service and is then served as usual (nothing refused for
coming early). The real ``serve`` process, held in its start by the test holding its SQLite
database's write lock (the start's first write waits for it)."""

from __future__ import annotations

import signal
import socket
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx

from .harness import free_port
from .test_cli_serve import _env

CALL = {
    "callbackUri": "http://127.0.0.1:9/cb",
    "requestedModalities": ["audio"],
    "targets": [{"identity": {"phone": {"id": "+14255550100"}}}],
}


def _hold_write_lock(data: Path) -> sqlite3.Connection:
    """The data directory's database, made now (WAL, as the service keeps it), with a write
    transaction open: the service can read it but its first write waits."""
    data.mkdir()
    db = sqlite3.connect(data / "dtmfgraph.sqlite3", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("BEGIN IMMEDIATE")
    return db


def _until_listening(base: str, proc: subprocess.Popen[str], log: Path) -> httpx.Response:
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            return httpx.get(f"{base}/health", timeout=5)
        except httpx.TransportError:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)


def test_requests_during_the_start_wait_for_the_service(tmp_path: Path) -> None:
    data = tmp_path / "data"
    db = _hold_write_lock(data)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    argv = [sys.executable, "-m", "dtmfgraph", "serve", "--no-auth", "--media", "loopback"]
    with log.open("w") as err:
        proc = subprocess.Popen(
            [*argv, "--port", str(port), "--data-dir", str(data)],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=_env(),
            text=True,
        )
    try:
        health = _until_listening(base, proc, log)
        assert health.status_code == 200 and health.json() == {"status": "starting"}
        assert "request-id" in health.headers
        ready = httpx.get(f"{base}/ready", timeout=5)
        assert ready.status_code == 503, ready.text
        assert ready.headers["retry-after"] == "1"
        early = httpx.get(
            f"{base}/.well-known/openid-configuration",
            headers={"client-request-id": "early-1"},
            timeout=5,
        )
        assert early.status_code == 200, early.text
        assert early.headers["client-request-id"] == "early-1"
        assert early.json()["jwks_uri"] == f"{base}/v1/keys"
        with ThreadPoolExecutor(3) as pool:
            posted: Future[httpx.Response] = pool.submit(
                httpx.post, f"{base}/v1.0/communications/calls", json=CALL, timeout=60
            )
            missing = pool.submit(
                httpx.get, f"{base}/v1.0/communications/calls/no-such-call", timeout=60
            )
            keys = pool.submit(httpx.get, f"{base}/v1/keys", timeout=60)
            time.sleep(1.0)
            # the service cannot have started: its first write waits for our lock
            assert not (posted.done() or missing.done() or keys.done())
            assert httpx.get(f"{base}/health", timeout=5).json() == {"status": "starting"}
            db.execute("COMMIT")
            db.close()
            created = posted.result(timeout=60)
            assert created.status_code == 201, created.text
            assert created.headers["request-id"]
            assert missing.result(timeout=60).status_code == 404
            assert keys.result(timeout=60).status_code == 200
        call = httpx.get(f"{base}/v1.0/communications/calls/{created.json()['id']}", timeout=10)
        assert call.status_code == 200, call.text
        assert httpx.get(f"{base}/ready", timeout=5).json() == {"status": "ready"}
        assert httpx.get(f"{base}/health", timeout=5).json() == {"status": "ready"}
        later = httpx.get(f"{base}/.well-known/openid-configuration", timeout=5)
        assert later.content == early.content  # the API's own route: the same document
        assert later.headers["cache-control"] == early.headers["cache-control"]
        assert later.headers["content-type"] == early.headers["content-type"]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    text = log.read_text()
    assert code in (0, -signal.SIGTERM) and "Traceback" not in text, text  # (uvicorn re-raises it)


def test_a_start_that_fails_after_listening_answers_the_waiting_503(tmp_path: Path) -> None:
    """The database is checked behind the gate: here a "PostgreSQL server" (this test) takes the
    connection and says nothing until a request waits at the gate, then hangs up. The waiting
    request is answered 503 with Retry-After, and serve exits 2 with its one error line."""
    with socket.create_server(("127.0.0.1", 0)) as db_server:
        db_port = db_server.getsockname()[1]
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        url = f"postgresql+asyncpg://bot:pw@127.0.0.1:{db_port}/graph"
        argv = [sys.executable, "-m", "dtmfgraph", "serve", "--no-auth", "--media", "loopback"]
        log = tmp_path / "serve.log"
        with log.open("w") as err:
            proc = subprocess.Popen(
                [*argv, "--port", str(port), "--data-dir", str(tmp_path / "d")],
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=_env(DTMFGRAPH_DATABASE_URL=url),
                text=True,
            )
        try:
            assert _until_listening(base, proc, log).json() == {"status": "starting"}
            db_server.settimeout(60)
            connection, _ = db_server.accept()  # the start's database check, left waiting
            with ThreadPoolExecutor(1) as pool:
                waiting = pool.submit(httpx.get, f"{base}/v1.0/communications/calls/x", timeout=60)
                time.sleep(1.0)
                assert not waiting.done()
                connection.close()
                answer = waiting.result(timeout=60)
            assert answer.status_code == 503, answer.text
            assert answer.headers["retry-after"] == "1" and answer.headers["request-id"]
            assert answer.json()["error"]["code"] == "serviceNotAvailable"
            assert proc.wait(60) == 2
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    lines = log.read_text().strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: cannot reach the database at 'postgresql+asyncpg://bot:***@")


def test_a_fault_in_the_start_is_logged_and_exits_3(tmp_path: Path) -> None:
    """A start that fails for want of something no option gives (here: a database stamped by a
    migration this version does not have) logs why with its traceback, answers the waiting
    requests 503, and exits 3: the server does not stay up answering 503."""
    data = tmp_path / "data"
    data.mkdir()
    db = sqlite3.connect(data / "dtmfgraph.sqlite3")
    db.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
    db.execute("INSERT INTO alembic_version VALUES ('9999_from_the_future')")
    db.commit()
    db.close()
    args = ["--no-auth", "--media", "loopback", "--port", str(free_port()), "--data-dir", str(data)]
    done = subprocess.run(
        [sys.executable, "-m", "dtmfgraph", "serve", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
        check=False,
    )
    assert done.returncode == 3, done.stderr
    assert "the service could not start" in done.stderr and "Traceback" in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "error: the service could not start (see the log above)"
    )
