"""Answering calls that press keys: ``dtmfgraph answer`` beside pyVoIP 1.6.8, side by side.

The work, the same for both sides: one sipp caller places N concurrent calls (10, 50, 200) to
the answering process, each offering PCMU and telephone-event 101; once answered, each call
replays the same RTP capture (``play_pcap_audio``), made by our own sender (``bench/_pcap.py``):
20 ms PCMU frames with the keys ``1234567890`` as RFC 4733 events (100 ms tones, 100 ms gaps)
from 1 s on, for the call's whole hold time; then sipp hangs up (BYE). The answering side is
``dtmfgraph answer --json`` or ``bench/pyvoip_answer.py`` (pyVoIP, answering as its docs show);
both print each key heard and each call's keys when it ends.

Per round: the answering process's CPU (user + system, its threads and any child processes,
from /proc) from just before sipp starts until the last call has ended, divided by the
call-minutes carried (calls completed x hold time); calls completed as sipp counts them (200 to
the INVITE and to the BYE); calls whose keys were heard exactly (heard vs sent, per call).
Rounds alternate (ours, theirs, theirs, ours, ...); medians per side. The table goes into
docs/benchmarks.md with the machine and the load average.

pyVoIP is not a dependency of dtmfgraph: it is the ``bench`` extra (``pip install -e
'.[bench]'``), and this script installs that pin into its own environment when it is missing.

    .venv/bin/python bench/pyvoip.py            # 10, 50, 200 calls, 4 rounds each
    .venv/bin/python bench/pyvoip.py --quick    # 10 calls, 2 rounds, short calls, no docs
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _pcap import write_dtmf_pcap
from _proc import cpu_between, tree_cpu
from _report import machine, markdown_table, stop, write_section
from dtmfgraph.cli.progress import progress

HERE = Path(__file__).resolve().parent
KEYS = "1234567890"
OURS_RTP = "40000-43999"
THEIRS_RTP = "44000-45999"
SIDES = ("dtmfgraph", "pyVoIP")


def pyvoip_pin() -> str:
    """The ``bench`` extra's pyVoIP requirement in pyproject.toml (``pyVoIP==1.6.8``)."""
    project = tomllib.loads((HERE.parent / "pyproject.toml").read_text())["project"]
    return next(r for r in project["optional-dependencies"]["bench"] if r.startswith("pyVoIP"))


def ensure_pyvoip() -> str:
    """pyVoIP's version, installed first (the pinned one) when this Python lacks it."""
    pin = pyvoip_pin()
    want = pin.split("==", 1)[1]
    check = [sys.executable, "-c", "import pyVoIP; print(pyVoIP.__version__)"]
    found = subprocess.run(check, check=False, capture_output=True, text=True).stdout.strip()
    if found != want:
        print(f"installing {pin} for this benchmark", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", pin], check=True)
        found = subprocess.run(check, capture_output=True, text=True, check=True).stdout.strip()
    return found


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def free_udp_run(span: int = 4) -> int:
    """An even port with ``span`` free ports from it, below the answerers' RTP ranges (sipp's
    ``-mp`` binds a few)."""
    rng = random.Random()
    while True:
        base = rng.randrange(30000, 39990, 2)
        socks: list[socket.socket] = []
        try:
            for port in range(base, base + span):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        return base


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


_SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="bench: answer and hear RFC 2833 keys">
  <send retrans="500"><![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: [service] <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
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
      a=fmtp:101 0-15
      a=ptime:20

  ]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rrs="true"/>
  <send><![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: [service] <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Length: 0

  ]]></send>
  <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>
  <pause milliseconds="{hold_ms}"/>
  <send retrans="500"><![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: [service] <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Length: 0

  ]]></send>
  <recv response="200" crlf="true"/>
