"""``dtmfgraph rtp send`` / ``listen`` as real subprocesses talking over loopback UDP."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..judges.ports import free_udp_port

_VENV_EXE = Path(sys.executable).with_name("dtmfgraph")
DTMFGRAPH = [str(_VENV_EXE)] if _VENV_EXE.exists() else [shutil.which("dtmfgraph") or "dtmfgraph"]


STARTS_WITHIN_S = 90.0
"""How long a CLI subprocess may take to start or finish: a loaded machine takes seconds just
to import; a process that hangs still fails the test, only later."""


def run(*args: str, timeout: float = STARTS_WITHIN_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DTMFGRAPH, "rtp", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


class Listener:
    """``dtmfgraph rtp listen`` in the background, ready once it says "listening on"."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [*DTMFGRAPH, "rtp", "listen", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stderr is not None
        deadline = time.monotonic() + STARTS_WITHIN_S
        self.banner = ""
        while "listening on" not in self.banner:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.proc.kill()
                _, err = self.proc.communicate()
                pytest.fail(f"listen did not start: {self.banner}{err}")
            ready, _, _ = select.select([self.proc.stderr], [], [], 0.5)
            if ready:
                self.banner += self.proc.stderr.readline()

    def finish(self, timeout: float = STARTS_WITHIN_S) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, self.banner + err


@pytest.mark.parametrize(
    ("method", "codec"), [("rfc4733", "pcmu"), ("inband", "pcmu"), ("inband", "pcma")]
)
def test_send_to_listen(method: str, codec: str) -> None:
    port = free_udp_port()
    keys = "159#*0D"
    listener = Listener(
        "--port",
        str(port),
        "--codec",
        codec,
        "--json",
        "--count",
        str(len(keys)),
        "--duration",
        "20",
    )
    sent = run("send", "--to", f"127.0.0.1:{port}", keys, "--method", method, "--codec", codec)
    assert sent.returncode == 0, sent.stderr
    assert f"sent {keys} to 127.0.0.1:{port}" in sent.stdout
    code, out, err = listener.finish()
    assert code == 0, err
    heard = [json.loads(line) for line in out.splitlines()]
    assert "".join(h["key"] for h in heard) == keys
    assert {h["method"] for h in heard} == {method}
    for h in heard:
        assert 60 <= h["duration_ms"] <= 160, h
    assert f"heard {len(keys)} keys" in err


def test_send_with_another_pt_and_ipv6() -> None:
    port = free_udp_port("::1")
    listener = Listener(
        "--host", "::1", "--port", str(port), "--pt", "96", "--count", "3", "--duration", "20"
    )
    sent = run(
        "send", "--to", f"[::1]:{port}", "A#F", "--pt", "96", "--tone-ms", "60", "--gap-ms", "60"
    )
    assert sent.returncode == 0, sent.stderr
    code, out, err = listener.finish()
    assert code == 0, err
    lines = out.splitlines()
    assert [line.split()[0] for line in lines] == ["A", "#", "F"]
    assert all(line.split()[1] == "rfc4733" for line in lines)


def test_listen_stops_on_duration_and_on_ctrl_c() -> None:
    port = free_udp_port()
    listener = Listener("--port", str(port), "--duration", "0.5")
    code, out, err = listener.finish()  # it ends by itself: no signal is sent
    assert code == 0 and out == ""
    assert "heard 0 keys" in err

    listener = Listener("--port", str(port))
    listener.proc.send_signal(signal.SIGINT)
    code, out, err = listener.finish()
    assert code == 0, err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["send", "--to", "127.0.0.1", "123"], "--to: bad address"),
        (["send", "--to", "127.0.0.1:99999", "123"], "port must be 1-65535"),
        (["send", "--to", "[::1:5004", "123"], "--to: bad address"),
        (["send", "--to", "no.such.host.invalid:5004", "123"], "cannot resolve"),
        (["send", "--to", "127.0.0.1:5004", "12X"], "unknown DTMF key"),
        (["send", "--to", "127.0.0.1:5004", ""], "empty key sequence"),
        (["send", "--to", "127.0.0.1:5004", "1F", "--method", "inband"], "cannot be sent in-band"),
        (["send", "--to", "127.0.0.1:5004", "1", "--pt", "0"], "96-127"),
        (["send", "--to", "127.0.0.1:5004", "1", "--pt", "128"], "96-127"),
        (["send", "--to", "127.0.0.1:5004", "1", "--volume", "64"], "0-63"),
        (["listen", "--port", "70000"], "0-65535"),
        (["listen", "--port", "5004", "--pt", "8"], "96-127"),
        (["listen", "--port", "5004", "--duration", "0"], "must be > 0"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    result = run(*args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and message in lines[0], lines[0]


def test_bad_tone_length_from_the_rtp_layer_is_exit_2() -> None:
    result = run("send", "--to", f"127.0.0.1:{free_udp_port()}", "1", "--tone-ms", "0")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1


def test_listen_on_a_port_in_use_is_exit_2() -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        result = run("listen", "--port", str(s.getsockname()[1]), "--duration", "1")
    assert result.returncode == 2
    assert "cannot listen on" in result.stderr


def test_help_texts() -> None:
    top = subprocess.run([*DTMFGRAPH, "--help"], capture_output=True, text=True, check=True)
    assert "rtp" in top.stdout
    group = run("--help")
    assert group.returncode == 0 and "send" in group.stdout and "listen" in group.stdout
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    send = subprocess.run(
        [*DTMFGRAPH, "rtp", "send", "--help"], capture_output=True, text=True, env=env, check=True
    )
    for word in (
        "--to",
        "HOST:PORT",
        "--method",
        "rfc4733",
        "inband",
        "--codec",
        "--tone-ms",
        "--gap-ms",
        "--pt",
    ):
        assert word in send.stdout, word
    listen = subprocess.run(
        [*DTMFGRAPH, "rtp", "listen", "--help"], capture_output=True, text=True, env=env, check=True
    )
    for word in ("--port", "--host", "--codec", "--pt", "--json", "--duration", "Ctrl-C"):
        assert word in listen.stdout, word
