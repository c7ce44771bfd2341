"""The API path: dtmfgraph's Graph requests beside a FastAPI hello-world, same box, same client.

Both servers run as their own processes (uvicorn, the same event loop and HTTP parser), and
``wrk`` drives them in alternating rounds (ours, then hello, then the other way round) with the
same threads and connections; the table holds the medians of the rounds' request rates and
their ratio to hello-world's ``GET /``:

- ``GET /v1.0/communications/calls/{id}`` of a live call;
- ``POST .../sendDtmfTones`` (one tone) then ``GET`` of the operation its ``Location`` names,
  spread over ``--calls`` live calls; every request counts (POSTs and GETs alike). The loopback
  media plays at ``--speed`` (0.01: a tone takes 1 ms), so each operation also completes while
  the round runs: its completion is written and its notification delivered to a webhook sink
  answering 202, as a real deployment would pay for it.

dtmfgraph runs ``serve --media loopback --no-auth`` on SQLite (a fresh data directory), and, with
``--pg URL`` (a PostgreSQL server's database URL to create a scratch database from), on
PostgreSQL as well. Only 2xx/3xx responses count (any other is reported). The table goes into
docs/benchmarks.md with the machine.

    .venv/bin/python bench/api_path.py [--rounds 5] [--seconds 5] [--pg postgresql://...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import asyncpg

from _report import machine, markdown_table, stop, write_section
from dtmfgraph.cli.loops import installed

HELLO = """
import sys
import uvicorn
from fastapi import FastAPI

app = FastAPI()


@app.get("/")
def hello() -> dict[str, str]:
    return {"hello": "world"}


uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""

SEND_THEN_GET = """
local calls = {%(calls)s}
local body = '{"tones": ["tone1"], "clientContext": "bench"}'
local headers = {["Content-Type"] = "application/json"}
local pending = {}
local n = 0

request = function()
  local path = table.remove(pending)
  if path then
    return wrk.format("GET", path)
  end
  n = n + 1
  local call = calls[(n %% #calls) + 1]
  return wrk.format(
    "POST", "/v1.0/communications/calls/" .. call .. "/sendDtmfTones", headers, body
  )
end

response = function(status, headers, body)
  local location = headers["location"] or headers["Location"]
  if location then
    table.insert(pending, location:match("^https?://[^/]+(/.*)$") or location)
  end
end
"""