</scenario>
"""


@dataclass
class Round:
    side: str
    calls: int
    completed: int
    keys_right: int
    keys_heard: int
    cpu_s: float
    call_minutes: float
    rss_mib: float
    wall_s: float

    @property
    def cpu_per_call_minute(self) -> float:
        return self.cpu_s / self.call_minutes if self.call_minutes else float("nan")

    def line(self) -> str:
        return (
            f"{self.calls:>4} calls  {self.side:<9}  completed {self.completed:>4}  "
            f"keys right {self.keys_right:>4}  cpu {self.cpu_s:6.2f} s  "
            f"{self.cpu_per_call_minute:.3f} s/call-minute"
        )


def answerer(side: str, port: int, sipp_port: int) -> list[str]:
    if side == "dtmfgraph":
        return [sys.executable, "-m", "dtmfgraph", "answer", "--host", "127.0.0.1",
                "--port", str(port), "--rtp-ports", OURS_RTP, "--json"]  # fmt: skip
    return [sys.executable, str(HERE / "pyvoip_answer.py"), "--host", "127.0.0.1", "--port",
            str(port), "--server-port", str(sipp_port), "--rtp-ports", THEIRS_RTP]  # fmt: skip


def _events(path: Path) -> list[dict[str, object]]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def _wait_for(path: Path, event: str, count: int, timeout: float) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    while True:
        events = [e for e in _events(path) if e.get("event") == event]
        if len(events) >= count or time.monotonic() > deadline:
            return events
        time.sleep(0.05)


def _settled(path: Path, event: str, count: int, timeout: float) -> list[dict[str, object]]:
    """The ``event`` lines once there are ``count`` of them, or once none came for 1 s."""
    deadline = time.monotonic() + timeout
    seen, since = -1, time.monotonic()
    while True:
        events = [e for e in _events(path) if e.get("event") == event]
        now = time.monotonic()
        if len(events) != seen:
            seen, since = len(events), now
        if len(events) >= count or now - since > 1.0 or now > deadline:
            return events
        time.sleep(0.05)


def run_round(side: str, calls: int, hold_s: float, scenario: Path, work: Path) -> Round:
    port, sipp_port, media_port = free_udp_port(), free_udp_port(), free_udp_run()
    log = work / f"{side}-{calls}.jsonl"
    with log.open("w") as out:
        proc = subprocess.Popen(answerer(side, port, sipp_port), stdout=out,
                                stderr=subprocess.DEVNULL, cwd=HERE.parent)  # fmt: skip
    try:
        if not _wait_for(log, "ready", 1, 60):
            raise SystemExit(f"{side} answerer did not start: {log.read_text()[-2000:]}")
        time.sleep(0.5)
        rate = max(10, calls // 5)
        cpu0, wall0 = tree_cpu(proc.pid), time.monotonic()
        limit = int(hold_s + calls / rate + 60)
        command = ["sipp", f"127.0.0.1:{port}", "-sf", str(scenario), "-s", "answer",
                   "-i", "127.0.0.1", "-mi", "127.0.0.1", "-p", str(sipp_port),
                   "-mp", str(media_port), "-m", str(calls), "-l", str(calls), "-r", str(rate),
                   "-nostdin", "-timeout", f"{limit}s", "-max_socket", "4096"]  # fmt: skip
        try:
            sipp = subprocess.run(command, check=False, cwd=work, capture_output=True, text=True,
                                  timeout=limit + 30)  # fmt: skip
            screen = sipp.stdout + sipp.stderr
        except subprocess.TimeoutExpired as exc:  # sipp 3.6 has been seen spinning past -timeout
            partial = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else ""
            screen = f"sipp killed {limit + 30} s after it started\n{partial}"
        match = re.search(r"Successful call\s*\|\s*\d+\s*\|\s*(\d+)", screen)
        (work / f"sipp-{side}-{calls}.txt").write_text(screen)
        # no final screen: the calls the answerer saw end
        completed = int(match.group(1)) if match else len(_settled(log, "ended", calls, 10))
        if completed < calls:
            print(f"{side}, {calls} calls: {completed} successful; sipp's screen:\n"
                  f"{screen[-3500:]}", file=sys.stderr)  # fmt: skip
        ended = _settled(log, "ended", calls, 10)
        cpu, wall = cpu_between(cpu0, tree_cpu(proc.pid)), time.monotonic() - wall0
        rss = peak_rss_mib(proc.pid)
    finally:
        stop(proc)
    heard = [str(e.get("keys", "")) for e in ended]
    return Round(
        side=side,
        calls=calls,
        completed=completed,
        keys_right=sum(k == KEYS for k in heard),
        keys_heard=sum(sum(a == b for a, b in zip(k, KEYS, strict=False)) for k in heard),
        cpu_s=cpu,
        call_minutes=completed * hold_s / 60,
        rss_mib=rss,
        wall_s=wall,
    )


def order(rounds: int) -> list[str]:
    """ours, theirs, theirs, ours, ... (ABBA), ``rounds`` in all."""
    return [SIDES[(i + i // 2) % 2] for i in range(rounds)]


def table(results: dict[int, list[Round]]) -> tuple[list[str], list[list[str]]]:
    header = ["calls", "side", "calls completed", "calls with every key right", "keys heard",
              "CPU s per call-minute (median)", "rounds (CPU s per call-minute)",
              "CPU / wall (median)", "peak RSS",
              "pyVoIP / dtmfgraph"]  # fmt: skip
    rows = []
    for calls, rounds in results.items():
        med = {}
        for side in SIDES:
            mine = [r for r in rounds if r.side == side]
            med[side] = statistics.median(r.cpu_per_call_minute for r in mine)
        for side in SIDES:
            mine = [r for r in rounds if r.side == side]
            ratio = med["pyVoIP"] / med["dtmfgraph"]
            rows.append([
                f"{calls:,}",
                side,
                "/".join(str(r.completed) for r in mine) + f" of {calls}",
                "/".join(str(r.keys_right) for r in mine),
                "/".join(f"{r.keys_heard:,}" for r in mine) + f" of {calls * len(KEYS):,}",
                f"**{med[side]:.3f}**",
                ", ".join(f"{r.cpu_per_call_minute:.3f}" for r in mine),
                f"{statistics.median(r.cpu_s / r.wall_s for r in mine):.0%}",
                f"{max(r.rss_mib for r in mine):.0f} MiB",
                f"**{ratio:.2f}x**" if side == "pyVoIP" else "",
            ])  # fmt: skip
    return header, rows


NOTES = """
Notes:
- CPU per call-minute is the answering process's CPU (user + system, every thread, read from
  /proc) from just before sipp starts its first call until every call has ended, over calls
  completed x hold time. It includes what the process spends while fewer calls are up (the
  ramp) and on SIP; the ratio is pyVoIP's over ours, from medians of alternating rounds.
