"""SRTP cost: dtmfgraph's protect/unprotect against Cisco's libsrtp 2 (ctypes), one core.

Both sides handle the same 20 ms PCMU packets (12-byte header, 160-byte payload) and RFC 4733
event packets (4-byte payload) of one stream, AES_CM_128_HMAC_SHA1_80, after a warm-up; libsrtp
is driven through ctypes one packet per call, as our Python would have to call it (its own C
loop would be faster still). Ratio = libsrtp time / ours (higher is better for us). The table
goes into docs/benchmarks.md with the machine.

    .venv/bin/python bench/srtp.py [--packets 50000]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tests.judges.libsrtp import LibSrtp

from _report import machine, markdown_table, write_section
from dtmfgraph.rtp import RtpPacket
from dtmfgraph.rtp.srtp import SrtpContext, SrtpKey


def _best(run: Callable[[], object], repeats: int = 5) -> float:
    """The shortest of ``repeats`` runs, in seconds of process CPU time."""
    best = float("inf")
    for _ in range(repeats):
        began = time.process_time()
        run()
        best = min(best, time.process_time() - began)
    return best


def _rows(name: str, key: SrtpKey, packets: list[bytes]) -> list[list[str]]:
    """The protect and unprotect rows of one kind of packet."""
    n = len(packets)
    material = key.master_key + key.master_salt
    sealer = SrtpContext(key)
    sealed = [sealer.protect(p) for p in packets]

    def ours_protect() -> None:
        context = SrtpContext(key)
        for p in packets:
            context.protect(p)

    def theirs_protect() -> None:
        session = LibSrtp(material, outbound=True)
        for p in packets:
            session.protect(p)
        session.close()

    def ours_unprotect() -> None:
        context = SrtpContext(key)
        for p in sealed:
            context.unprotect(p)

    def theirs_unprotect() -> None:
        session = LibSrtp(material, outbound=False)
        for p in sealed:
            session.unprotect(p)
        session.close()

    rows = []
    for op, ours, theirs in (
        ("protect", ours_protect, theirs_protect),
        ("unprotect", ours_unprotect, theirs_unprotect),
    ):
        a, b = _best(ours) / n, _best(theirs) / n
        rows.append(
            [
                name,
                op,
                f"{a * 1e6:.2f}",
                f"{b * 1e6:.2f}",
                f"{1 / a / 50:,.0f}",
                f"**{b / a:.2f}x**",
            ]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=50_000)
    args = parser.parse_args()
    n = args.packets
    key = SrtpKey.generate()
    rows = []
    for name, payload, pt in (
        ("PCMU 20 ms", b"\xd5" * 160, 0),
        ("RFC 4733", b"\x05\x0a\x00\xa0", 101),
    ):
        packets = [
            RtpPacket(pt, i & 0xFFFF, 160 * i, 0x1234, payload).serialize() for i in range(n)
        ]
        rows += _rows(name, key, packets)
    header = [
        "packet",
        "operation",
        "ours µs",
        "libsrtp (ctypes) µs",
        "ours streams/core",
        "ours/libsrtp",
    ]
    table = markdown_table(header, rows)
    print(table)
    body = f"""## SRTP cost: dtmfgraph vs libsrtp (`bench/srtp.py`)

Machine: {machine()}; one core; process CPU time, best of 5 runs of {n:,} packets of one stream;
AES_CM_128_HMAC_SHA1_80. libsrtp 2 through ctypes, one call per packet. "streams/core": 50
packets per second per stream, one direction.

{table}

Ours is Python around OpenSSL (through `cryptography`): the counter blocks of a packet are
encrypted in one ECB call and XORed onto the payload, the HMAC state is copied from a keyed
template. libsrtp's C core is faster per packet; called from Python one packet at a time, the
ctypes call takes back much of that. Either way a call's SRTP costs well under 0.1 % of a core
each way."""
    write_section("srtp", body)


if __name__ == "__main__":
    main()