WHERE_THE_TIME_GOES = """\
Where the time goes (py-spy on `serve`, 200 samples/s, during the runs; shares of the event
loop's samples):

- Before the first pass (main as issue 18 began: reads of live calls already from memory;
  SQLite's rollback journal, a pool of 5 + 10 connections, sync FastAPI dependencies): the loop
  was mostly idle, waiting for SQLite's fsyncs and its busy handler. Measured then, 3 rounds of
  4 s: GET 516 vs 1,810 rps (0.285x); send then GET 48 vs 1,857 rps (0.026x).
- First pass (WAL with `synchronous=NORMAL`, one pooled SQLite connection, statements built
  once, one upsert per operation, async dependencies, reads without copying): GET 0.379x;
  send then GET 0.135x on SQLite, 0.084x on PostgreSQL (a quiet box). A GET is the framework
  floor plus ours: uvicorn/h11 and the socket write (about 30 %, as for hello-world), FastAPI's
  dependency solving (about 13 %), our four pure-ASGI middlewares (a few %), the read from
  memory and its JSON (under 10 %). What was left was per operation: a transaction per change,
  a signed webhook POST per notification, the outbox's own transactions.
- This pass: group commit (the changes of every call submitted while a transaction is written
  go in the next one, in order per call; on PostgreSQL up to 4 groups in flight, no call in two),
  one callback token per call and app for 5 min instead of an RS256 signature per notification,
  the "delivered" marks of POSTs that end together in one transaction, no next-due query after
  a claim that found work. Profile of send then GET on SQLite: the delivery went from 36 % of
  the loop (httpx 18 %, the signature 7 %, its mark transaction 10 %) to 13 % (httpx 11 %, the
  mark 1 %); the group writes are 14 % (statement execution, one hop to SQLite's thread per
  statement); the claim 5 %. On PostgreSQL httpx/httpcore is the largest part of our own code
  (about 25 % of the loop) beside uvicorn/h11 and FastAPI.
- Next: a lighter HTTP client for the webhook POSTs (httpx+httpcore cost about as much as the
  whole request handling of a GET), executemany for a group's statements of one kind, and the
  delivery off the API's event loop. The box was shared with other work during these runs
  (load average 9 to 16 on its 2 cores): hello-world's own rate swung from under 200 to over
  1,000 rps between rounds, so single rounds mean little. Three full runs of this pass, send
  then GET: SQLite 0.212x, 0.295x, 0.353x (the table: the last); PostgreSQL 0.092x (one
  writer, before groups in flight together), 0.176x, 0.143x. The failed requests on
  PostgreSQL are non-2xx or past wrk's 2 s timeout; main had them too under the same load (52
  in a 9 s profiling run beside this branch's 33).
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _request(port: int, method: str, path: str, body: object = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10.0)
    try:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _wait_ok(proc: subprocess.Popen[bytes], port: int, path: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        with contextlib.suppress(OSError):
            if _request(port, "GET", path)[0] == 200:
                return
        if proc.poll() is not None:
            raise RuntimeError(f"server on {port} exited {proc.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"server on {port}: no 200 in 60 s")
        time.sleep(0.05)


class WebhookSink:
    """A minimal HTTP server answering every POST with 202 (the calls' callbackUri), on its
    own thread."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.loop = asyncio.new_event_loop()
        self.received = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = threading.Event()
        self._thread.start()
        self._started.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", self.port)
        )
        self._started.set()
        self.loop.run_forever()
        server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                match = re.search(rb"(?i)content-length:\s*(\d+)", head)
                if match:
                    await reader.readexactly(int(match.group(1)))
                self.received += 1
                writer.write(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        writer.close()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


@dataclass(frozen=True, slots=True)
class Rate:
    ok_per_s: float
    failed: int


def _wrk(url: str, seconds: float, connections: int, threads: int, script: Path | None) -> Rate:
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s"]
    if script is not None:
        argv += ["-s", str(script)]
    out = subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout
    total = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    if total is None:
        raise RuntimeError(f"wrk said: {out}")
    took = float(total.group(2)) / (1000 if total.group(3) == "ms" else 1)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    failed = (int(bad.group(1)) if bad else 0) + (
        sum(int(g) for g in errors.groups()) if errors else 0
    )
    return Rate((int(total.group(1)) - failed) / took, failed)


@contextlib.contextmanager
def _process(argv: list[str], port: int, ready_path: str) -> Iterator[subprocess.Popen[bytes]]:
    # the server's log goes to a file: a pipe nobody reads would block a chatty server once full
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log)
        try:
            try:
                _wait_ok(proc, port, ready_path)
            except RuntimeError:
                log.seek(0)
                sys.stderr.write(log.read()[-4000:].decode(errors="replace"))
                raise
            yield proc
        finally:
            stop(proc)


