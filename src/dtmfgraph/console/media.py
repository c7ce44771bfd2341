"""The dev phone's media actions: play a prompt, record a response, and hear the recording.

``POST /console/api/calls/{id}/playPrompt`` and ``.../recordResponse`` take the Graph bodies of
the same actions and go through the same models and service calls as the Graph API.
``GET /console/api/calls/{id}/recordings/{opId}`` plays a recording back in the page (the
console's login instead of the recordingAccessToken; only a recording of that call). The sample
prompt ``/console/prompts/chime.wav`` needs no login: the service's prompt fetcher reads it over
loopback like any prompt URL, so the dev phone can play something without a file of one's own."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable
from typing import Final

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from ..api.media_routes import prompt_request, record_request
from ..graph import PlayPromptBody, RecordResponseBody
from ..service import NotFoundError, Operation
from ..tones.resample import edge_fade
from ..tones.wav import encode_wav
from .api import service_error, start_operation
from .state import ConsoleError, CsrfSession, ServiceDep, SessionDep

router = APIRouter(include_in_schema=False)

CHIME_RATE: Final = 16000
"""The sample prompt is what Graph documents for prompts: 16 kHz mono 16-bit PCM WAV."""
CHIME_NOTES: Final = ((659.25, 0.25), (880.0, 0.25), (1318.5, 0.5))
"""E5, A5, E6: three short notes, well away from the DTMF groups' pairs."""


@functools.cache
def chime_wav() -> bytes:
    """The sample prompt: three notes at -12 dBFS peak, each with faded edges (no clicks)."""
    parts = []
    for hz, seconds in CHIME_NOTES:
        n = round(CHIME_RATE * seconds)
        note = 32767.0 * 10 ** (-12 / 20) * np.sin(2 * np.pi * hz * np.arange(n) / CHIME_RATE)
        edge_fade(note, CHIME_RATE)
        parts.append(note)
    return encode_wav(np.rint(np.concatenate(parts)).astype(np.int16), CHIME_RATE)


@router.get("/console/prompts/chime.wav")
async def chime() -> Response:
    return Response(chime_wav(), media_type="audio/wav", headers={"Cache-Control": "max-age=3600"})


@router.post("/console/api/calls/{call_id}/playPrompt")
async def play_prompt(
    call_id: str, request: Request, session: CsrfSession, svc: ServiceDep
) -> JSONResponse:
    """The dev phone's prompt: the body of Graph ``playPrompt``."""

    def play(body: PlayPromptBody) -> Awaitable[Operation]:
        return svc.play_prompt(session.principal, call_id, prompt_request(body, None))

    return await start_operation(request, PlayPromptBody, play)


@router.post("/console/api/calls/{call_id}/recordResponse")
async def record_response(
    call_id: str, request: Request, session: CsrfSession, svc: ServiceDep
) -> JSONResponse:
    """The dev phone's recorder: the body of Graph ``recordResponse``."""

    def record(body: RecordResponseBody) -> Awaitable[Operation]:
        return svc.record_response(session.principal, call_id, record_request(body, None))

    return await start_operation(request, RecordResponseBody, record)


@router.get("/console/api/calls/{call_id}/recordings/{op_id}")
async def recording(call_id: str, op_id: str, session: SessionDep, svc: ServiceDep) -> Response:
    """A recording of this call, to play in the page (404 for another app's call)."""
    try:
        await svc.get_call(session.principal, call_id)
    except NotFoundError as exc:
        raise service_error(exc) from None
    found = await svc.recording(op_id)
    if found is None or found.call_id != call_id or found.expires_at <= time.time():
        raise ConsoleError(404, f"recording {op_id} was not found (or has expired)")
    return Response(found.wav, media_type="audio/wav", headers={"Cache-Control": "no-store"})


__all__ = ["chime_wav", "router"]
