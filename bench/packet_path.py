"""CPU per RTP packet on the real media path: pacer, sessions and sockets, against the bare socket.

N ``RtpSession`` (PCMU, telephone-event, in-band detection on a shared ``InbandBanks`` bank, as a
``Phone`` call has them) run on one ``Pacer`` on the event loop the service uses (uvloop where
installed, as ``serve --loop auto``), over real UDP sockets on 127.0.0.1, to a far end in another
process (its CPU is not counted): a sink that only reads, then an echo that sends every packet
back to its sender (as ``sipp -rtp_echo`` does in ``bench/capacity.py``). Measured: this
process's CPU time over ``--seconds`` of carrying the calls idle (silence out, silence back):

- send: pacer wake-up, packet build, ``sendto`` (far end: the sink) — CPU / packets sent;
- receive: the same calls with the echo, less the send cost — CPU / packets received (``recvfrom``,
  RTP parse, strict-source check, jitter buffer, play-out, G.711 decode, detector bank, event
  handling);
- send with the journal's capture of what we send attached (``tap_sent``, decoding every frame
  into a ring buffer): what ``--journal`` adds per packet sent.

The floor, measured in the same run on the same sockets and datagrams: a bare Python loop that
only calls ``sock.sendto`` (send) or ``sock.recvfrom`` (receive) once per packet. The ratio to it
is what this script reports (the box may be shared: best of ``--repeat`` runs of each).

Usage: ``python bench/packet_path.py [--calls 200,1000] [--seconds 3] [--repeat 3]
[--loop auto|asyncio|uvloop] [--no-write]``. Results go to docs/benchmarks.md between
``<!-- packet-path:begin -->`` and ``<!-- packet-path:end -->``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, markdown_table, write_section
from dtmfgraph.cli.loops import resolve
from dtmfgraph.media import InbandBanks, Pacer, RtpSession
from dtmfgraph.rtp import OutboundStream

FAR_END = r"""
import socket, sys
echo = sys.argv[1] == "echo"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:  # a burst while this process waits for a core (a shared box) is not lost
    s.setsockopt(socket.SOL_SOCKET, 33, 1 << 24)  # SO_RCVBUFFORCE (root)
except OSError:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 24)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
recvfrom, sendto = s.recvfrom, s.sendto
while True:
    data, addr = recvfrom(4096)
    if echo:
        sendto(data, addr)
