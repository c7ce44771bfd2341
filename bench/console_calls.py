"""The console's calls list with 10,000 calls in the store: server time per page.

A SQLite store (as ``serve`` makes it, migrations run) gets ``--calls`` calls of the console's
app (plus as many of another app, which the page must skip), each with an operation and three
outbox rows; then the app serves, in process (ASGI, no sockets), the first calls page (HTML),
its JSON, and an old page (keyset paging far back). The reference, measured in the same run, is
the Graph API's ``GET /communications/calls/{id}`` of one call. Times are medians of wall-clock
server time over ``--repeats`` requests. The target: a page under 300 ms.

    .venv/bin/python bench/console_calls.py [--calls 10000] [--repeats 30]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import machine, markdown_table, write_section
from dtmfgraph.api import create_app, mint_token
from dtmfgraph.service import ROLE_INITIATE, ROLE_MEDIA, LoopbackMedia, Principal
from dtmfgraph.settings import Settings
from dtmfgraph.store import SqlRepository, upgrade
from dtmfgraph.store.tables import calls, operations, outbox

TENANT = "11111111-1111-1111-1111-111111111111"
APP = "bench-app"


async def fill(url: str, n: int) -> str:
    repo = SqlRepository(url)
    await upgrade(repo.engine)
    t0 = time.time() - n
    one = ""
    async with repo.engine.begin() as conn:
        for app in (APP, "someone-else"):
            rows, ops, notes = [], [], []
            for i in range(n):
                cid = str(uuid.uuid4())
                one = one or cid
                at = t0 + i
                rows.append(
                    {
                        "id": cid, "tenant_id": TENANT, "app_id": app, "direction": "outgoing",
                        "state": "terminated", "callback_uri": "http://127.0.0.1:9/cb",
                        "target_uri": f"sip:user{i}@127.0.0.1", "properties": {},
                        "result_info": {"code": 200, "subcode": 7000, "message": "ended"},
                        "tone_subscribed": False, "tone_seq": 0, "last_tone": None,
                        "created_at": at, "last_keepalive_at": at, "media_record": None,
                        "node_id": "bench", "audio_held": False,
                    }
                )  # fmt: skip
                ops.append(
                    {
                        "id": str(uuid.uuid4()), "seq": i, "call_id": cid,
                        "kind": "sendDtmfTonesOperation", "status": "completed",
                        "client_context": None, "completion_reason": "completedSuccessfully",
                        "result_info": None, "tones": ["tone1"], "delay_ms": 100,
                        "tone_ms": 100, "method": "rfc4733", "repeat_key": None,
                        "created_at": at,
                    }
                )  # fmt: skip
                for k in range(3):
                    notes.append(
                        {
                            "call_id": cid, "app_id": app, "callback_uri": "http://127.0.0.1:9/cb",
                            "event": {"kind": "callUpdated"}, "state": "delivered",
                            "attempts": 1, "next_attempt_at": at, "created_at": at + k,
                            "delivered_at": at + k,
                        }
                    )  # fmt: skip
            await conn.execute(sa.insert(calls), rows)
            await conn.execute(sa.insert(operations), ops)
            await conn.execute(sa.insert(outbox), notes)
    await repo.close()
    return one


async def timed(
    client: httpx.AsyncClient, path: str, repeats: int, headers: dict[str, str] | None = None
) -> float:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        r = await client.get(path, headers=headers)
        times.append(time.perf_counter() - began)
        assert r.status_code == 200, (path, r.status_code, r.text[:200])
    return statistics.median(times)


async def main(n: int, repeats: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/bench.sqlite3"
        one = await fill(url, n)
        settings = Settings(
            data_dir=Path(tmp), database_url=url, jwt_hs256_secret="bench-" + "x" * 40,
            media="loopback", port=8000,
        )  # fmt: skip
        app = create_app(settings, LoopbackMedia())
        async with app.router.lifespan_context(app):
            who = Principal(TENANT, APP, frozenset({ROLE_INITIATE, ROLE_MEDIA}))
            session = app.state.console.auth.start(who)
            token = mint_token(settings, tenant_id=TENANT, app_id=APP)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://127.0.0.1:8000",
                cookies={"dtmfgraph_console": session.id},
            ) as client:  # fmt: skip
                auth = {"Authorization": f"Bearer {token}"}
                ref = await timed(client, f"/v1.0/communications/calls/{one}", repeats, auth)
                old = time.time() - n + 100  # a page far back: keyset paging, no offset
                rows = [
                    ("Graph `GET /communications/calls/{id}` (reference)", ref),
                    ("console calls page, HTML (`/console`)",
                     await timed(client, "/console", repeats)),
                    ("console calls page, JSON (`/console/api/calls`)",
                     await timed(client, "/console/api/calls", repeats)),
                    ("console calls page far back (`?before=`)",
                     await timed(client, f"/console/api/calls?before={old}", repeats)),
                ]  # fmt: skip
    table = markdown_table(
        ["request", "median server time", "vs reference"],
        [[name, f"{t * 1000:.1f} ms", f"{t / ref:.1f}x"] for name, t in rows],
    )
    body = (
        "## Console calls list (`bench/console_calls.py`)\n\n"
        f"{machine()}. SQLite, {n:,} calls of the app and {n:,} of another app in the store "
        "(each with an operation and three notifications); requests served in process (ASGI), "
        f"median of {repeats}. Target: a page under 300 ms.\n\n{table}\n"
    )
    print(body)
    write_section("console-calls", body)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.repeats))
