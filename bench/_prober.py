"""A low-rate API prober, in a process of its own: how long one request takes while the service
carries or sends (``bench/capacity.py`` runs it beside its own heavy traffic).

Every ``--every`` seconds it sends one request on one kept-alive connection (standard library
``http.client``, so its own cost is a fraction of a millisecond and nothing else runs in this
process): a ``GET`` of ``--get`` (a call), and every ``--send-each``-th time instead a one-tone
``sendDtmfTones`` on ``--send`` (a call of its own, so its keys are nobody's sequence). It writes
one line per request to ``--out``: ``monotonic_start kind milliseconds status`` (``time.monotonic``
is the system's one monotonic clock, so the bench compares it with its own windows). It stops on
SIGTERM or SIGINT. One request at a time on a fixed schedule: a slow answer delays the next probe
(the ticks it overran are skipped, not sent late in a burst), so the rate stays low whatever
happens.
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import time
from collections import defaultdict
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

SEND_BODY = json.dumps({"tones": ["tone1"], "clientContext": "probe"}).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--base", required=True, help="http://HOST:PORT/v1.0/communications/calls")
    parser.add_argument("--get", required=True, help="the call id to GET")
    parser.add_argument("--send", help="the call id to send one tone to now and then")
    parser.add_argument("--every", type=float, default=0.05, help="seconds between probes")
    parser.add_argument("--send-each", type=int, default=10, help="every Nth probe is a send")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    url = urlsplit(args.base)
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
    n = 0
    next_at = time.monotonic()
    with args.out.open("w", buffering=1) as out:
        while not stopping:
            n += 1
            send = args.send is not None and n % args.send_each == 0
            t0 = time.monotonic()
            try:
                if send:
                    conn.request(
                        "POST",
                        f"{url.path}/{args.send}/sendDtmfTones",
                        SEND_BODY,
                        {"Content-Type": "application/json"},
                    )
                else:
                    conn.request("GET", f"{url.path}/{args.get}")
                resp = conn.getresponse()
                resp.read()
                status = resp.status
            except (OSError, http.client.HTTPException):
                conn.close()  # reconnects on the next request
                status = 0
            ms = (time.monotonic() - t0) * 1000.0
            out.write(f"{t0:.6f} {'send' if send else 'get'} {ms:.3f} {status}\n")
            next_at += args.every
            now = time.monotonic()
            if next_at < now:  # overran: skip the missed ticks
                next_at = now + args.every
            time.sleep(next_at - now)


def probe_latencies(path: Path, windows: dict[str, tuple[float, float]]) -> dict[str, list[float]]:
    """The prober's latencies (ms) of the requests it started in each window, by kind
    (``carrying get``, ``sending send``...); a failed request (status 0 or not 2xx) counts as
    taking as long as it did, and is also counted under ``... failed``."""
    out: dict[str, list[float]] = defaultdict(list)
    if not path.exists():
        return {}
    for line in path.read_text().splitlines():
        t, kind, ms, status = line.split()
        for name, (a, b) in windows.items():
            if a <= float(t) < b:
                out[f"{name} {kind}"].append(float(ms))
                if not 200 <= int(status) < 300:
                    out[f"{name} {kind} failed"].append(float(ms))
    return dict(out)


def probe_line(probe: dict[str, list[float]]) -> str:
    """The prober's figures of a step, one window and kind after another."""

    def one(name: str, xs: list[float]) -> str:
        if name.endswith("failed"):
            return f"{name} {len(xs)}"
        p50, p99 = np.percentile(xs, [50, 99])
        return f"{name} n={len(xs)} p50 {p50:.1f} p99 {p99:.1f} max {max(xs):.1f} ms"

    return "; ".join(one(k, v) for k, v in sorted(probe.items()) if v) or "no probes"


if __name__ == "__main__":
    main()
