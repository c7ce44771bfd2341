"""playPrompt, recordResponse (and beta's ``record``), and the recordings they leave.

``GET /recordings/{opId}`` (outside the Graph paths, like ``/metrics``) serves a recording to
whoever presents its ``recordingAccessToken`` as ``Authorization: Bearer``: no API token. The
token is compared in constant time with the digest kept beside the audio; no token or a wrong
one: 401; a recording unknown or past its retention: 404. Every node serves every recording
(they are in the database)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from ..graph import PlayPromptBody, RecordResponseBody
from ..graph.media_models import MediaPromptModel
from ..service import PromptRequest, RecordRequest
from ..service.prompts import PromptRef
from ..service.recordings import DEFAULT_SECONDS, RecordParams, stop_keys, token_matches
from .errors import graph_error
from .openapi import request_body
from .routes import RepeatId, Svc, Who, _body, _op_response

router = APIRouter()
beta_router = APIRouter()
recordings_router = APIRouter()


def _refs(prompts: list[MediaPromptModel]) -> list[PromptRef]:
    return [PromptRef(p.media_info.uri, p.media_info.resource_id) for p in prompts]


@router.post(
    "/communications/calls/{call_id}/playPrompt",
    openapi_extra=request_body(PlayPromptBody, required=True),
)
async def play_prompt(
    call_id: str, request: Request, svc: Svc, who: Who, repeat: RepeatId = None
) -> JSONResponse:
    body, _ = await _body(request, PlayPromptBody)
    op = await svc.play_prompt(who, call_id, prompt_request(body, repeat))
    return _op_response(request, call_id, op)


def prompt_request(body: PlayPromptBody, repeat: str | None) -> PromptRequest:
    """The service's request for a validated playPrompt body (the API's and the console's)."""
    return PromptRequest(_refs(body.prompts), body.loop, body.client_context, repeat)


def record_request(body: RecordResponseBody, repeat: str | None) -> RecordRequest:
    """The service's request for a validated recordResponse body (the API's and the console's)."""
    refs = _refs(body.prompts)
    params = RecordParams(
        prompt=refs[0] if refs else None,
        barge_in=body.barge_in_allowed,
        initial_silence_s=body.initial_silence_timeout_in_seconds or DEFAULT_SECONDS,
        max_silence_s=body.max_silence_timeout_in_seconds or DEFAULT_SECONDS,
        max_duration_s=body.max_record_duration_in_seconds or DEFAULT_SECONDS,
        play_beep=body.play_beep,
        stop_tones=stop_keys(body.stop_tones),
    )
    return RecordRequest(params, body.client_context, repeat)


async def _record(
    call_id: str, request: Request, svc: Svc, who: Who, repeat: str | None
) -> JSONResponse:
    body, _ = await _body(request, RecordResponseBody)
    op = await svc.record_response(who, call_id, record_request(body, repeat))
    return _op_response(request, call_id, op)


@router.post(
    "/communications/calls/{call_id}/recordResponse",
    openapi_extra=request_body(RecordResponseBody, required=True),
)
async def record_response(
    call_id: str, request: Request, svc: Svc, who: Who, repeat: RepeatId = None
) -> JSONResponse:
    return await _record(call_id, request, svc, who, repeat)


@beta_router.post(
    "/communications/calls/{call_id}/record",
    openapi_extra=request_body(RecordResponseBody, required=True),
)
async def record(
    call_id: str, request: Request, svc: Svc, who: Who, repeat: RepeatId = None
) -> JSONResponse:
    """beta's ``call: record`` (the SDK's ``record``): recordResponse by another name."""
    return await _record(call_id, request, svc, who, repeat)


@recordings_router.get("/recordings/{op_id}")
async def recording(
    op_id: str,
    request: Request,
    svc: Svc,
) -> Response:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return graph_error(
            request,
            401,
            "unauthenticated",
            "a recording needs its recordingAccessToken as a Bearer token",
        )
    found = await svc.recording(op_id)
    if found is None or found.expires_at <= time.time():
        return graph_error(
            request, 404, "itemNotFound", f"recording {op_id} was not found (or has expired)"
        )
    if not token_matches(token.strip(), found.token_digest):
        return graph_error(
            request, 401, "unauthenticated", "the recordingAccessToken does not match"
        )
    return Response(
        found.wav,
        media_type="application/octet-stream",
        headers={
            "Cache-Control": "no-store",
            "Content-Disposition": f'attachment; filename="{op_id}.wav"',
        },
    )
