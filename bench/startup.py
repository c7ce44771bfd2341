"""Start-up: ``dtmfgraph --help`` and ``dtmfgraph serve`` beside FastAPI's own floor.

Two pairs, each measured in alternating rounds on the same box (medians; the ratio is ours over
the reference's):

- ``dtmfgraph --help`` against ``python -c "import fastapi, uvicorn"`` (exec to exit);
- ``dtmfgraph serve`` (SIP media on a free port, a data directory whose schema is current, as
  at every restart) against a hello-world FastAPI app on uvicorn: exec to the first 200 on
  ``GET /.well-known/openid-configuration`` (ours) and ``GET /`` (hello), polled every 5 ms;
- and, beside it, exec to ``serve``'s ``GET /ready`` 200 (the service up: store, media, every
  route; the first 200 above comes from the start gate before that) against the same
  hello-world's first 200.

The table goes into docs/benchmarks.md with the machine.

    .venv/bin/python bench/startup.py [--rounds 9]
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import machine, markdown_table, stop, write_section
from dtmfgraph.cli.loops import installed
from dtmfgraph.cli.progress import progress

NOTES = """
Notes:
- `--help` meets its goal: it lists the commands from a table and imports none of them
  (typer, rich and pydantic, which typer loads, are its whole cost).
- `serve`'s first 200 meets 2x: `serve` listens as soon as its settings are read and checked
  (typer, pydantic-settings' model of ~100 settings, uvicorn: about the CPU of `import fastapi,
  uvicorn`; no WebSocket protocol is loaded, nothing uses one). A start gate answers `/health`,
  `/ready` (503 + Retry-After until the service is up) and the OpenID metadata (from the
  settings alone) at once, while FastAPI, the store, the service and the media stack (numpy,
  SIP, dnspython, cryptography) are imported in a thread behind it; then the database is
  checked, SIP opened, migrations and recovery run as before. Every other request that comes
  early waits for the service and is served by it (docs/api.md, Start-up;
  tests/api/test_serve_starting.py holds a real `serve` in its start). Preflight errors found
  behind the gate (database, SIP port, certificates) are still one `error:` line and exit 2.
- The service being up (the `/ready` row) is not 2x, and the gate does not change it: measured
  against the code before in alternating rounds (7 each, load average 7-11): 0.96x the wall
  time, 0.91x the CPU (2.55 s against 2.81 s to the first 200 it had, which was its ready).
  A trace of one start (CPU): the imports 1.5-1.7 s; building the app 0.08 s; the database
  check 0.01 s; opening SIP 0.015 s; the app's lifespan (schema check, recovery, outbox)
  0.05-0.07 s. So what is left is imports; single-threaded `python -X importtime` of that stack
  (min of 3, self times, 3.7 s in all on this loaded box): SQLAlchemy 0.78 s (Core and the ORM
  that `sqlalchemy.ext.asyncio`'s package imports: the async engine cannot be had without it),
  dtmfgraph's own modules 1.0 s (the Settings model 0.1 s; FastAPI building route models at
  import: routes 0.09 s, the 501 stubs 0.07 s, control routes 0.04 s, the console's API 0.05
  s; service.calls 0.08 s; the SIP agent 0.05 s), FastAPI with Starlette and pydantic 0.7 s,
  numpy 0.13 s, trio through httpcore 0.13 s (this test environment only: selenium installs
  it), cryptography 0.10 s, dnspython 0.08 s, rich through httpx 0.08 s. Next steps for it:
  the route modules and the console registered at their first request, httpx/httpcore
  imported at the first delivery or prompt fetch.
"""

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    """This environment without DTMFGRAPH_ settings, and with bytecode caching on (as an
    installed package has it: the warm-up runs write the .pyc files)."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("DTMFGRAPH_") and k != "PYTHONDONTWRITEBYTECODE"
    }


def _exec_to_exit(argv: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(), check=True
    )
    return time.perf_counter() - began


def _ok(port: int, path: str) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1.0)
    try:
        connection.request("GET", path)
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def _exec_to_first_200(argv: Callable[[int], list[str]], path: str) -> float:
    port = _free_port()
    began = time.perf_counter()
    proc = subprocess.Popen(
        argv(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env()
    )
    try:
        while not _ok(port, path):
            if proc.poll() is not None:
                raise RuntimeError(f"{argv(port)} exited {proc.returncode}")
            if time.perf_counter() - began > 60:
                raise RuntimeError(f"{argv(port)}: no 200 in 60 s")
            time.sleep(0.005)
        return time.perf_counter() - began
    finally:
        stop(proc)


def _alternate(
    label: str, rounds: int, ours: Callable[[], float], theirs: Callable[[], float]
) -> list[str]:
    """A table row: ``label``, then medians of ``rounds`` alternating runs: ours, theirs, ratio."""
    mine: list[float] = []
    refs: list[float] = []
    with progress(label.split(" / ", maxsplit=1)[0].strip("`"), rounds) as advance:
        for i in range(rounds):
            pair = (ours, theirs) if i % 2 == 0 else (theirs, ours)
            for run in pair:
                (mine if run is ours else refs).append(run())
            advance()
    a, b = statistics.median(mine), statistics.median(refs)
    return [label, f"{a:.3f} s", f"{b:.3f} s", f"**{a / b:.2f}x**"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--no-write", action="store_true", help="print, do not write the doc")
    args = parser.parse_args()
    python = sys.executable
    dtmfgraph = [python, "-m", "dtmfgraph"]
    with tempfile.TemporaryDirectory() as tmp:
        hello = Path(tmp) / "hello.py"
        hello.write_text(HELLO)
        data = Path(tmp) / "data"

        def serve(port: int) -> list[str]:
            return [
                *dtmfgraph, "serve", "--no-auth", "--port", str(port), "--sip-port", "0",
                "--data-dir", str(data),
            ]  # fmt: skip

        # warm-up: the schema made, the bytecode cached
        _exec_to_first_200(serve, "/.well-known/openid-configuration")
        _exec_to_first_200(lambda p: [python, str(hello), str(p)], "/")
        _exec_to_exit([*dtmfgraph, "--help"])
        rows = [
            _alternate(
                '`dtmfgraph --help` / `python -c "import fastapi, uvicorn"` (exec to exit)',
                args.rounds,
                lambda: _exec_to_exit([*dtmfgraph, "--help"]),
                lambda: _exec_to_exit([python, "-c", "import fastapi, uvicorn"]),
            ),
            _alternate(
                "`dtmfgraph serve` / hello-world FastAPI on uvicorn (exec to first 200)",
                args.rounds,
                lambda: _exec_to_first_200(serve, "/.well-known/openid-configuration"),
                lambda: _exec_to_first_200(lambda p: [python, str(hello), str(p)], "/"),
            ),
            _alternate(
                "`dtmfgraph serve` ready (`GET /ready` 200) / hello-world's first 200",
                args.rounds,
                lambda: _exec_to_first_200(serve, "/ready"),
                lambda: _exec_to_first_200(lambda p: [python, str(hello), str(p)], "/"),
            ),
        ]
    table = markdown_table(["figure", "dtmfgraph", "reference", "ratio (median)"], rows)
    stack = (
        "uvloop and httptools installed (both servers use them)"
        if installed("uvloop") and installed("httptools")
        else "asyncio's loop and h11 (no uvloop/httptools installed)"
    )
    body = (
        "## Start-up (`bench/startup.py`)\n\n"
        f"Machine: {machine()}; {stack}; load average {os.getloadavg()[0]:.1f} at the end "
        "(a machine shared with other work: the ratios, measured in alternating rounds, are "
        "what to read).\n\n"
        f"Medians of {args.rounds} alternating rounds (ours, then the reference, then the other "
        "way round). `serve` runs with SIP media on a free port and a data directory whose "
        "schema is current (a restart); its first 200 is `GET "
        "/.well-known/openid-configuration`, answered by the start gate while the API, the store "
        "and the media load behind it (docs/api.md, Start-up); the service is up when `GET "
        "/ready` says 200. Goals (issue 18): `--help` at most 0.75x, serve's first 200 at most "
        "2x.\n\n"
        f"{table}\n{NOTES}"
    )
    print(body)
    if not args.no_write:
        write_section("startup", body)


if __name__ == "__main__":
    main()
