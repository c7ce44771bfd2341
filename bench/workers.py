"""``serve --workers``: one node process against two on the same load, same box, same client.

Both run at once on their own scratch PostgreSQL databases (``serve --workers N --media
loopback --no-auth``), and ``wrk`` drives them in alternating rounds (one worker then two, then
the other way round) with the same threads and connections; the table holds the medians of the
rounds' request rates and the CPU all of the server's processes (supervisor and workers) used
per run, per 1,000 requests and in cores busy:

- ``GET /v1.0/communications/calls/{id}`` of live calls (each worker answers from memory for
  its own calls, from the database for the other's);
- ``POST .../sendDtmfTones`` (one tone) then ``GET`` of its operation, spread over ``--calls``
  live calls placed through the shared port (so on both workers): a send that reaches the
  worker not carrying the call is forwarded to it over PostgreSQL ``LISTEN``/``NOTIFY``.

``wrk`` runs on the same two cores (its CPU is not counted): the ratio shows what the second
core gives on this box, not what a machine with a separate load generator would see.

    .venv/bin/python bench/workers.py --pg postgresql://postgres@127.0.0.1/postgres \\
        [--rounds 5] [--seconds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _proc import cpu_between, tree_cpu
from _report import machine, markdown_table, stop, write_section
from api_path import SEND_THEN_GET, WebhookSink, _database, _free_port, _new_call, _wait_ok, _wrk

NOTES = """\
What the table says, and what else was measured (22:45-23:00 UTC, load average 7-10: the box's
two cores were shared with other benchmarks, so each server got about a third of a core
whatever its number of workers, see "cores busy"):

- The API path does not get faster with a second worker here; it costs more per request. A GET
  of a call the other worker carries is read from PostgreSQL instead of memory (half of them
  with 2 workers: about 1.8-1.9x the CPU per request), and a send that reaches the other worker is
  forwarded over `NOTIFY` and back (an owner look-up, two notifications, the owner's run of the
  request: 2-3x the CPU per request). With the cores already taken by other work, twice
  the cost per request is half the rate.
- Calls' media, `bench/capacity.py` (its branch; `--database` PostgreSQL `--quick`,
  `--serve-arg=--workers --serve-arg=N`; far end sipp, dumpcap and the script on the same two
  cores; 23:00-23:21 UTC; "up": calls established; "right": calls with every key right; CPU:
  the service's, carrying the calls idle, then sending; "sends s": sendDtmfTones p50 / p99;
  "drops": UDP datagrams dropped by the service's sockets / the far end's):

  | calls | workers | load | up | right | CPU idle / sending | pacing p99 ms | sends s | drops |
  |---|---|---|---|---|---|---|---|---|
  | 128 | 1 | 8.5 | 128 | 128 | 52 % / 80 % | 84 | 0.8 / 2.6 | 0 / 71 |
  | 128 | 2 | 9 | 128 | 120 | 44 % / 60 % | 558 | 2.7 / 5.3 | 0 / 22,925 |
  | 128 | 2 | 7 | 128 | 126 | 50 % / 73 % | 273 | 1.1 / 5.0 (2 sends 503) | 0 / 165 |
  | 128 | 1 | 5 | 128 | 128 | 40 % / 62 % | 92 | 0.8 / 3.1 | 0 / 71 |
  | 200 | 1 | 1.6 | 200 | 200 | 63 % / 88 % | 41 | 0.4 / 4.7 | 0 / 0 |
  | 200 | 2 | 3.3 | 200 | 198 | 56 % / 92 % | 129 | 0.5 / 5.3 | 34 / 1,952 |
  | 500 | 1 | 5-8 | 35 | 0 | 92 % / 65 % | 2,335 | 2.4 / 27 | 0 / 216,818 |
  | 500 | 2 | 8-16 | 500 | 3 | 133 % / 108 % | 419 | 2.4 / 10 | 4 / 120,791 |

  Up to 200 calls one worker does better here: it is not yet at a full core (88 % while
  sending), and a second worker's pacer then competes for the core the far end, the capture
  and PostgreSQL were using, so its packets go out later. At 500 calls one worker is saturated
  (92 % of a core while only carrying) and establishes 35 of the 500 calls; two workers carry
  all 500 on both cores (133 %), though the keys are then lost (the far end's socket dropped
  120,791 datagrams, its notifications lagged, 119 sends answered 400 and 50 answered 503):
  past the knee the second core moves the limit, it does not remove it.
- Under a burst (200 sends at once, half of them forwarded), a worker whose heartbeat waited
  past the lease (5 s) for a pooled connection was taken for dead by the other for a moment:
  29 of 200 forwarded sends answered 503 `serviceNotAvailable` with `Retry-After` (no call was
  ended). The heartbeat shares the request pool; the overload work (admission before the pool
  runs dry) is what keeps it on time.