def _new_call(port: int, hook: str) -> str:
    status, body = _request(
        port,
        "POST",
        "/v1.0/communications/calls",
        {
            "@odata.type": "#microsoft.graph.call",
            "callbackUri": hook,
            "targets": [
                {
                    "@odata.type": "#microsoft.graph.invitationParticipantInfo",
                    "identity": {"phone": {"id": "+14255550100"}},
                }
            ],
            "requestedModalities": ["audio"],
            "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
        },
    )
    if status != 201:
        raise RuntimeError(f"create call: {status} {body[:300]!r}")
    call_id = str(json.loads(body)["id"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        state = json.loads(_request(port, "GET", f"/v1.0/communications/calls/{call_id}")[1])
        if state.get("state") == "established":
            return call_id
        time.sleep(0.02)
    raise RuntimeError(f"call {call_id} not established in 10 s")


def _alternate(rounds: int, ours: Callable[[], Rate], hello: Callable[[], Rate]) -> list[str]:
    mine: list[Rate] = []
    refs: list[Rate] = []
    for i in range(rounds):
        pair = (ours, hello) if i % 2 == 0 else (hello, ours)
        for run in pair:
            (mine if run is ours else refs).append(run())
        print(f"  round {i + 1}/{rounds}: ours {mine[-1].ok_per_s:,.0f} rps, hello "
              f"{refs[-1].ok_per_s:,.0f} rps", flush=True)  # fmt: skip
    a = statistics.median(r.ok_per_s for r in mine)
    b = statistics.median(r.ok_per_s for r in refs)
    failed = sum(r.failed for r in mine)
    return [f"{a:,.0f}", f"{b:,.0f}", f"**{a / b:.3f}x**", str(failed)]


async def _scratch_pg(admin_url: str, create: bool, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        if create:
            await conn.execute(f'CREATE DATABASE "{name}"')
        else:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@contextlib.contextmanager
def _database(kind: str, tmp: Path, pg: str | None) -> Iterator[str]:
    if kind == "SQLite":
        yield f"sqlite+aiosqlite:///{tmp / 'graph.sqlite3'}"
        return
    assert pg is not None
    name = f"bench_{uuid.uuid4().hex[:12]}"
    asyncio.run(_scratch_pg(pg, True, name))
    try:
        base = pg.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
        yield f"{base}/{name}"
    finally:
        asyncio.run(_scratch_pg(pg, False, name))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--calls", type=int, default=32, help="live calls the sends go to")
    parser.add_argument("--speed", type=float, default=0.01, help="loopback time scale")
    parser.add_argument("--pg", help="a PostgreSQL database URL (postgresql://...) to run on too")
    parser.add_argument("--no-write", action="store_true", help="print, do not write the doc")
    args = parser.parse_args()
    python = sys.executable
    sink = WebhookSink()
    rows: list[list[str]] = []
    kinds = ["SQLite"] + (["PostgreSQL"] if args.pg else [])
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        hello_py = tmp / "hello.py"
        hello_py.write_text(HELLO)
        hello_port = _free_port()
        with _process([python, str(hello_py), str(hello_port)], hello_port, "/"):
            hello_url = f"http://127.0.0.1:{hello_port}/"

            def hello() -> Rate:
                return _wrk(hello_url, args.seconds, args.connections, args.threads, None)

            for kind in kinds:
                with _database(kind, tmp / kind, args.pg) as db_url:
                    port = _free_port()
                    serve = [
                        python, "-m", "dtmfgraph", "serve", "--no-auth", "--media", "loopback",
                        "--port", str(port), "--data-dir", str(tmp / kind), "--database-url",
                        db_url, "--loopback-speed", str(args.speed), "--log-level", "warning",
                    ]  # fmt: skip
                    with _process(serve, port, "/ready"):  # the service up
                        rows += _measure(args, kind, port, sink, hello, tmp)
    sink.close()
    table = markdown_table(
        ["figure", "store", "dtmfgraph rps", "hello-world rps", "ratio (median)", "non-2xx"],
        rows,
    )
    stack = (
        "uvloop and httptools installed (both servers use them)"
        if installed("uvloop") and installed("httptools")
        else "asyncio's loop and h11 (no uvloop/httptools installed; both servers alike)"
    )
    body = (
        "## The API path (`bench/api_path.py`)\n\n"
        f"Machine: {machine()}; {stack}.\n\n"
        f"wrk, {args.threads} threads, {args.connections} connections, {args.seconds:g} s per "
        f"run; medians of {args.rounds} alternating rounds (ours, then hello-world's `GET /`, "
        "then the other way round). dtmfgraph runs `serve --media loopback --no-auth` at "
        f"loopback speed {args.speed:g}; sends go to {args.calls} live calls, each operation "
        "completes during the run and its notification is delivered to a webhook sink "
        "(202). Every POST and every GET counts as one request. Goals (issue 18): GET "
        "at least 0.30x, send then GET at least 0.15x.\n\n"
        f"{table}\n\n{WHERE_THE_TIME_GOES}\n"
    )
    print(body)
    if not args.no_write:
        write_section("api-path", body)


def _measure(
    args: argparse.Namespace,
    kind: str,
    port: int,
    sink: WebhookSink,
    hello: Callable[[], Rate],
    tmp: Path,
) -> list[list[str]]:
    calls = [_new_call(port, sink.url) for _ in range(args.calls)]
    base = f"http://127.0.0.1:{port}"
    script = tmp / f"send_then_get_{kind}.lua"
    script.write_text(SEND_THEN_GET % {"calls": ", ".join(f'"{c}"' for c in calls)})

    def get_call() -> Rate:
        url = f"{base}/v1.0/communications/calls/{calls[0]}"
        return _wrk(url, args.seconds, args.connections, args.threads, None)

    def send_then_get() -> Rate:
        return _wrk(base, args.seconds, args.connections, args.threads, script)

    print(f"{kind}: GET a call", flush=True)
    first = _alternate(args.rounds, get_call, hello)
    print(f"{kind}: sendDtmfTones then GET its operation", flush=True)
    second = _alternate(args.rounds, send_then_get, hello)
    return [["GET a call", kind, *first], ["sendDtmfTones (1 tone) then GET", kind, *second]]


if __name__ == "__main__":
    main()
