"""`dtmfgraph serve --workers 2` on PostgreSQL: one supervisor, two node processes.

Each worker also serves its own /metrics on its private port (`--workers-private-port`).
The real command runs (loopback media): calls placed through the shared HTTP port land on both
workers (the kernel spreads connections, SO_REUSEPORT); sendDtmfTones sent on fresh connections,
whichever worker takes them, act on the call (forwarded to its worker); a worker killed with
SIGKILL is started again by the supervisor and its calls end 500 (restart or node lost) while the
other worker's go on; SIGTERM to the supervisor stops every worker, which end their calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from dtmfgraph.api import mint_token
from dtmfgraph.api.forward import asyncpg_dsn

from ..api.harness import APP, SECRET, TENANT, free_port, make_settings, pg_database
from .test_graph_restart import DTMFGRAPH, exited, ready

NODE_ENV = {"DTMFGRAPH_NODE_HEARTBEAT_S": "0.5", "DTMFGRAPH_NODE_DEAD_AFTER_S": "5"}
CALL = {
    "callbackUri": "http://127.0.0.1:9/cb",
    "requestedModalities": ["audio"],
    "targets": [{"identity": {"phone": {"id": "+14255550100"}}}],
}
CALLS = 16
"""Calls placed: all on one worker by chance once in 2**15."""


@pytest.fixture
async def pg() -> AsyncIterator[str]:
    async with pg_database() as url:
        yield url


def workers_of(supervisor: int) -> dict[int, int]:
    """The supervisor's worker processes: worker index -> pid (read from /proc)."""
    found: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == supervisor and b"dtmfgraph.cli.workers" in argv:
            found[int(argv[argv.index(b"--worker") + 1])] = int(entry.name)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def until(what: str, check: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check() if callable(check) else check
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


async def states(db: asyncpg.Connection) -> dict[str, tuple[str, str, int | None]]:
    """Every call: id -> (its node, its state, its resultInfo code)."""
    rows = await db.fetch("SELECT id, node_id, state, result_info FROM calls")
    out: dict[str, tuple[str, str, int | None]] = {}
    for r in rows:
        info = r["result_info"]
        if isinstance(info, str):
            info = json.loads(info)
        code = info.get("code") if info else None
        out[r["id"]] = (r["node_id"], r["state"], code)
    return out


async def fresh(base: str, token: str, method: str, path: str, body: object) -> httpx.Response:
    """One request on a new connection (so the kernel picks the worker anew)."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=f"{base}/v1.0", headers=headers, timeout=30) as http:
        return await http.request(method, path, json=body)


async def test_two_workers_share_the_port_forward_restart_and_stop(tmp_path: Path, pg: str) -> None:
    port, private = free_port(), free_port()
    log = tmp_path / "serve.log"
    env = dict(os.environ, DTMFGRAPH_JWT_HS256_SECRET=SECRET, **NODE_ENV)
    cmd = [
        DTMFGRAPH,
        "serve",
        "--workers",
        "2",
        "--media",
        "loopback",
        "--port",
        str(port),
        "--data-dir",
        str(tmp_path),
        "--database-url",
        pg,
        "--node-id",
        "box",
        "--workers-private-port",
        str(private),
    ]
    with log.open("ab") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
    base = f"http://127.0.0.1:{port}"
    token = mint_token(make_settings(tmp_path, pg, port), tenant_id=TENANT, app_id=APP)
    db = await asyncpg.connect(asyncpg_dsn(pg))
    seen: set[int] = set()
    try:
        await ready(base, proc, log)
        for i in (0, 1):  # each worker answers on its private port: both listen on the shared one
            await ready(f"http://127.0.0.1:{private + i}", proc, log)
        await until("both workers", lambda: len(workers_of(proc.pid)) == 2)
        seen.update(workers_of(proc.pid).values())
        # calls through the shared port land on both workers
        ids = []
        for _ in range(CALLS):
            r = await fresh(base, token, "POST", "/communications/calls", CALL)
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])

        async def established() -> bool:
            return all(s[1] == "established" for s in (await states(db)).values())

        await until("calls established", established)
        by_node = await states(db)
        async with httpx.AsyncClient() as http:  # each worker's own /metrics
            for i in (0, 1):
                own = await http.get(f"http://127.0.0.1:{private + i}/metrics")
                assert own.status_code == 200 and "dtmfgraph_" in own.text
        assert {by_node[i][0] for i in ids} == {"box/w0", "box/w1"}
        # an action on a call reaches its worker whatever connection it arrives on
        for call_id in ids:
            for _ in range(3):
                r = await fresh(
                    base,
                    token,
                    "POST",
                    f"/communications/calls/{call_id}/sendDtmfTones",
                    {"tones": ["tone1"], "delayBetweenTonesMs": 50},
                )
                assert r.status_code == 200, r.text
                assert r.json()["status"] != "failed", r.text

        async def sent() -> bool:  # every send ran on the call's worker
            rows = await db.fetch(
                "SELECT status FROM operations WHERE kind = 'sendDtmfTonesOperation'"
            )
            return len(rows) == 3 * CALLS and all(r["status"] == "completed" for r in rows)

        await until("every sendDtmfTones completed", sent)
        # a killed worker is started again; its calls end as after any node death
        old = workers_of(proc.pid)
        os.kill(old[1], signal.SIGKILL)
        await until(
            "worker 1 started again",
            lambda: workers_of(proc.pid).get(1, old[1]) != old[1],
        )
        seen.update(workers_of(proc.pid).values())
        lost = [i for i in ids if by_node[i][0] == "box/w1"]
        kept = [i for i in ids if by_node[i][0] == "box/w0"]

        async def w1_calls_ended() -> bool:
            now = await states(db)
            return all(now[i][1] == "terminated" for i in lost)

        await until("worker 1's calls ended", w1_calls_ended)
        now = await states(db)
        assert all(now[i][2] == 500 for i in lost), now
        assert all(now[i][1] == "established" for i in kept), now
        assert workers_of(proc.pid)[0] == old[0]  # the other worker went on
        r = await fresh(
            base,
            token,
            "POST",
            f"/communications/calls/{kept[0]}/sendDtmfTones",
            {"tones": ["tone2"]},
        )
        assert r.status_code == 200, r.text
        # SIGTERM to the supervisor stops every worker (each ends its calls)
        pids = list(workers_of(proc.pid).values())
        proc.send_signal(signal.SIGTERM)
        assert await exited(proc, 90) == 0, log.read_text()
        assert not any(alive(pid) for pid in pids)
        assert all(s[1] == "terminated" for s in (await states(db)).values())
        text = log.read_text()
        assert "worker 1 (box/w1) exited (killed by SIGKILL)" in text
        assert text.count("Graph API on") == 1  # one banner
    finally:
        await db.close()
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(10)
        for pid in seen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


async def test_a_worker_that_refuses_to_start_stops_them_all(tmp_path: Path, pg: str) -> None:
    """Worker 1's SIP port (--sip-port + 1) is taken: it exits 2 on its first start, and the
    supervisor stops worker 0 and exits 2 too, the worker's error line in its output."""
    port = free_port()
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    sip_port = taken.getsockname()[1] - 1
    env = dict(os.environ, DTMFGRAPH_JWT_HS256_SECRET=SECRET)
    cmd = [
        DTMFGRAPH, "serve", "--workers", "2", "--media", "sip", "--sip-host", "127.0.0.1",
        "--sip-port", str(sip_port), "--port", str(port), "--data-dir", str(tmp_path),
        "--database-url", pg,
    ]  # fmt: skip
    try:
        done = await asyncio.to_thread(
            subprocess.run, cmd, env=env, capture_output=True, text=True, timeout=120
        )
    finally:
        taken.close()
    assert done.returncode == 2, done.stderr
    assert f"error: cannot start SIP on 127.0.0.1:{sip_port + 1}" in done.stderr
    assert "worker 1 refused to start (exit code 2); stopping" in done.stderr
