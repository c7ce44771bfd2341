"""Audio for the prompt and recording tests: espeak-ng speech, markers, a prompt web server with
hostile routes, and the checks (correlation, lag) a listener would make."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from dtmfgraph.tones import ulaw_decode, ulaw_encode
from dtmfgraph.tones.resample import prepare
from dtmfgraph.tones.wav import encode_wav, parse_wav

from .harness import free_port, serve_in_task, stop

I16 = np.ndarray


def espeak_wav(text: str, path: Path, rate: int = 16000) -> bytes:
    """``text`` spoken by espeak-ng (installed by scripts/test), resampled to ``rate`` 16-bit mono:
    the kind of WAV Graph documents for prompts (16 kHz mono 16-bit)."""
    exe = shutil.which("espeak-ng")
    assert exe is not None, "espeak-ng is missing: run scripts/test (it installs espeak-ng)"
    raw = path.with_suffix(".raw.wav")
    subprocess.run([exe, "-w", str(raw), "-s", "160", text], check=True, capture_output=True)
    wav = parse_wav(raw.read_bytes())
    samples = prepare(wav, rate)
    data = encode_wav(samples, rate)
    path.write_bytes(data)
    return data


def tone(hz: float, seconds: float, rate: int = 16000, dbfs: float = -10.0) -> I16:
    t = np.arange(round(rate * seconds)) / rate
    return np.rint(32767 * 10 ** (dbfs / 20) * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def speech_with_marker(text: str, path: Path) -> tuple[bytes, I16]:
    """espeak-ng speech followed by a 300 ms 1 kHz marker, as a 16 kHz WAV; and the audio at
    8 kHz as the service will send it (for correlation)."""
    speech = parse_wav(espeak_wav(text, path.with_name("speech.wav"))).samples[0]
    both = np.concatenate([speech, np.zeros(1600, np.int16), tone(1000, 0.3)])
    data = encode_wav(both, 16000)
    path.write_bytes(data)
    return data, prepare(parse_wav(data), 8000)


def g711(x: I16) -> I16:
    """``x`` after a trip through G.711 µ-law."""
    return ulaw_decode(ulaw_encode(x))


def best_lag(signal: I16, reference: I16) -> tuple[int, float]:
    """Where ``reference`` sits in ``signal`` (sample offset) and the normalised correlation
    there (1.0: identical shape)."""
    s = signal.astype(np.float64)
    r = reference.astype(np.float64)
    n = len(s) + len(r)
    size = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(s, size) * np.conj(np.fft.rfft(r, size)), size)[: len(s)]
    lag = int(np.argmax(corr))
    window = s[lag : lag + len(r)]
    if len(window) < len(r):
        window = np.concatenate([window, np.zeros(len(r) - len(window))])
    denom = np.sqrt(np.sum(window**2) * np.sum(r**2))
    return lag, float(np.sum(window * r) / denom) if denom else 0.0


def wav_samples(data: bytes) -> I16:
    wav = parse_wav(data)
    assert wav.rate == 8000 and wav.channels == 1, (wav.rate, wav.channels)
    return np.asarray(wav.samples[0], dtype=np.int16)


@dataclass
class PromptServer:
    """A real HTTP server for prompts: ``/p/{name}`` serves ``files[name]``; and hostile routes:
    ``/slow`` trickles a byte a second, ``/huge`` claims 10 GB, ``/endless`` streams without a
    length, ``/loop`` redirects to itself, ``/status/{n}`` answers ``n``."""

    files: dict[str, bytes] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    hits: dict[str, int] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, name: str) -> str:
        return f"{self.base}/p/{name}"

    async def _file(self, request: Request) -> Response:
        name = request.path_params["name"]
        self.hits[name] = self.hits.get(name, 0) + 1
        if name not in self.files:
            return Response(status_code=404)
        return Response(self.files[name], media_type="audio/wav")

    @staticmethod
    async def _slow(request: Request) -> Response:
        async def trickle() -> AsyncIterator[bytes]:
            yield b"RIFF"
            for _ in range(600):
                await asyncio.sleep(1.0)
                yield b"\0"

        return StreamingResponse(trickle(), media_type="audio/wav")

    @staticmethod
    async def _huge(request: Request) -> Response:
        async def zeros() -> AsyncIterator[bytes]:
            for _ in range(1000):
                yield b"\0" * 65536
                await asyncio.sleep(0)

        headers = {"content-length": str(10 * 1024**3)}
        return StreamingResponse(zeros(), media_type="audio/wav", headers=headers)

    @staticmethod
    async def _endless(request: Request) -> Response:
        async def zeros() -> AsyncIterator[bytes]:
            while True:
                yield b"\0" * 65536
                await asyncio.sleep(0)

        return StreamingResponse(zeros(), media_type="audio/wav")

    @staticmethod
    async def _loop(request: Request) -> Response:
        return RedirectResponse("/loop", status_code=302)

    @staticmethod
    async def _status(request: Request) -> Response:
        return Response(status_code=int(request.path_params["n"]))

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/p/{name}", self._file),
                Route("/slow", self._slow),
                Route("/huge", self._huge),
                Route("/endless", self._endless),
                Route("/loop", self._loop),
                Route("/status/{n:int}", self._status),
            ]
        )

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[PromptServer]:
        server, task = await serve_in_task(self.app(), self.port)
        try:
            yield self
        finally:
            await stop(server, task)


def media_prompt(version: str, uri: str, resource_id: str | None = None) -> Any:
    """An SDK ``MediaPrompt`` for ``uri``."""
    from .sdkhelp import sdk_mod

    info = sdk_mod(version, "models.media_info").MediaInfo(uri=uri, resource_id=resource_id)
    return sdk_mod(version, "models.media_prompt").MediaPrompt(media_info=info)


def play_prompt_body(version: str, *uris: str, client_context: str | None = None) -> Any:
    from .sdkhelp import sdk_mod

    body = sdk_mod(
        version, "communications.calls.item.play_prompt.play_prompt_post_request_body"
    ).PlayPromptPostRequestBody()
    body.prompts = [media_prompt(version, u) for u in uris]
    body.client_context = client_context
    return body


def record_body(version: str, prompt: str | None = None, **fields: Any) -> Any:
    """An SDK ``RecordResponsePostRequestBody`` (snake_case ``fields``)."""
    from .sdkhelp import sdk_mod

    body = sdk_mod(
        version, "communications.calls.item.record_response.record_response_post_request_body"
    ).RecordResponsePostRequestBody()
    if prompt is not None:
        body.prompts = [media_prompt(version, prompt)]
    for name, value in fields.items():
        setattr(body, name, value)
    return body