"""
HEADER = ["calls", "path", "packets/s", "CPU per packet", "floor", "ratio to floor"]
NOTES = """
Notes:
- Issue 18, measured side by side (the code before and after, alternating, 2 runs of 2 x 2 s
  each, medians; AMD EPYC, 2 cores shared with four other engineers' jobs, load average 5-7):
  at 64 calls send 28.8 -> 15.0 µs per packet, send + receive 66.7 -> 41.9 µs; at 200 calls
  send 14.3 -> 14.1 and send + receive about 31 -> 33 (no change beyond the noise, which is
  +-5 µs per run on that box). What did it: the pacer puts 32 streams on a grid point before
  it opens the next (`Pacer(batch=32)`): at 64 calls 2 wake-ups per 20 ms instead of 20, and a
  wake-up costs ~60 µs of CPU here (timer, loop turn, the kernel's context switches on a VM)
  whatever it sends: 28 µs per packet with one stream per grid point, 17 with 16, 13 with 64.
  Every RTP socket of a loop is read from one epoll callback, one datagram per ready socket
  per turn (no failing second `recvfrom` per packet, no loop callback per socket): a wash when
  datagrams come one per turn (its `poll` is a syscall per turn), a gain when they come in
  bursts (the echoes of a batch). The rest of the Python work per packet is small beside the
  syscalls: `RtpSession._on_datagram` (RTP parse, strict-source check, jitter buffer) costs
  3.7 µs without the socket; py-spy at 200 calls puts `sendto` at ~60 % of the send path and
  `recvfrom` at ~40 % of the receive path.
- The receive row is the run with the echo less the send row's cost per packet sent: it takes
  the noise of both runs. It includes the shared detector bank (256 channels: ~114 µs per
  20 ms block whatever the channels in use, 2 µs per packet at 64 calls) and the sweep.
- The journal row is the capture of what is sent (`tap_sent`: each frame decoded into an
  `AudioRing`), on every call here; the service keeps audio of 16 calls at most.
"""


def cpu() -> float:
    """This process's CPU seconds (user + system)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class FarEnd:
    """A far end in its own process: ``sink`` reads and drops, ``echo`` sends each packet back."""

    def __init__(self, mode: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", FAR_END, mode], stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        self.address = ("127.0.0.1", int(self.proc.stdout.readline()))

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


@dataclass
class Run:
    cpu: float
    sent: int
    received: int
    seconds: float


async def carry(
    pacer: Pacer,
    banks: InbandBanks,
    n: int,
    far: FarEnd,
    seconds: float,
    *,
    receive: bool = True,
    tap: bool = False,
) -> Run:
    """``n`` sessions to ``far`` for ``seconds`` (after a 1 s warm-up): CPU and packet counts.
    Without ``receive`` the sessions have no inbound stream (nothing to hear: the send path)."""
    sessions = [
        await RtpSession.open(
            pacer,
            remote=far.address,
            bank=banks.bank() if receive else None,
            receive=receive,
            strict=True,
        )
        for _ in range(n)
    ]
    try:
        if tap:
            from dtmfgraph.journal.journal import AudioRing, _sent_audio
            from dtmfgraph.rtp import Codec

            for s in sessions:
                s.tap_sent(_sent_audio(AudioRing(60.0), Codec.PCMU))
        await asyncio.sleep(1.0)

        def counts() -> tuple[int, int]:
            sent = sum(s.outbound.packets_sent for s in sessions if s.outbound is not None)
            return sent, sum(s.stats.received for s in sessions if s.stats is not None)

        sent0, got0 = counts()
        c0, t0 = cpu(), time.monotonic()
        await asyncio.sleep(seconds)
        c1, t1 = cpu(), time.monotonic()
        sent1, got1 = counts()
        return Run(c1 - c0, sent1 - sent0, got1 - got0, t1 - t0)
    finally:
        for s in sessions:
            await s.close()


def floor(n: int, far: FarEnd, packets: int) -> tuple[float, float]:
    """µs of CPU per ``sendto`` and per ``recvfrom`` in a bare loop: ``n`` sockets, the same
    172-byte RTP datagrams, to and back from the echo."""
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    stream = OutboundStream(start=0.0)
    datagram = stream.packets_due(0.0)[0]
    addr = far.address
    send_cpu = recv_cpu = 0.0
    done = 0
    try:
        while done < packets:
            c0 = cpu()
            for s in socks:
                s.sendto(datagram, addr)
            c1 = cpu()
            for s in socks:  # blocking: waiting for the echo costs no CPU
                s.recvfrom(4096)
            c2 = cpu()
            send_cpu += c1 - c0
            recv_cpu += c2 - c1
            done += n
    finally:
        for s in socks:
            s.close()
    return send_cpu / done * 1e6, recv_cpu / done * 1e6


@dataclass
class Result:
    send: float
    receive: float
    tap: float
    rate: float
    floor_send: float
    floor_receive: float


async def measure(n: int, seconds: float, repeat: int, profile: bool = False) -> Result:
    pacer = Pacer()
    banks = InbandBanks(pacer)
    sink, echo = FarEnd("sink"), FarEnd("echo")
    sends: list[float] = []
    receives: list[float] = []
    taps: list[float] = []
    floors: list[tuple[float, float]] = []
    rate = 0.0
    try:
        for _ in range(repeat):
            floors.append(floor(n, echo, max(20_000, 50 * n)))
            out = await carry(pacer, banks, n, sink, seconds, receive=False)
            send = out.cpu / out.sent * 1e6
            if profile:  # where the CPU of carrying calls both ways goes (cProfile, slowed)
                import cProfile
                import pstats

                with cProfile.Profile() as prof:
                    await carry(pacer, banks, n, echo, seconds)
                pstats.Stats(prof).sort_stats("tottime").print_stats(30)
            both = await carry(pacer, banks, n, echo, seconds)
            receive = (both.cpu - send * 1e-6 * both.sent) / max(both.received, 1) * 1e6
            tapped = await carry(pacer, banks, n, sink, seconds, receive=False, tap=True)
            sends.append(send)
            receives.append(receive)
            taps.append(tapped.cpu / tapped.sent * 1e6 - send)
            rate = out.sent / out.seconds
            print(
                f"  {n} calls: send {send:.2f} us/packet ({out.sent} sent), receive "
                f"{receive:.2f} us/packet ({both.received} of {both.sent} back), tap +"
                f"{taps[-1]:.2f}; floor sendto {floors[-1][0]:.2f}, recvfrom {floors[-1][1]:.2f}",
                flush=True,
            )
    finally:
        sink.close()
        echo.close()
        banks.close()
        pacer.close()
    return Result(
        min(sends),
        min(receives),
        min(taps),
        rate,
        min(f[0] for f in floors),
        min(f[1] for f in floors),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", default="200,1000", help="comma-separated call counts")
    parser.add_argument("--seconds", type=float, default=3.0, help="measured per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each (best is kept)")
    parser.add_argument("--loop", default="auto", choices=["auto", "asyncio", "uvloop"])
    parser.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of each run")
    args = parser.parse_args()
    loop_name = resolve(args.loop)
    runner: Callable[[Any], Any] = asyncio.run
    if loop_name == "uvloop":
        import uvloop

        runner = uvloop.run
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    rows = []
    load = os.getloadavg()
    for n in (int(c) for c in args.calls.split(",")):
        r = runner(measure(n, args.seconds, args.repeat, args.profile))
        for path, us, fl in (
            ("send: pacer → packet → `sendto`", r.send, r.floor_send),
            ("receive: `recvfrom` → parse → jitter → decode → bank", r.receive, r.floor_receive),
            ("both (one sent, one received)", r.send + r.receive, r.floor_send + r.floor_receive),
            ("journal capture of what is sent (added)", r.tap, r.floor_send),
        ):
            rows.append(
                [
                    f"{n:,}",
                    path,
                    f"{r.rate:,.0f}",
                    f"**{us:.1f} µs**",
                    f"{fl:.1f} µs",
                    f"{us / fl:.1f}x",
                ]
            )
    text = "\n".join(
        [
            "## CPU per packet on the real path (`bench/packet_path.py`)",
            "",
            f"Machine: {machine()}; event loop {loop_name}; load average "
            f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the start. Best of {args.repeat} runs "
            f"of {args.seconds:g} s; process CPU.",
            "",
            "N `RtpSession`s as a call has them (PCMU + telephone-event, strict RTP, in-band "
            "detection on a shared bank) on one pacer, carrying silence both ways over real UDP "
            "on 127.0.0.1 to a far end in another process (a sink, then an echo). The floor: a "
            "bare Python loop calling only `sendto` / `recvfrom` per packet on N sockets.",
            "",
            markdown_table(HEADER, rows),
            *NOTES.rstrip("\n").split("\n"),
        ]
    )
    print(text)
    if not args.no_write:
        write_section("packet-path", text)


if __name__ == "__main__":
    main()
