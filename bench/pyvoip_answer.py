"""pyVoIP 1.6.8 answering every call and printing each RFC 2833 key it hears: the peer of
``dtmfgraph answer`` in ``bench/pyvoip.py``, written as pyVoIP's documentation shows (a call
callback that answers, then polls ``get_dtmf()`` every 100 ms while the call is up).

pyVoIP sends every SIP message to its "server" and registers there first, so the server is the
caller (sipp, on ``--server-port``): before sipp starts, this script answers pyVoIP's one
REGISTER itself on that port (200 OK) and lets the port go. It prints JSON lines as
``dtmfgraph answer --json`` does: ``ready``, then ``key`` and ``ended`` (with the keys) per call.

    .venv/bin/python bench/pyvoip_answer.py --port 5070 --server-port 5080
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import socket
import sys
import threading
import time
import warnings
from typing import Any

warnings.simplefilter("ignore", DeprecationWarning)  # audioop, imported by pyVoIP

from pyVoIP.VoIP import CallState, InvalidStateError, VoIPCall, VoIPPhone

_print_lock = threading.Lock()


def emit(**fields: Any) -> None:
    with _print_lock:
        print(json.dumps(fields), flush=True)


def answer_one_register(host: str, port: int) -> threading.Thread:
    """Bind ``host:port`` now; answer the first REGISTER with 200 OK, then close the socket."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, port))
    sock.settimeout(30)

    def serve() -> None:
        with sock:
            data, peer = sock.recvfrom(65535)
            head = data.decode(errors="replace").split("\r\n\r\n", 1)[0].split("\r\n")
            keep = ("via:", "from:", "to:", "call-id:", "cseq:", "contact:")
            lines = [h for h in head[1:] if h.lower().startswith(keep)]
            lines = [h + ";tag=bench" if h.lower().startswith("to:") else h for h in lines]
            reply = "\r\n".join(["SIP/2.0 200 OK", *lines, "Expires: 3600", "Content-Length: 0"])
            sock.sendto((reply + "\r\n\r\n").encode(), peer)

    thread = threading.Thread(target=serve, name="bench registrar", daemon=True)
    thread.start()
    return thread


def on_call(call: VoIPCall) -> None:
    try:
        call.answer()
    except InvalidStateError:
        return
    call_id = call.call_id
    keys: list[str] = []

    def take() -> None:
        while key := call.get_dtmf():
            keys.append(key)
            emit(event="key", call=call_id, key=key, method="rfc4733")

    while call.state == CallState.ANSWERED:
        take()
        time.sleep(0.1)
    take()
    emit(event="ended", call=call_id, keys="".join(keys))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="local IP (pyVoIP needs a fixed one)")
    parser.add_argument("--port", type=int, required=True, help="SIP port to listen on")
    parser.add_argument("--server-port", type=int, required=True, help="the caller's SIP port")
    parser.add_argument("--rtp-ports", default="46000-47999", help="RTP port range LOW-HIGH")
    args = parser.parse_args()
    low, high = (int(p) for p in args.rtp_ports.split("-"))
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    registrar = answer_one_register(args.host, args.server_port)
    phone = VoIPPhone(
        args.host,
        args.server_port,
        "bench",
        "bench",
        myIP=args.host,
        callCallback=on_call,
        sipPort=args.port,
        rtpPortLow=low,
        rtpPortHigh=high,
    )
    phone.start()
    registrar.join()
    emit(event="ready", uri=f"sip:bench@{args.host}:{args.port}")
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    while not done.wait(1.0):
        pass
    sys.stdout.flush()
    os._exit(0)  # phone.stop() would unregister at a caller that is gone (a 30 s wait)


if __name__ == "__main__":
    main()
