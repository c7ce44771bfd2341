"""Capacity, end to end: N concurrent Graph calls through the API to real SIP far ends.

For each step N (32, 64, 128, 256, 500, 1000 by default) a fresh ``dtmfgraph serve --media sip``
(SQLite in a fresh data directory, or a scratch PostgreSQL database with ``--database URL``)
places N calls (``POST /communications/calls``, target ``sip:far-K@...``) to sipp UASes (one per
100 calls: ``--calls-per-far-end``) that answer with PCMU and telephone-event and echo every RTP
packet they receive back to its sender (``sipp -rtp_echo``). Once all are established, each call
gets ``subscribeToTone``; after a hold with no API traffic (the cost of carrying the calls)
every call gets one ``sendDtmfTones`` with its own 10-key sequence, all at once. The service's
RFC 4733 packets go to sipp, come back, and the service hears them as the far end's keys: each
key heard is a ``toneInfo`` notification to this script's webhook sink. So one round trip checks
both directions through the real stack (SIP, RTP out, pacer, RTP in, event decoding, store,
outbox, signed webhooks).

Why sipp echoing and not ``dtmfgraph answer`` processes: the echo makes the service itself the
judge of what it sent, through the Graph surface a user has (toneInfo, in order, per call), and
the far ends are small C processes (their CPU is reported beside ours) instead of Python ones
that would take the second core from the service under test. What left the service is judged
separately on the wire: dumpcap captures every telephone-event packet to sipp's media ports
(kernel timestamps on ``lo``, before sipp's socket queue) for the pacing error (see
``_capture.py``: lateness against the stream's own 20 ms grid).

Per step: calls established; keys right (calls whose toneInfo sequence equals the keys sent, in
order, nothing extra); service CPU (all its processes, from /proc) while carrying the calls idle
and while sending; pacing error p50/p99/max and packets more than 20 ms late; POST
/communications/calls and sendDtmfTones latency p50/p99 (measured inside the client's
concurrency limit: connection waits do not count); failures (a POST that failed or was not 2xx,
a call not established, an operation not ``completedSuccessfully``, a DELETE that failed);
UDP datagrams dropped by the service's sockets and by the far ends' (/proc/net/udp: a key lost
at the far end is not the service's doing); how long after its sendDtmfTones each call heard its
10th key (10 keys take 1.9 s to play: the rest is the path from the RTP back to the webhook).
Keys count as heard within ``--hear-within`` s (60) of the sends, or until no notification came
for 20 s.

    .venv/bin/python bench/capacity.py                       # the full ladder, into docs
    .venv/bin/python bench/capacity.py --steps 32 --quick    # under a minute, no docs
    .venv/bin/python bench/capacity.py --database postgresql://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/capacity.py --database postgresql://postgres@127.0.0.1:5432/postgres \
        --serve-arg=--workers --serve-arg=2 --serve-arg=--loop --serve-arg=uvloop  # workers: PG
    .venv/bin/python bench/capacity.py --steps 256 --profile-step 256 --no-write   # py-spy

Needs sipp (Debian ``sip-tester``), dumpcap (``tshark``) with capture rights on ``lo``, and for
``--profile-step`` py-spy (the ``bench`` extra) with ptrace rights.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _capture import Pacing, capture, pacing, read_events
from _proc import cpu_between, tree_cpu
from _profile import py_spy, summarise_profile
from _report import machine, markdown_table, stop, write_section
from api_path import _database
from dtmfgraph.cli.progress import Advance, progress

STEPS = (32, 64, 128, 256, 500, 1000)
T = TypeVar("T")
NOTES = """Notes (the run above: 2026-12-08 00:03-00:09 UTC on a quiet box, load average 0.9-2.1;
the earlier run that evening at load 6-18 had the same shape with worse pacing):

