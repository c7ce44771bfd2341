"""``/_loopback/...``: controls of the simulated far end (only with ``--media loopback``).

Development and test aid, not part of Graph: list calls and what they heard, make the far end
hang up, press keys, hold or resume, speak a WAV (``/play``, the body is the file), stop or start
sending audio, fetch what the bot played to it (``/played``, a WAV), and place an incoming
call."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from ..service import InvalidRequestError, LoopbackMedia, NotFoundError
from ..service.loopback import LoopbackCall
from ..tones.resample import PromptAudioError, prepare
from ..tones.wav import WavError, encode_wav, parse_wav

WAV_MAX = 10 * 1024 * 1024


class _Press(BaseModel):
    keys: str
    method: str = "rfc4733"


class _Incoming(BaseModel):
    caller: str = "+14255550100"
    callee: str = "sip:bot@127.0.0.1"


def _media(request: Request) -> LoopbackMedia:
    media: LoopbackMedia = request.app.state.media
    return media


def _call(request: Request, index: int) -> LoopbackCall:
    """The simulated far end of call ``index`` (in ``GET /_loopback/calls``); 404 otherwise."""
    calls = _media(request).calls
    if not 0 <= index < len(calls):
        raise NotFoundError(f"no loopback call {index} (there are {len(calls)})")
    return calls[index]


router = APIRouter(prefix="/_loopback")


@router.get("/calls")
async def calls(request: Request) -> list[dict[str, Any]]:
    return [
        {
            "index": i,
            "remote": c.remote,
            "heard": c.heard_keys,
            "methods": sorted({m for _, m in c.heard}),
            "ended": c.ended.done(),
        }
        for i, c in enumerate(_media(request).calls)
    ]


@router.post("/calls/{index}/hangup")
async def hangup(index: int, request: Request) -> dict[str, str]:
    _call(request, index).remote_hangup()
    return {"result": "ok"}


@router.post("/calls/{index}/press")
async def press(index: int, body: _Press, request: Request) -> dict[str, str]:
    _call(request, index).press(body.keys, body.method)
    return {"result": "ok"}


@router.post("/calls/{index}/hold")
async def hold(index: int, request: Request) -> dict[str, str]:
    _call(request, index).hold(True)
    return {"result": "ok"}


@router.post("/calls/{index}/resume")
async def resume(index: int, request: Request) -> dict[str, str]:
    _call(request, index).hold(False)
    return {"result": "ok"}


@router.post("/calls/{index}/play")
async def play(index: int, request: Request) -> dict[str, Any]:
    """The far end says the WAV file in the body (any PCM rate; at most 10 MiB, 300 s)."""
    data = await request.body()
    if len(data) > WAV_MAX:
        raise InvalidRequestError(f"the WAV file is over {WAV_MAX} bytes")
    try:
        samples = prepare(parse_wav(data), 8000, max_seconds=300)
    except (WavError, PromptAudioError) as exc:
        raise InvalidRequestError(f"the body is not a WAV file we can play: {exc}") from None
    _call(request, index).speak(samples)
    return {"result": "ok", "seconds": round(len(samples) / 8000, 3)}


@router.get("/calls/{index}/played")
async def played(index: int, request: Request) -> Response:
    """What the bot played to the far end (8 kHz 16-bit mono WAV)."""
    audio = _call(request, index).played_audio
    return Response(encode_wav(audio, 8000), media_type="audio/wav")


@router.post("/calls/{index}/stop-audio")
async def stop_audio(index: int, request: Request) -> dict[str, str]:
    """The far end stops sending audio at all (``/start-audio`` resumes)."""
    _call(request, index).stop_media(True)
    return {"result": "ok"}


@router.post("/calls/{index}/start-audio")
async def start_audio(index: int, request: Request) -> dict[str, str]:
    _call(request, index).stop_media(False)
    return {"result": "ok"}


@router.post("/incoming")
async def incoming(body: _Incoming, request: Request) -> dict[str, str]:
    await _media(request).incoming(body.caller, body.callee)
    return {"result": "ok"}
