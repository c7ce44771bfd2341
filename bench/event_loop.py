"""uvloop (+ httptools) against asyncio's own loop (+ h11), on the two paths of a node.

- API: ``dtmfgraph serve --media loopback --no-auth --loop L``, one call created, then
  ``wrk -t1 -c32`` on ``GET /v1.0/communications/calls/{id}`` for a few seconds: requests per
  second and the server's CPU per request (from /proc).
- Media: N outbound RTP streams on one pacer in a fresh process per run, each sending a
  10-key RFC 4733 sequence (bench/pacing.py's sender) to a socket that is not read: process CPU
  for the run, and the pacer's late wake-ups.

Rounds alternate between the loops; medians. The table goes into docs/benchmarks.md. Needs
``pip install 'dtmfgraph[fast]'`` (uvloop, httptools) and ``wrk`` (Debian package).

    .venv/bin/python bench/event_loop.py [--rounds 3] [--streams 1000] [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from _report import machine, markdown_table, stop, write_section
from dtmfgraph.cli.progress import progress

NOTES = """
Notes:
- The API path gains with uvloop and httptools (requests per second above; the server's CPU
  per request lower). The media send path costs the same per packet on both loops within this
  machine's noise (the issue's earlier profile saw 17 % less CPU on uvloop while carrying 200
  calls, receive side included). So `--loop auto` takes uvloop where it is installed; the
  extra is opt-in, and asyncio stays the default of a plain install and the loop of the tests.
- The media column's CPU share is CPU over wall time of a run whose length grows with the
  machine's load (silence is sent until every stream's keys are out): read the CPU per packet.
"""

LOOPS = ("asyncio", "uvloop")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def api_round(loop: str, seconds: float, data: Path) -> tuple[float, float]:
    """(requests/s, server CPU ms per request) of GET a call, on ``loop``."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DTMFGRAPH_")}
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "dtmfgraph", "serve", "--no-auth", "--media", "loopback",
            "--port", str(port), "--data-dir", str(data), "--loop", loop, "--no-console",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}/v1.0/communications/calls"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:  # the service up (not only listening: the start gate answers meanwhile)
                if httpx.get(f"http://127.0.0.1:{port}/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("serve did not start") from None
            time.sleep(0.05)
        body = {
            "callbackUri": "http://127.0.0.1:9/cb",
            "requestedModalities": ["audio"],
            "targets": [{"identity": {"phone": {"id": "+14255550100"}}}],
        }
        call_id = httpx.post(base, json=body).json()["id"]
        url = f"{base}/{call_id}"
        subprocess.run(["wrk", "-t1", "-c32", "-d1s", url], capture_output=True, check=True)
        cpu0 = _cpu_of(proc.pid)
        out = subprocess.run(
            ["wrk", "-t1", "-c32", f"-d{seconds:g}s", url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        cpu = _cpu_of(proc.pid) - cpu0
        rps = float(re.search(r"Requests/sec:\s*([\d.]+)", out).group(1))  # type: ignore[union-attr]
        total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        if non2xx:
            raise RuntimeError(f"{non2xx.group(1)} failed requests")
        return rps, 1000 * cpu / total
    finally:
        stop(proc)


def media_child(loop: str, streams: int) -> None:
    """Child mode: run the senders on ``loop``, print JSON (cpu s, wall s, late wake-ups)."""
    from dtmfgraph.cli import loops
    from pacing import raise_fd_limit, run_senders

    raise_fd_limit()
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    remote = ("127.0.0.1", int(sink.getsockname()[1]))
    _, cpu, wall, total, late, _ = loops.run(run_senders(streams, [remote], "rfc4733"), loop)
    print(json.dumps({"cpu": cpu, "wall": wall, "packets": total, "late": late}))


def media_round(loop: str, streams: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--_media", loop, "--streams", str(streams)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--_media", choices=LOOPS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._media:
        media_child(args._media, args.streams)
        return
    import tempfile

    import httptools
    import uvloop

    api: dict[str, list[tuple[float, float]]] = {loop: [] for loop in LOOPS}
    media: dict[str, list[dict[str, float]]] = {loop: [] for loop in LOOPS}
    with (
        tempfile.TemporaryDirectory() as tmp,
        progress("rounds (API and media, both loops)", args.rounds * 2) as advance,
    ):
        for i in range(args.rounds):
            for loop in LOOPS if i % 2 == 0 else LOOPS[::-1]:
                api[loop].append(api_round(loop, args.seconds, Path(tmp) / loop))
                media[loop].append(media_round(loop, args.streams))
                print(loop, api[loop][-1], media[loop][-1], flush=True)
                advance(description=f"round {i + 1}: {loop} done")

    def med(values: list[float]) -> float:
        return statistics.median(values)

    rows = []
    for loop in LOOPS:
        rps = med([r for r, _ in api[loop]])
        cpu_req = med([c for _, c in api[loop]])
        cpu_share = med([m["cpu"] / m["wall"] for m in media[loop]])
        us_packet = med([1e6 * m["cpu"] / m["packets"] for m in media[loop]])
        late = med([m["late"] for m in media[loop]])
        rows.append(
            [
                f"{loop} + {'httptools' if loop == 'uvloop' else 'h11'}",
                f"{rps:,.0f}",
                f"{cpu_req:.2f} ms",
                f"{cpu_share:.0%}",
                f"{us_packet:.1f} µs",
                f"{late:g}",
            ]
        )
    a_rps, u_rps = (med([r for r, _ in api[loop]]) for loop in LOOPS)
    a_pkt, u_pkt = (med([m["cpu"] / m["packets"] for m in media[loop]]) for loop in LOOPS)
    table = markdown_table(
        [
            "loop",
            "GET a call: requests/s",
            "server CPU per request",
            f"media: CPU ({args.streams:,} streams)",
            "CPU per packet",
            "late wake-ups",
        ],
        rows,
    )
    body = (
        "## Event loop: uvloop against asyncio (`bench/event_loop.py`)\n\n"
        f"Machine: {machine()}; uvloop {uvloop.__version__}, httptools "
        f"{httptools.__version__}; load average {os.getloadavg()[0]:.1f} at the end (a "
        "machine shared with other work: read the ratios and the CPU per unit of work).\n\n"
        f"Medians of {args.rounds} alternating rounds. API: `serve --media loopback --no-auth "
        f"--no-console --loop L` on SQLite, `wrk -t1 -c32 -d{args.seconds:g}s` on GET a call "
        "(wrk on the same 2 cores). Media: one process per run, "
        f"{args.streams:,} RFC 4733 streams on one pacer (bench/pacing.py's sender).\n\n"
        f"{table}\n\n"
        f"uvloop/asyncio: API requests/s {u_rps / a_rps:.2f}x, media CPU per packet "
        f"{u_pkt / a_pkt:.2f}x. `serve --loop auto` (the default) takes uvloop where it is "
        "installed (`pip install 'dtmfgraph[fast]'`); asyncio stays the fallback and the "
        "tests' loop.\n"
        f"{NOTES}"
    )
    print(body)
    if not args.no_write:
        write_section("event-loop", body)


if __name__ == "__main__":
    main()