- Where it bends: every call established and every key right up to 128 calls, and the service's
  own sockets dropped nothing at any step, but the keys come back late as the calls grow: the
  10th toneInfo 3.9 s after its sendDtmfTones at 32 calls (10 keys take 1.9 s to play), 14 s at
  64, 35 s at 128. Pacing p99 5.4 ms at 32 calls, 13-50 ms from 64 on: the one event loop is
  full (service CPU ~100 % of a core while sending). At 256 the admission control refuses
  what it cannot carry (73 POST /calls and 20 sendDtmfTones 503 + Retry-After: the media clock
  ran late); the 163 sequences sent all left on the wire complete and in order (dumpcap), but
  their toneInfo notifications, at 17 per second, had not all come back within the 60 s window
  (586 still queued): "keys right" counts a call only when all 10 came back in time. At 500,
  131 calls were admitted (369 refused 503) and all 131 heard every key: overload is refused
  up front, never by truncating accepted keys. The goal (1,000 calls, every key right, pacing
  p99 <= 2 ms, POST p99 <= 250 ms) is not reached: one node on one core bends at about 64-128
  calls; POST /calls p99 is 2.2-3.0 s at every step (the 32 requests in flight queue behind
  each other's SIP set-up on the one loop).
- `serve --workers 2` on PostgreSQL (same box, same bench, `--database URL --serve-arg=--workers
  --serve-arg=2`; not in the table above): 128 calls asked, 73 admitted (55 refused 503), all
  73 right, 10th key heard 4.5 s p50, 148 notifications/s, pacing p99 19 ms, service CPU 131 %
  (both cores); 256 asked, 90 admitted (166 refused), all 90 right, 10th key 5.5 s, 156
  notifications/s, pacing p99 17 ms, 128 % CPU. So the second core carries work (notifications
  4x faster than one SQLite node at 128 calls), but the admission control, tuned to refuse as
  soon as the pacer runs 5 ms late on average, refuses much of the set-up burst when two workers,
  PostgreSQL, sipp and this script share two cores; `--overload-new-calls` raises that level.
- Where the time goes (py-spy on `serve`, 100 Hz, the whole send window of the 256-call step,
  busy samples): main thread 80 %, aiosqlite's thread 20 %. By event-loop callback: the pacer's
  tick 26 % (one `sendto` per packet), RTP reads 27 % (one `recvfrom` per packet, the jitter
  buffer, in-band detection of the echoed audio), webhook delivery 2-3 %, the rest the API,
  the write-behind and the loop itself. Per-packet Python work is the ceiling of one loop:
  256 calls are 25,600 packets a second.
- Why toneInfo is late before the loop is full: one call's notifications go out one at a time
  (in order), each after the previous one's delivered mark, the next claim and a POST, with 8
  POSTs in flight per receiver; each hop waits its turn on the busy loop.
- Next steps, in order of what they buy here: (1) several queued notifications of one call in
  one POST (`commsNotifications` carries a `value` array; Graph batches too), claims and marks
  once per tick; (2) fewer system calls per packet (a `sendmmsg`/`recvmmsg` batch per 20 ms tick
  instead of a `sendto` and a `recvfrom` per packet: not in Python's standard library); (3)
  media workers per core owning the sockets and the pacer, so one call's packets never wait
  behind API work; (4) an admission level measured against the capacity ladder on the target
  machine (set `--overload-new-calls` from `bench/capacity.py` there).
"""
KEYS = "1234567890*#"
TONE = {**{d: f"tone{d}" for d in "0123456789"}, "*": "star", "#": "pound"}
EVENT = {**{str(d): d for d in range(10)}, "*": 10, "#": 11}
SEQUENCE = 10
_CALL_URL = re.compile(r"/communications/calls/([^/]+)(?:/operations/([^/]+))?$")

UAS = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="capacity far end: PCMU and telephone-event, RTP echoed (-rtp_echo)">
  <recv request="INVITE" crlf="true"/>
  <send retrans="500"><![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=sipp 1 1 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-16

    ]]>
  </send>
  <recv request="ACK" crlf="true"/>
  <recv request="BYE"/>
  <send><![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
</scenario>
"""


def sequence(i: int) -> str:
    """Call ``i``'s keys: ten of ``KEYS`` rotated by ``i`` (so order and content differ)."""
    start = i % len(KEYS)
    return (KEYS[start:] + KEYS[:start])[:SEQUENCE]


# ---------------------------------------------------------------- processes and ports


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_media_port() -> int:
    """An even UDP port with the next three free too (sipp's -rtp_echo takes port and port+2)."""
    for _ in range(200):
        base = free_port(socket.SOCK_DGRAM) & ~1
        socks: list[socket.socket] = []
        try:
            for p in range(base, base + 4):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free media port run")


def udp_drops(port: int) -> int:
    """Datagrams dropped by the sockets bound to ``port`` (IPv4), from /proc/net/udp."""
    total = 0
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        cols = line.split()
        if int(cols[1].rsplit(":", 1)[1], 16) == port:
            total += int(cols[-1])
    return total


def service_drops(root: int) -> int:
    """Datagrams dropped by the UDP sockets of ``root``'s process tree (its RTP sockets' queues
    overflowing while nobody read them), from /proc/net/udp by socket inode."""
    inodes: set[str] = set()
    for pid in tree_cpu(root):
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("socket:["):
                        inodes.add(link[8:-1])
    total = 0
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        cols = line.split()
        if cols[9] in inodes:
            total += int(cols[-1])
    return total


@contextlib.contextmanager
def running(
    argv: list[str], log: Path, cwd: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, stdin=subprocess.DEVNULL
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            stop(proc, timeout=10)


# ---------------------------------------------------------------- the webhook sink


@dataclass(slots=True)
class Calls:
    """What the notifications told about the step's calls."""

    established: dict[str, asyncio.Event] = field(
        default_factory=lambda: defaultdict(asyncio.Event)
    )
    heard: dict[str, list[tuple[int, str]]] = field(default_factory=lambda: defaultdict(list))
    ended_ops: dict[str, str] = field(default_factory=dict)
    full: dict[str, asyncio.Event] = field(default_factory=lambda: defaultdict(asyncio.Event))
    full_at: dict[str, float] = field(default_factory=dict)
    notes: int = 0

    def take(self, note: dict[str, object]) -> None:
        self.notes += 1
        match = _CALL_URL.search(str(note.get("resourceUrl", "")))
        data = note.get("resourceData")
        if not match or not isinstance(data, dict):
            return
        call_id, op_id = match.groups()
        if op_id is not None:
            if note.get("changeType") == "deleted":
                self.ended_ops[op_id] = str(data.get("completionReason") or data.get("status"))
            return
        tone = data.get("toneInfo")
        if isinstance(tone, dict):
            self.heard[call_id].append((int(tone["sequenceId"]), str(tone["tone"])))
            if len(self.heard[call_id]) == SEQUENCE:
                self.full[call_id].set()
                self.full_at[call_id] = time.monotonic()
        elif data.get("state") == "established":
            self.established[call_id].set()


class Sink:
    """An HTTP/1.1 server on this process's event loop answering every POST with 202 and handing
    each notification of its body to ``calls.take``."""

    def __init__(self) -> None:
        self.calls = Calls()
        self.port = free_port()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Sink:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, backlog=1024)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        quiet = (
            OSError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            asyncio.CancelledError,
        )
        with contextlib.suppress(*quiet):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                match = re.search(rb"(?i)content-length:\s*(\d+)", head)
                body = await reader.readexactly(int(match.group(1))) if match else b""
                writer.write(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
                with contextlib.suppress(ValueError):
                    for note in json.loads(body).get("value", []):
                        self.calls.take(note)
        writer.close()


# ---------------------------------------------------------------- one step


@dataclass(slots=True)
class Step:
    n: int
    established: int = 0
    keys_right: int = 0
    wrong: list[str] = field(default_factory=list)
    carry_cpu: float = float("nan")
    send_cpu: float = float("nan")
    send_cpu_s: float = float("nan")
    sipp_cpu: float = float("nan")
    bench_cpu: float = float("nan")
    pace: Pacing = field(default_factory=Pacing)
    post_ms: list[float] = field(default_factory=list)
    send_ms: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    far_drops: int = 0
    wire_right: int = 0
    send_window_s: float = float("nan")
    heard_s: list[float] = field(default_factory=list)
    notes_per_s: float = float("nan")
    outbox: str = ""
    service_drops: int = 0
    load: str = ""

    def summary(self) -> dict[str, object]:
        """The step's figures as plain JSON values (``--json``)."""
        return {
            "calls": self.n,
            "established": self.established,
            "keys_right": self.keys_right,
            "wrong": self.wrong,
            "on_wire_right": self.wire_right,
            "carry_cpu_pct": self.carry_cpu,
            "send_cpu_pct": self.send_cpu,
            "pacing_p99_ms": self.pace.p(99),
            "late_20ms": self.pace.late_20ms,
            "post_calls_p99_ms": float(np.percentile(self.post_ms, 99)) if self.post_ms else None,
            "tenth_key_heard_max_s": max(self.heard_s, default=None),
            "send_p99_ms": float(np.percentile(self.send_ms, 99)) if self.send_ms else None,
            "failures": dict(self.failures),
            "far_end_drops": self.far_drops,
            "service_drops": self.service_drops,
            "load": self.load,
        }

    def row(self) -> list[str]:
        def pct(xs: list[float], q: float) -> str:
            return f"{np.percentile(xs, q):,.0f}" if xs else "-"

        p = self.pace
        fails = ", ".join(f"{k} {v}" for k, v in sorted(self.failures.items())) or "0"
        return [
            f"{self.n:,}",
            f"{self.established:,}",
            f"{self.keys_right:,}",
            f"{self.carry_cpu:.0f} %",
            f"{self.send_cpu:.0f} %",
            f"{p.p(50):.1f} / {p.p(99):.1f} / {p.p(100):.0f}",
            f"{p.late_20ms:,}",
            f"{pct(self.post_ms, 50)} / {pct(self.post_ms, 99)}",
            f"{pct(self.send_ms, 50)} / {pct(self.send_ms, 99)}",
            f"{_q(self.heard_s, 50)} / {_q(self.heard_s, 100)}",
            fails,
            f"{self.service_drops:,} / {self.far_drops:,}",
        ]


def _q(xs: list[float], q: float) -> str:
    return f"{np.percentile(xs, q):.1f}" if xs else "-"


HEADER = [
    "calls",
    "established",
    "keys right",
    "service CPU carrying",
    "service CPU sending",
    "pacing p50 / p99 / max ms",
    "packets > 20 ms late",
    "POST /calls p50 / p99 ms",
    "sendDtmfTones p50 / p99 ms",
    "10th key heard p50 / max s",
    "failures",
    "UDP drops: service / far end",
]


class Api:
    """The step's HTTP client: at most ``limit`` requests in flight; each request's latency is
    timed once it holds its slot (so the client's own queue does not count)."""

    def __init__(self, base: str, limit: int, step: Step) -> None:
        self.client = httpx.AsyncClient(
            base_url=base,
            timeout=120.0,
            # under uvicorn's 5 s keep-alive: a request never meets a connection it is closing
            limits=httpx.Limits(
                max_connections=limit, max_keepalive_connections=limit, keepalive_expiry=2.0
            ),
        )
        self.slots = asyncio.Semaphore(limit)
        self.step = step
        self.up: set[str] = set()

    async def post(
        self, what: str, path: str, body: object, into: list[float] | None
    ) -> dict[str, object] | None:
        async with self.slots:
            t0 = time.perf_counter()
            try:
                r = await self.client.post(path, json=body)
            except httpx.HTTPError as exc:
                self.step.failures[f"{what} {type(exc).__name__}"] += 1
                return None
            except asyncio.CancelledError:  # out of budget: it took at least this long
                if into is not None:
                    into.append((time.perf_counter() - t0) * 1000.0)
                raise
            if into is not None:
                into.append((time.perf_counter() - t0) * 1000.0)
        if r.status_code >= 300:
            self.step.failures[f"{what} {r.status_code}"] += 1
            return None
        return dict(r.json())

    async def state(self, call_id: str) -> str:
        """The call's state as a GET answers it ("" when it fails); established ones are kept
        in ``up``."""
        async with self.slots:
            try:
                r = await self.client.get(f"/{call_id}")
            except httpx.HTTPError:
                return ""
        state = str(r.json().get("state", "")) if r.status_code == 200 else ""
        if state == "established":
            self.up.add(call_id)
        return state

    async def delete(self, path: str) -> None:
        async with self.slots:
            try:
                r = await self.client.delete(path)
            except httpx.HTTPError as exc:
                self.step.failures[f"DELETE {type(exc).__name__}"] += 1
                return
        if r.status_code >= 300 and r.status_code != 404:
            self.step.failures[f"DELETE {r.status_code}"] += 1


async def outbox_figures(client: httpx.AsyncClient) -> str:
    """The service's own view of its webhook deliveries (its /metrics)."""
    try:
        text = (await client.get(f"http://127.0.0.1:{client.base_url.port}/metrics")).text
    except httpx.HTTPError as exc:
        return f"/metrics: {type(exc).__name__}"

    def metric(name: str, label: str = "") -> float:
        pattern = rf"^{name}(?:{{[^}}]*{label}[^}}]*}})?\s+([0-9.e+-]+)$"
        return sum(float(m) for m in re.findall(pattern, text, re.M))

    posts = metric("dtmfgraph_webhook_delivery_seconds_count")
    took = metric("dtmfgraph_webhook_delivery_seconds_sum")
    retried = metric("dtmfgraph_notifications_total", "retried")
    return (
        f"webhook POSTs {posts:.0f} (retried {retried:.0f}), "
        f"mean {1000 * took / max(posts, 1):.0f} ms each; "
        f"backlog {metric('dtmfgraph_outbox_backlog', 'pending'):.0f} pending"
    )


def call_body(hook: str, target: str) -> dict[str, object]:
    return {
        "@odata.type": "#microsoft.graph.call",
        "callbackUri": hook,
        "targets": [
            {
                "@odata.type": "#microsoft.graph.invitationParticipantInfo",
                "identity": {"user": {"id": target}},
            }
        ],
        "requestedModalities": ["audio"],
        "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
    }


async def within(
    budget: float, requests: list[Coroutine[Any, Any, T]], step: Step, what: str
) -> list[T | None]:
    """The requests' results in order; those still unanswered after ``budget`` s are cancelled,
    counted as failures, and None."""
    tasks = [asyncio.ensure_future(r) for r in requests]
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=budget)
        for t in pending:
            t.cancel()
        if pending:
            step.failures[f"{what} unanswered after {budget:g} s"] += len(pending)
            await asyncio.wait(pending)
    return [None if t.cancelled() or t.exception() else t.result() for t in tasks]


async def _wait_all(
    events: list[asyncio.Event], calls: Calls, stall: float, cap: float, advance: Advance
) -> None:
    """Until every event is set, or no notification came for ``stall`` s, or ``cap`` s passed:
    a slow notification path is measured (it only arrives late), a dead one does not hang."""

    async def one(e: asyncio.Event) -> None:
        await e.wait()
        advance()

    waiting = asyncio.ensure_future(asyncio.gather(*(one(e) for e in events)))
    start = last_change = time.monotonic()
    seen = calls.notes
    try:
        while not waiting.done():
            await asyncio.wait([waiting], timeout=0.5)
            now = time.monotonic()
            if calls.notes != seen:
                seen, last_change = calls.notes, now
            if now - last_change > stall or now - start > cap:
                break
    finally:
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting


async def drive(
    step: Step,
    args: argparse.Namespace,
    api_port: int,
    sink: Sink,
    ends: list[FarEnd],
    service: subprocess.Popen[bytes],
    advance: Advance,
    profile: Path | None,
) -> None:
    """Place, hold, send and hear, hang up: the step's API traffic, against a running service."""
    n, calls = step.n, sink.calls
    api = Api(f"http://127.0.0.1:{api_port}/v1.0/communications/calls", args.concurrency, step)
    try:
        made = await within(
            args.phase_budget,
            [
                api.post(
                    "POST /calls",
                    "",
                    call_body(sink.url, f"sip:far-{i}@127.0.0.1:{ends[i % len(ends)].sip_port}"),
                    step.post_ms,
                )
                for i in range(n)
            ],
            step,
            "POST /calls",
        )
        ids = [str(c["id"]) if c else None for c in made]
        live = [c for c in ids if c]
        await _wait_all([calls.established[c] for c in live], calls, 10, 60, advance)
        late = [c for c in live if not calls.established[c].is_set()]
        if late:  # the API's word for those whose notification has not come (yet)
            states = await within(30, [api.state(c) for c in late], step, "GET")
            step.failures["established not notified"] += states.count("established")
        up = [c for c in live if calls.established[c].is_set() or c in api.up]
        step.established = len(up)
        if len(up) < len(live):  # (a POST that failed is counted as such)
            step.failures["not established"] += len(live) - len(up)
        await asyncio.gather(
            *(
                api.post(
                    "subscribeToTone", f"/{c}/subscribeToTone", {"clientContext": "bench"}, None
                )
                for c in up
            )
        )
        # carrying the calls, no API traffic
        c0, t0 = tree_cpu(service.pid), time.monotonic()
        await asyncio.sleep(args.hold)
        step.carry_cpu = 100 * cpu_between(c0, tree_cpu(service.pid)) / (time.monotonic() - t0)

        c0, t0 = tree_cpu(service.pid), time.monotonic()
        drops0 = service_drops(service.pid)
        s0 = [tree_cpu(e.proc.pid) for e in ends]
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        spy = py_spy(service.pid, profile) if profile else None
        notes0 = calls.notes
        sent = {c: sequence(i) for i, c in enumerate(ids) if c in up}

        async def send(c: str, keys: str) -> None:
            body = {"tones": [TONE[k] for k in keys], "clientContext": "bench"}
            posted[c] = time.monotonic()
            op = await api.post("sendDtmfTones", f"/{c}/sendDtmfTones", body, step.send_ms)
            advance()
            if op is not None:
                ops[c] = str(op["id"])

        ops: dict[str, str] = {}
        posted: dict[str, float] = {}
        await within(
            args.phase_budget, [send(c, keys) for c, keys in sent.items()], step, "sendDtmfTones"
        )
        await _wait_all([calls.full[c] for c in ops], calls, 20, args.hear_within, advance)
        await asyncio.sleep(0.5)  # anything extra or late shows up here
        step.heard_s = [at - posted[c] for c, at in calls.full_at.items() if c in posted]
        took = time.monotonic() - t0
        step.send_window_s = took
        step.send_cpu_s = cpu_between(c0, tree_cpu(service.pid))
        step.send_cpu = 100 * step.send_cpu_s / took
        sipp_s = sum(cpu_between(a, tree_cpu(e.proc.pid)) for a, e in zip(s0, ends, strict=True))
        step.sipp_cpu = 100 * sipp_s / took
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        step.bench_cpu = 100 * (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) / took
        step.load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        step.notes_per_s = (calls.notes - notes0) / took
        step.service_drops = service_drops(service.pid) - drops0
        step.outbox = await outbox_figures(api.client)
        if spy is not None:  # the whole send window: sending, hearing, notifying
            stop(spy, timeout=30)
        for c, keys in sent.items():
            got = [tone for _, tone in sorted(calls.heard.get(c, []))]
            if got == [TONE[k] for k in keys]:
                step.keys_right += 1
            elif len(step.wrong) < 5:
                step.wrong.append(f"{keys} -> {got}")
        for op in ops.values():
            if calls.ended_ops.get(op) != "completedSuccessfully":
                step.failures[f"send {calls.ended_ops.get(op, 'not ended')}"] += 1
        await within(
            min(args.phase_budget, 30), [api.delete(f"/{c}") for c in live], step, "DELETE"
        )
    finally:
        await api.client.aclose()


@dataclass(frozen=True, slots=True)
class FarEnd:
    """One sipp UAS: its SIP port, its media port (echoed), its process."""

    sip_port: int
    media_port: int
    proc: subprocess.Popen[bytes]


@contextlib.contextmanager
def far_ends(count: int, calls: int, work: Path) -> Iterator[list[FarEnd]]:
    """``count`` sipp UASes answering and echoing RTP; each its own process, socket and thread,
    so one far end's socket queue does not overflow while its thread waits for a core."""
    with contextlib.ExitStack() as stack:
        ends = []
        for k in range(count):
            sip_port, media_port = free_port(socket.SOCK_DGRAM), free_media_port()
            argv = ["sipp", "-sf", "uas.xml", "-i", "127.0.0.1", "-p", str(sip_port),
                    "-mi", "127.0.0.1", "-mp", str(media_port), "-rtp_echo", "-nostdin",
                    "-l", str(4 * calls + 100), "-trace_err"]  # fmt: skip
            proc = stack.enter_context(running(argv, work / f"sipp-{k}.log", cwd=work))
            ends.append(FarEnd(sip_port, media_port, proc))
        yield ends


def run_step(n: int, args: argparse.Namespace, tmp: Path, advance: Advance) -> Step:
    step = Step(n)
    work = tmp / f"step-{n}"
    if work.exists():  # a --workdir kept from an earlier run: this step starts clean
        shutil.rmtree(work)
    work.mkdir(parents=True)
    (work / "uas.xml").write_text(UAS)
    api_port = free_port()
    profile = work / "py-spy.txt" if n == args.profile_step else None
    count = max(1, -(-n // args.calls_per_far_end))
    kind = "PostgreSQL" if args.database != "sqlite" else "SQLite"
    with (
        _database(kind, work, args.database) as db,
        far_ends(count, n, work) as ends,
        capture([e.media_port for e in ends], work / "events.pcap") as dropped,
    ):
        sip_port = free_port(socket.SOCK_DGRAM)  # a number, not 0: --workers N adds to it
        serve = [sys.executable, "-m", "dtmfgraph", "serve", "--no-auth", "--media", "sip",
                 "--port", str(api_port), "--sip-host", "127.0.0.1", "--sip-port", str(sip_port),
                 "--data-dir", str(work / "data"), "--database-url", db,
                 "--callback-allow-host", "127.0.0.1", "--log-level", "warning",
                 *args.serve_arg]  # fmt: skip
        with running(serve, work / "serve.log") as service:
            _wait_ready(service, api_port)
            drops0 = sum(udp_drops(e.media_port) for e in ends)

            async def go() -> None:
                async with Sink() as sink:
                    await drive(step, args, api_port, sink, ends, service, advance, profile)

            asyncio.run(go())
            step.far_drops = sum(udp_drops(e.media_port) for e in ends) - drops0
        errors = sum(
            1
            for line in (work / "serve.log").read_text(errors="replace").splitlines()
            if "Traceback" in line or "ERROR" in line
        )
        if errors:
            step.failures["service log errors"] += errors
    step.pace = pacing(read_events(work / "events.pcap"))
    step.pace.dropped = dropped[0]
    expected = {tuple(EVENT[k] for k in sequence(i)) for i in range(len(KEYS))}
    step.wire_right = sum(tuple(k) in expected for k in step.pace.keys_by_port.values())
    if profile is not None and profile.exists():
        print(summarise_profile(profile))
    return step


def _wait_ready(proc: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if (
                httpx.get(f"http://127.0.0.1:{port}/.well-known/openid-configuration").status_code
                == 200
            ):
                return
        if proc.poll() is not None:
            raise RuntimeError(f"serve exited {proc.returncode}")
        time.sleep(0.1)
    raise RuntimeError("serve: no 200 in 90 s")


# ---------------------------------------------------------------- the ladder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--steps",
        default=",".join(map(str, STEPS)),
        help="calls per step, comma-separated (default %(default)s)",
    )
    parser.add_argument("--quick", action="store_true", help="short hold, no docs (a check)")
    parser.add_argument(
        "--database",
        default="sqlite",
        help="sqlite (default), or a PostgreSQL URL to make scratch databases from",
    )
    parser.add_argument(
        "--serve-arg",
        action="append",
        default=[],
        help="one more argument for `dtmfgraph serve` (repeatable)",
    )
    parser.add_argument("--concurrency", type=int, default=32, help="API requests in flight")
    parser.add_argument(
        "--calls-per-far-end",
        type=int,
        default=100,
        help="calls per sipp UAS (default %(default)s)",
    )
    parser.add_argument("--hold", type=float, default=3.0, help="seconds carrying the calls idle")
    parser.add_argument(
        "--phase-budget",
        type=float,
        default=120.0,
        help="seconds for all POST /calls (and again for all sendDtmfTones, all DELETEs): "
        "requests unanswered by then are cancelled and counted as failures (default 120)",
    )
    parser.add_argument(
        "--hear-within",
        type=float,
        default=60.0,
        help="seconds after the sends for the keys to be heard (default 60)",
    )
    parser.add_argument(
        "--profile-step", type=int, help="py-spy the service through this step's send window"
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--workdir",
        type=Path,
        help="where the steps' logs and captures go "
        "(default: a temporary directory, removed at the end)",
    )
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    if args.quick:
        args.hold, args.no_write = 1.0, True
    steps = [int(s) for s in args.steps.split(",")]
    rows: list[Step] = []
    load0 = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"capacity: steps {steps} on {machine()}; load average {load0}", flush=True)
    with (
        contextlib.nullcontext(str(args.workdir))
        if args.workdir
        else tempfile.TemporaryDirectory(prefix="capacity-") as tmp,
        progress("capacity", total=3 * sum(steps)) as advance,
    ):
        for n in steps:
            advance(0, description=f"{n} calls")
            step = run_step(n, args, Path(tmp), advance)
            rows.append(step)
            print(markdown_table(HEADER, [step.row()]).splitlines()[-1], flush=True)
            print(
                f"  send window {step.send_window_s:.1f} s, service {step.send_cpu_s:.1f} CPU s, "
                f"{step.notes_per_s:.0f} notifications/s; "
                f"sipp {step.sipp_cpu:.0f} %, this script {step.bench_cpu:.0f} % of a core; "
                f"{step.pace.packets:,} event packets captured in {step.pace.streams} streams, "
                f"{step.wire_right} with their 10 keys in order (dumpcap dropped "
                f"{step.pace.dropped}); load {step.load}",
                flush=True,
            )
            print(f"  {step.outbox}", flush=True)
            for w in step.wrong:
                print(f"  wrong: {w}")
    table = markdown_table(HEADER, [r.row() for r in rows])
    print()
    print(table)
    if args.json:
        args.json.write_text(json.dumps([r.summary() for r in rows], indent=1))
    if not args.no_write:
        write_section("capacity", report(table, rows, args, load0))


def report(table: str, rows: list[Step], args: argparse.Namespace, load0: str) -> str:
    db = "SQLite" if args.database == "sqlite" else "PostgreSQL"
    extra = " ".join(args.serve_arg) or "no extra serve arguments"
    loads = "; ".join(f"{r.n} calls: {r.load}" for r in rows)
    return f"""## Capacity: N concurrent calls end to end (`bench/capacity.py`)

Machine: {machine()}. Database {db}; {extra}. Load average (1/5/15 min) before the run:
{load0}; at the end of each step's send: {loads}.

{table}

How: each step runs a fresh `serve --media sip`, places N calls through the API to sipp UASes
that echo RTP (`-rtp_echo`, one per {args.calls_per_far_end} calls), subscribes each call to
tones, carries them {args.hold:g} s with no API traffic ("carrying"), then sends every call its own
10-key sequence at once ("sending": from the first POST until every call heard its keys, or
{args.hear_within:g} s, or 20 s without a notification). Keys right: the call's toneInfo
notifications (the echo of what it sent, heard by the service) equal its keys, in order, nothing
extra. 10th key heard: from a call's sendDtmfTones POST to its 10th toneInfo (playing 10 keys
takes 1.9 s). CPU: all the service's processes, % of one core (the box has {os.cpu_count()}).
Pacing: dumpcap on `lo` (kernel timestamps), each telephone-event packet's lateness against its
stream's 20 ms grid. API latencies are timed inside the client's limit of {args.concurrency}
requests in flight; each phase (all POST /calls, all sends, all DELETEs) has
{args.phase_budget:g} s, after which unanswered requests are cancelled, counted as failures and
timed as they stood (a lower bound). A call counts as established when its notification says so,
or when a GET says so where the notification was more than 10 s late (counted apart). UDP
drops: datagrams the service's sockets and the far ends' sockets dropped (their queues full)
during the send window.

{NOTES}"""


if __name__ == "__main__":
    main()
