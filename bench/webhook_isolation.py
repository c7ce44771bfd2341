"""Webhook isolation: a healthy receiver's notification latency beside calls whose receiver
hangs (issue 13 item 3: 150 calls pointing at a receiver that accepts and never answers).

The outbox (SQLite in a temporary directory) gets one notification for each of ``--hung``
calls to a receiver that holds every POST, then, every 20 ms, one for each of ``--healthy``
calls to a receiver that answers 202 at once, ``--rounds`` times. Latency: from the row's
commit to the healthy receiver's answer; measured without hung calls too, for comparison.
The table goes into docs/benchmarks.md.

    .venv/bin/python bench/webhook_isolation.py [--hung 150 --healthy 2 --rounds 50]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dtmfgraph.notify import CallbackSigner, Dispatcher
from dtmfgraph.service.model import Call, CallState, Direction, Event, EventKind, snapshot_call
from dtmfgraph.store import SqlRepository, upgrade

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import machine, markdown_table, write_section


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _serve(app: Starlette, port: int) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    return server, task


def _event(call_id: str, uri: str) -> Event:
    call = Call(call_id, "t", "a", Direction.OUTGOING, CallState.ESTABLISHING, uri, None)
    return Event(EventKind.CALL_UPDATED, call_id, snapshot_call(call))


async def run(hung: int, healthy: int, rounds: int) -> list[float]:
    released = asyncio.Event()
    got: dict[str, float] = {}

    async def hang(request: Request) -> Response:
        await released.wait()
        return Response(status_code=503)

    async def take(request: Request) -> Response:
        body = await request.json()
        for note in body["value"]:  # a call's queued notifications come in one POST
            got[note["resourceData"]["id"]] = time.time()
        return Response(status_code=202)

    ports = _free_port(), _free_port()
    servers = [
        await _serve(Starlette(routes=[Route("/cb", hang, methods=["POST"])]), ports[0]),
        await _serve(Starlette(routes=[Route("/cb", take, methods=["POST"])]), ports[1]),
    ]
    slow, fast = (f"http://127.0.0.1:{p}/cb" for p in ports)
    with tempfile.TemporaryDirectory() as tmp:
        repo = SqlRepository(f"sqlite+aiosqlite:///{tmp}/bench.sqlite3")
        await upgrade(repo.engine)
        signer = CallbackSigner(issuer="https://bench.invalid", hs256_secret="x" * 40)
        dispatcher = Dispatcher(repo, signer, timeout_s=60.0)
        task = asyncio.create_task(dispatcher.run())
        sent: dict[str, float] = {}
        try:
            async with repo.unit() as uow:
                for i in range(hung):
                    await uow.add_event(_event(f"hung-{i}", slow), callback_uri=slow, app_id="a")
            dispatcher.wake()
            await asyncio.sleep(0.5)  # the hung POSTs are open
            for r in range(rounds):
                async with repo.unit() as uow:
                    for i in range(healthy):
                        cid = f"ok-{r}-{i}"
                        await uow.add_event(_event(cid, fast), callback_uri=fast, app_id="a")
                sent.update({f"ok-{r}-{i}": time.time() for i in range(healthy)})
                dispatcher.wake()
                await asyncio.sleep(0.02)
            deadline = time.monotonic() + 60
            while len(got) < len(sent) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        finally:
            released.set()
            await dispatcher.stop(task, 0)
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await dispatcher.close()
            await repo.close()
            for server, serving in servers:
                server.should_exit = True
                await serving
    if len(got) < len(sent):
        raise SystemExit(f"only {len(got)} of {len(sent)} healthy notifications arrived")
    return sorted(got[cid] - sent[cid] for cid in sent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hung", type=int, default=150)
    parser.add_argument("--healthy", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    rows = []
    for hung in (0, args.hung):
        lat = asyncio.run(run(hung, args.healthy, args.rounds))
        p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))]
        rows.append(
            [
                str(hung),
                str(len(lat)),
                f"{statistics.median(lat) * 1000:.1f}",
                f"{p99 * 1000:.1f}",
                f"{lat[-1] * 1000:.1f}",
            ]
        )
    header = ["hung calls", "healthy notifications", "median ms", "p99 ms", "max ms"]
    body = (
        "## Webhook isolation (`bench/webhook_isolation.py`)\n\n"
        "A healthy receiver's notification latency (commit to its 202) while calls whose "
        "receiver holds every POST are in the outbox (SQLite).\n\n"
        f"{markdown_table(header, rows)}\n\n{machine()}\n"
    )
    write_section("webhook_isolation", body)
    print(body)


if __name__ == "__main__":
    main()
