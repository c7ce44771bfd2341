"""baresip 1.0 as a real far-end phone for end-to-end tests (Debian ``baresip-core``).

One :class:`Baresip` runs one ``baresip -f <dir>`` with a config directory generated under a
test's ``tmp_path`` (facts of the Debian 1.0 build in ``docs/judges.md``), on free loopback
ports, and talks to it over ``ctrl_tcp`` (netstring-framed JSON): it collects every
event (``CALL_ESTABLISHED``, ``CALL_DTMF_START``, ``CALL_CLOSED``...) and sends commands
(``dial``, ``sndcode``, ``hangup``, ``quit``). Its stdout goes to a file (searched as bytes:
baresip writes a status line without a newline). With ``record=True`` the ``sndfile`` module
writes what the peer sent to ``<dir>/rec/dump-*-dec.wav`` (8 kHz).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dtmfgraph.tones.wav import encode_wav, parse_wav

from .certs import Issued
from .ports import free_port, free_sip_port, free_udp_run

MODULE_PATH = Path("/usr/lib/baresip/modules")
MISSING = (
    "baresip is not installed: run scripts/test, which installs the test judges "
    "(apt-get install -y --no-install-recommends baresip-core)"
)


def require_baresip() -> str:
    """The baresip executable; fails the test loudly when it is missing (never skips)."""
    exe = shutil.which("baresip")
    assert exe is not None and MODULE_PATH.is_dir(), MISSING
    return exe


def free_udp_range(size: int = 40, host: str = "127.0.0.1") -> tuple[int, int]:
    """A run of ``size`` UDP ports that are all free now (baresip picks its RTP port in it)."""
    first = free_udp_run(size, 42000, 60000, host)
    return first, first + size - 1


def silent_wav(path: Path, seconds: float) -> Path:
    path.write_bytes(encode_wav(np.zeros(int(8000 * seconds), dtype=np.int16), 8000))
    return path


class BaresipStartError(RuntimeError):
    """baresip exited before it was ready."""


@dataclass
class BaresipEvent:
    type: str
    param: str
    data: dict[str, Any]
    at: float


@dataclass
class Baresip:
    """One running baresip. Use ``async with Baresip(tmp_path / "bs") as bs:``.

    ``codecs``: the account's ``audio_codecs`` (e.g. ``"PCMA"``). ``source``: a WAV it plays
    as its microphone (default: 60 s of silence; when the file ends, a call it placed hangs
    up). ``answer``: auto-answer incoming calls.
    """

    workdir: Path
    codecs: str = "PCMU"
    user: str = "alice"
    record: bool = False
    source: Path | None = None
    answer: bool = True
    registrar: str | None = None
    """``host:port`` of a registrar to register ``user`` at (with ``password``), which also
    becomes the domain of the calls it places; ``None``: no account server."""
    password: str | None = None
    tls: Issued | None = None
    """Its certificate and key: it then also takes SIP over TLS, on ``sip_port + 1``."""
    ca_file: Path | None = None
    """The CA it checks TLS peers' certificates against."""
    mediaenc: str | None = None
    """Its account's media encryption: ``srtp`` (SDES offered in RTP/AVP, best effort) or
    ``srtp-mand`` (RTP/SAVP, SRTP required); ``None``: plain RTP."""
    sip_port: int = 0
    ctrl_port: int = 0
    events: list[BaresipEvent] = field(default_factory=list)
    _proc: subprocess.Popen[bytes] | None = None
    _reader: asyncio.StreamReader | None = None
    _writer: asyncio.StreamWriter | None = None
    _task: asyncio.Task[None] | None = None
    _responses: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    _changed: asyncio.Event | None = None
    _tokens: Any = field(default_factory=lambda: itertools.count(1))

    # -- files ---------------------------------------------------------------------------------
    @property
    def uri(self) -> str:
        return f"sip:{self.user}@127.0.0.1:{self.sip_port}"

    @property
    def tls_uri(self) -> str:
        """Its URI over TLS (baresip listens for TLS on the port after its SIP port)."""
        return f"sip:{self.user}@127.0.0.1:{self.sip_port + 1};transport=tls"

    @property
    def rec_dir(self) -> Path:
        return self.workdir / "rec"

    @property
    def stdout_path(self) -> Path:
        return self.workdir / "stdout.txt"

    def stdout(self) -> bytes:
        """Everything baresip printed so far (bytes: its status line has no newline)."""
        return self.stdout_path.read_bytes() if self.stdout_path.exists() else b""

    def recordings(self) -> list[Path]:
        """The ``dump-*-dec.wav`` files: decoded audio received from the peer."""
        return sorted(self.rec_dir.glob("dump-*-dec.wav"))

    def recorded_audio(self) -> np.ndarray[Any, np.dtype[np.int16]]:
        """The audio received from the peer in the (only) call, as 8 kHz int16 samples."""
        files = self.recordings()
        assert len(files) == 1, f"expected one baresip recording, found {files}"
        wav = parse_wav(files[0].read_bytes())
        assert wav.rate == 8000, f"baresip recorded at {wav.rate} Hz"
        return np.asarray(wav.samples, dtype=np.int16).reshape(-1)

    def _write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.rec_dir.mkdir(exist_ok=True)
        source = self.source or silent_wav(self.workdir / "silence.wav", 60.0)
        first, last = free_udp_range()
        lines = [
            "poll_method epoll",
            f"sip_listen 127.0.0.1:{self.sip_port}",
            "net_interface 127.0.0.1",
            "audio_player aubridge,nil",
            f"audio_source aufile,{source}",
            "audio_alert aubridge,nil",
            f"rtp_ports {first}-{last}",
            "jitter_buffer_delay 0-0",
            f"module_path {MODULE_PATH}",
            "module g711.so",
            "module aufile.so",
            "module aubridge.so",
        ]
        if self.mediaenc is not None:
            lines.append("module srtp.so")
        if self.tls is not None:
            lines.append(f"sip_certificate {self.tls.combined}")
        if self.ca_file is not None:
            lines.append(f"sip_cafile {self.ca_file}")
        if self.record:
            lines += ["module sndfile.so", f"snd_path {self.rec_dir}"]
        lines += [
            "module_tmp account.so",
            "module_app menu.so",
            "module_app ctrl_tcp.so",
            f"ctrl_tcp_listen 127.0.0.1:{self.ctrl_port}",
        ]
        (self.workdir / "config").write_text("\n".join(lines) + "\n")
        mode = ";answermode=auto" if self.answer else ""
        secret = f";auth_pass={self.password}" if self.password is not None else ""
        if self.registrar is None:  # a password still answers the challenges of calls it makes
            account = f"<sip:{self.user}@127.0.0.1:{self.sip_port}>{secret};regint=0{mode}"
        else:
            account = f"<sip:{self.user}@{self.registrar}>{secret};regint=600{mode}"
        if self.mediaenc is not None:
            account += f";mediaenc={self.mediaenc}"
        (self.workdir / "accounts").write_text(f"{account};audio_codecs={self.codecs}\n")

    # -- lifetime ------------------------------------------------------------------------------
    async def start(self, timeout: float = 10.0) -> None:
        """Start baresip; with ports picked here, retry on fresh ports if it dies at start (a
        port found free can be taken by another process before baresip binds it)."""
        auto_ports = not (self.sip_port or self.ctrl_port)
        for attempt in range(3):
            try:
                await self._start_once(timeout)
                return
            except BaresipStartError:
                if not auto_ports or attempt == 2:
                    raise
                self.sip_port = self.ctrl_port = 0

    async def _start_once(self, timeout: float) -> None:
        exe = require_baresip()
        self.sip_port = self.sip_port or free_sip_port(tls_next=self.tls is not None)
        self.ctrl_port = self.ctrl_port or free_port(socket.SOCK_STREAM)
        self._write_config()
        self._changed = asyncio.Event()
        out = self.stdout_path.open("wb")
        self._proc = subprocess.Popen(
            [exe, "-f", str(self.workdir)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise BaresipStartError(
                    f"baresip exited at start:\n{self.stdout().decode(errors='replace')}"
                )
            try:
                self._reader, self._writer = await asyncio.open_connection(
                    "127.0.0.1", self.ctrl_port
                )
                break
            except OSError:
                if time.monotonic() > deadline:
                    await self.stop()
                    raise RuntimeError("baresip's ctrl_tcp did not come up") from None
                await asyncio.sleep(0.05)
        self._task = asyncio.create_task(self._read())
        while b"baresip is ready" not in self.stdout():
            if time.monotonic() > deadline:
                raise RuntimeError("baresip did not say it was ready")
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        """``quit`` over ctrl_tcp, then wait; SIGKILL if it does not go within 3 s."""
        proc = self._proc
        if proc is not None and proc.poll() is None and self._writer is not None:
            with contextlib.suppress(Exception):
                self._send({"command": "quit", "params": "", "token": "quit"})
                await self._writer.drain()
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        if proc is not None:
            deadline = time.monotonic() + 3.0
            while proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self._proc = None

    async def __aenter__(self) -> Baresip:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- ctrl_tcp ------------------------------------------------------------------------------
    def _send(self, message: dict[str, Any]) -> None:
        assert self._writer is not None
        data = json.dumps(message).encode()
        self._writer.write(b"%d:%s," % (len(data), data))

    async def command(self, command: str, params: str = "", timeout: float = 5.0) -> dict[str, Any]:
        """Send a ctrl_tcp command and return its response."""
        token = f"t{next(self._tokens)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._responses[token] = future
        self._send({"command": command, "params": params, "token": token})
        assert self._writer is not None
        await self._writer.drain()
        return await asyncio.wait_for(future, timeout)

    async def _read(self) -> None:
        assert self._reader is not None
        buf = b""
        while True:
            data = await self._reader.read(65536)
            if not data:
                return
            buf += data
            while True:
                head, sep, rest = buf.partition(b":")
                if not sep or not head.isdigit():
                    break
                n = int(head)
                if len(rest) < n + 1:
                    break
                self._on_message(json.loads(rest[:n]))
                buf = rest[n + 1 :]

    def _on_message(self, message: dict[str, Any]) -> None:
        if message.get("event"):
            self.events.append(
                BaresipEvent(
                    str(message.get("type", "")),
                    str(message.get("param", "")),
                    message,
                    time.monotonic(),
                )
            )
            assert self._changed is not None
            self._changed.set()
        elif message.get("response"):
            future = self._responses.pop(str(message.get("token", "")), None)
            if future is not None and not future.done():
                future.set_result(message)

    async def wait_for(
        self,
        predicate: Callable[[Baresip], bool],
        timeout: float = 10.0,
        what: str = "condition",
    ) -> None:
        """Until ``predicate(self)`` holds (checked on every event); ``AssertionError`` on
        timeout, with the events seen."""
        assert self._changed is not None
        deadline = time.monotonic() + timeout
        while not predicate(self):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = [(e.type, e.param) for e in self.events]
                raise AssertionError(f"baresip: timed out waiting for {what}; events: {seen}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.1))

    async def wait_event(self, type_: str, timeout: float = 10.0, count: int = 1) -> BaresipEvent:
        """The ``count``-th event of ``type_`` (waiting for it)."""
        await self.wait_for(lambda b: len(b.of_type(type_)) >= count, timeout, type_)
        return self.of_type(type_)[count - 1]

    def of_type(self, type_: str) -> list[BaresipEvent]:
        return [e for e in self.events if e.type == type_]

    def dtmf_starts(self) -> str:
        """The keys of every ``CALL_DTMF_START`` (RFC 4733 and SIP INFO alike), in order."""
        return "".join(e.param for e in self.of_type("CALL_DTMF_START"))

    def rfc4733_keys(self) -> str:
        """Keys baresip printed as RFC 4733 events that ended (``received event: 'K' (end=1)``)."""
        out = self.stdout()
        return "".join(
            chr(out[i + len(b"received event: '")])
            for i in _find_all(out, b"received event: '")
            if out[i : i + 40].find(b"(end=1)") > 0
        )

    def info_keys(self) -> str:
        """Keys baresip printed as SIP INFO DTMF (``call: received DTMF: 'K'``)."""
        out = self.stdout()
        marker = b"received DTMF: '"
        return "".join(chr(out[i + len(marker)]) for i in _find_all(out, marker))

    # -- actions -------------------------------------------------------------------------------
    async def dial(self, uri: str) -> dict[str, Any]:
        return await self.command("dial", uri)

    async def sndcode(self, key: str) -> dict[str, Any]:
        """Press one key (baresip sends it as RFC 4733 events)."""
        return await self.command("sndcode", key)

    async def hangup(self) -> dict[str, Any]:
        return await self.command("hangup")


def _find_all(data: bytes, needle: bytes) -> list[int]:
    out: list[int] = []
    i = data.find(needle)
    while i >= 0:
        out.append(i)
        i = data.find(needle, i + 1)
    return out