- Where a second worker pays: a node whose one core is saturated by its calls' media while
  another core idles (issue 18's 200 calls at 100 % of one core of two). Then the calls, their
  pacers and their key detection split over two processes, each with its own event loop; the
  API requests pay the forwarding above. Measure on the target machine with the load generator
  and far ends elsewhere: `bench/capacity.py --serve-arg=--workers --serve-arg=2`.
"""


@dataclass(frozen=True, slots=True)
class Run:
    rps: float
    failed: int
    cpu_s: float
    seconds: float


@dataclass
class Server:
    workers: int
    port: int
    proc: subprocess.Popen[bytes]
    calls: list[str]

    def measure(self, load: Callable[[str], tuple[float, int]]) -> Run:
        before, started = tree_cpu(self.proc.pid), time.monotonic()
        rps, failed = load(f"http://127.0.0.1:{self.port}")
        took = time.monotonic() - started
        return Run(rps, failed, cpu_between(before, tree_cpu(self.proc.pid)), took)


@contextmanager
def _server(workers: int, tmp: Path, pg: str, speed: float) -> Iterator[Server]:
    with _database("PostgreSQL", tmp, pg) as db_url:
        port, private = _free_port(), _free_port()
        argv = [
            sys.executable, "-m", "dtmfgraph", "serve", "--workers", str(workers), "--no-auth",
            "--media", "loopback", "--port", str(port), "--data-dir", str(tmp), "--database-url",
            db_url, "--loopback-speed", str(speed), "--log-level", "warning",
            "--workers-private-port", str(private),
        ]  # fmt: skip
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_ok(proc, port, "/.well-known/openid-configuration")
            for i in range(workers if workers > 1 else 0):  # every worker listens
                _wait_ok(proc, private + i, "/.well-known/openid-configuration")
            yield Server(workers, port, proc, [])
        finally:
            stop(proc, 60)


def _row(figure: str, runs: dict[int, list[Run]]) -> list[list[str]]:
    rows = []
    base = statistics.median(r.rps for r in runs[1])
    for n, mine in runs.items():
        rps = statistics.median(r.rps for r in mine)
        cores = statistics.median(r.cpu_s / r.seconds for r in mine)
        per_k = statistics.median(r.cpu_s / max(1.0, r.rps * r.seconds) * 1000 for r in mine)
        rows.append(
            [
                figure,
                str(n),
                f"{rps:,.0f}",
                f"**{rps / base:.2f}x**",
                f"{cores:.2f}",
                f"{per_k:.2f}",
                str(sum(r.failed for r in mine)),
            ]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--pg", required=True, help="a PostgreSQL URL (postgresql://...)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--calls", type=int, default=32, help="live calls")
    parser.add_argument("--speed", type=float, default=0.01, help="loopback time scale")
    parser.add_argument("--no-write", action="store_true", help="print, do not write the doc")
    args = parser.parse_args()
    sink = WebhookSink()
    rows: list[list[str]] = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmpdir, ExitStack() as stack:
        tmp = Path(tmpdir)
        servers = {
            n: stack.enter_context(_server(n, tmp / f"w{n}", args.pg, args.speed)) for n in (1, 2)
        }
        for server in servers.values():
            server.calls = [_new_call(server.port, sink.url) for _ in range(args.calls)]

        def get_call(server: Server) -> Callable[[str], tuple[float, int]]:
            def load(base: str) -> tuple[float, int]:
                url = f"{base}/v1.0/communications/calls/{server.calls[0]}"
                rate = _wrk(url, args.seconds, args.connections, args.threads, None)
                return rate.ok_per_s, rate.failed

            return load

        def send_then_get(server: Server) -> Callable[[str], tuple[float, int]]:
            script = tmp / f"send_{server.workers}.lua"
            script.write_text(SEND_THEN_GET % {"calls": ", ".join(f'"{c}"' for c in server.calls)})

            def load(base: str) -> tuple[float, int]:
                rate = _wrk(base, args.seconds, args.connections, args.threads, script)
                return rate.ok_per_s, rate.failed

            return load

        for figure, make in (
            ("GET a call", get_call),
            ("sendDtmfTones (1 tone) then GET", send_then_get),
        ):
            runs: dict[int, list[Run]] = {1: [], 2: []}
            loads = {n: make(s) for n, s in servers.items()}
            for i in range(args.rounds):
                for n in (1, 2) if i % 2 == 0 else (2, 1):
                    runs[n].append(servers[n].measure(loads[n]))
                print(f"  {figure} round {i + 1}/{args.rounds}: 1 worker "
                      f"{runs[1][-1].rps:,.0f} rps, 2 workers {runs[2][-1].rps:,.0f} rps",
                      flush=True)  # fmt: skip
            rows += _row(figure, runs)
    sink.close()
    load_after = os.getloadavg()[0]
    table = markdown_table(
        ["figure", "workers", "rps (median)", "vs 1 worker", "cores busy", "CPU s / 1k req",
         "non-2xx"],
        rows,
    )  # fmt: skip
    body = (
        "## Workers: one node process or two (`bench/workers.py`)\n\n"
        f"Machine: {machine()}; load average {load_before:.1f} before the runs, "
        f"{load_after:.1f} after (the box is shared).\n\n"
        f"`serve --workers N --media loopback --no-auth` on PostgreSQL (a scratch database "
        f"each), both servers up at once; wrk, {args.threads} threads, {args.connections} "
        f"connections, {args.seconds:g} s per run, medians of {args.rounds} alternating rounds. "
        f"{args.calls} live calls placed through the shared port (so on both workers with 2). "
        "CPU: user + system of the supervisor and every worker during the run (wrk's own, on "
        "the same cores, not counted).\n\n"
        f"{table}\n\n{NOTES}"
    )
    print(body)
    if not args.no_write:
        write_section("workers", body)


if __name__ == "__main__":
    main()