- pyVoIP 1.6.8 runs three threads per call (RTP receive, polling a non-blocking socket with
  10 ms sleeps; RTP send, one packet per 20 ms with `time.sleep`; the call callback polling
  `get_dtmf()`), keeps every received frame decoded in a growing buffer, and hears a key on the
  event packet with the marker bit only (a lost first packet is a lost key). It answers one
  second after the INVITE (its callback runs on a 1 s timer) and sends its SIP responses to its
  configured server, so the caller is its server: the benchmark answers its one REGISTER.
- dtmfgraph answers on one asyncio loop: a socket per call read on readiness, the pacer sending
  every call's frames on one 1 ms grid, RTCP, a jitter buffer per call and in-band detection
  (shared detector banks) on every call as well as RFC 4733: more work per call than pyVoIP
  does. An earlier measurement on this kind of box gave 0.17 s (dtmfgraph) against 0.52 s
  (pyVoIP) per call-minute at 200 calls (3.1x), 1.7x at 50 and 0.9x at 10 calls, where an
  in-band detector bank kept running on idle channels (a fixed cost that calls do not share);
  banks that stop when idle are issue 18's work on the receive path.
- Both sides' calls come from one sipp process replaying the same capture, so the callers load
  the box equally; sipp shares the 2 cores with the answering process.
- On a box loaded by other jobs (load average 12-150 during development), pyVoIP lost calls at
  200: its one SIP thread, among ~600 call threads contending for the GIL, left BYEs unanswered
  past sipp's 32 s transaction timeout (46 of 200 calls completed in one round, 200 in the
  next), while dtmfgraph completed every call with every key. Read "calls completed" beside the
  CPU figures: CPU per call-minute only counts completed calls.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", default="10,50,200", help="concurrent calls, comma-separated")
    parser.add_argument("--rounds", type=int, default=4, help="rounds per step (ABBA order)")
    parser.add_argument("--hold", type=float, default=20.0, help="seconds each call lasts")
    parser.add_argument(
        "--quick", action="store_true", help="10 calls, 2 rounds, 6 s calls; docs left alone"
    )
    parser.add_argument("--no-write", action="store_true", help="print, leave docs alone")
    args = parser.parse_args()
    if args.quick:
        args.calls, args.rounds, args.hold, args.no_write = "10", 2, 6.0, True
    if shutil.which("sipp") is None:
        raise SystemExit("sipp is not installed (apt-get install sip-tester)")
    version = ensure_pyvoip()
    steps = [int(c) for c in args.calls.split(",")]
    load_before = os.getloadavg()
    results: dict[int, list[Round]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-pyvoip-") as tmp:
        work = Path(tmp)
        pcap = work / "keys.pcap"
        write_dtmf_pcap(pcap, KEYS, seconds=args.hold - 0.2)
        scenario = work / "scenario.xml"
        scenario.write_text(_SCENARIO.replace("{pcap}", str(pcap)).replace(
            "{hold_ms}", str(round(args.hold * 1000))))  # fmt: skip
        with progress("rounds", len(steps) * args.rounds) as advance:
            for calls in steps:
                results[calls] = []
                for side in order(args.rounds):
                    r = run_round(side, calls, args.hold, scenario, work)
                    results[calls].append(r)
                    advance(1, f"{calls} calls: {side} done")
                    print(r.line(), file=sys.stderr)
    load_after = os.getloadavg()
    header, rows = table(results)
    text = markdown_table(header, rows)
    print(text)
    if args.no_write:
        return
    load = f"{load_before[0]:.1f} at the start, {load_after[0]:.1f} at the end"
    body = (
        "## Answering calls that press keys: dtmfgraph vs pyVoIP (`bench/pyvoip.py`)\n\n"
        f"Machine: {machine()}; load average (1 min) {load}. pyVoIP {version}, "
        f"sipp {sipp_version()}.\n\n"
        f"Each call: answered, then {args.hold:g} s of RTP (PCMU, keys `{KEYS}` as RFC 4733 "
        "events, 100 ms on / 100 ms off, from 1 s on), then BYE; "
        f"{args.rounds} rounds per step alternating ours, theirs, theirs, ours; a cell with "
        "a/b lists the rounds. Ratio = pyVoIP's CPU per call-minute / ours (higher is better "
        "for us). Run: `.venv/bin/python bench/pyvoip.py`.\n\n"
        f"{text}\n{NOTES}"
    )
    write_section("pyvoip", body)


def sipp_version() -> str:
    out = subprocess.run(["sipp", "-v"], check=False, capture_output=True, text=True).stdout
    match = re.search(r"SIPp v([\d.]+)", out)
    return match.group(1) if match else "?"


if __name__ == "__main__":
    main()
