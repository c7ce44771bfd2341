"""The Graph routes (mounted under ``/v1.0`` and ``/beta``)."""

from __future__ import annotations

import re
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.responses import JSONResponse

from ..graph import (
    AnswerBody,
    CancelMediaProcessingBody,
    CreateCallBody,
    RejectBody,
    SendDtmfTonesBody,
    SubscribeToToneBody,
    WireModel,
)
from ..notify import call_resource, operation_resource
from ..service import (
    CallService,
    DtmfMethod,
    DtmfRequest,
    InvalidRequestError,
    NewCall,
    Operation,
    Principal,
)
from .auth import Authenticator
from .body import parse_object
from .openapi import request_body

M = TypeVar("M", bound=WireModel)


# The dependencies are ``async def``: FastAPI runs a plain ``def`` one in a worker thread (a
# thread hop per dependency per request); these do nothing that blocks.
async def _service(request: Request) -> CallService:
    svc: CallService = request.app.state.service
    return svc


async def _principal(request: Request) -> Principal:
    """The caller of ``request``, from its ``Authorization`` header (read here rather than as
    a FastAPI header parameter: ``/openapi.json`` declares it as the bearer security scheme)."""
    auth: Authenticator = request.app.state.authenticator
    return auth.principal(request.headers.get("authorization"))


Svc = Annotated[CallService, Depends(_service)]
Who = Annotated[Principal, Depends(_principal)]
REPEAT_HEADER = "Repeatability-Request-ID"
REPEAT_MAX = 128
"""Longest ``Repeatability-Request-ID`` taken (a UUID is 36 characters)."""
_REPEAT_OK = re.compile(rf"[\x21-\x7e]{{1,{REPEAT_MAX}}}")


async def _repeat_id(
    value: Annotated[
        str | None,
        Header(
            alias=REPEAT_HEADER,
            json_schema_extra={"minLength": 1, "maxLength": REPEAT_MAX, "pattern": "^[!-~]+$"},
        ),
    ] = None,
) -> str | None:
    """The ``Repeatability-Request-ID`` of a request: absent, or 1 to 128 visible ASCII
    characters (an empty, over-long or otherwise odd key is a 400 naming the header)."""
    if value is None:
        return None
    if not _REPEAT_OK.fullmatch(value):
        why = (
            "is empty"
            if not value
            else f"is {len(value)} characters long; at most {REPEAT_MAX} are allowed"
            if len(value) > REPEAT_MAX
            else "may hold only visible ASCII characters (no spaces or control characters)"
        )
        raise InvalidRequestError(f"{REPEAT_HEADER}: the header {why}")
    return value


RepeatId = Annotated[str | None, Depends(_repeat_id)]


async def _json(request: Request) -> dict[str, Any]:
    return parse_object(await request.body())


async def _body(request: Request, model: type[M]) -> tuple[M, dict[str, Any]]:
    data = await _json(request)
    return model.model_validate(data), data


def _base(request: Request) -> str:
    version = request.scope["path"].split("/")[1]  # (request.url would parse the whole URL)
    return f"{request.app.state.base_url}/{version}"


def _op_response(request: Request, call_id: str, op: Operation) -> JSONResponse:
    loc = f"{_base(request)}/communications/calls/{call_id}/operations/{op.id}"
    return JSONResponse(operation_resource(op), status_code=200, headers={"Location": loc})


router = APIRouter()


@router.post(
    "/communications/calls",
    status_code=201,
    openapi_extra=request_body(CreateCallBody, required=True),
)
async def create_call(request: Request, svc: Svc, who: Who) -> JSONResponse:
    body, raw = await _body(request, CreateCallBody)
    call = await svc.create_call(
        who,
        NewCall(
            callback_uri=body.callback_uri,
            targets=body.targets,
            tenant_id=body.tenant_id,
            properties=raw,
        ),
    )
    base = _base(request)
    out = {"@odata.context": f"{base}/$metadata#communications/calls/$entity"}
    out.update(call_resource(call))
    return JSONResponse(
        out, status_code=201, headers={"Location": f"{base}/communications/calls/{call.id}"}
    )


@router.get("/communications/calls/{call_id}")
async def get_call(call_id: str, request: Request, svc: Svc, who: Who) -> JSONResponse:
    call = await svc.get_call(who, call_id)
    out = {"@odata.context": f"{_base(request)}/$metadata#communications/calls/$entity"}
    out.update(call_resource(call))
    return JSONResponse(out)


@router.delete("/communications/calls/{call_id}", status_code=204)
async def delete_call(call_id: str, svc: Svc, who: Who) -> Response:
    await svc.hangup(who, call_id)
    return Response(status_code=204)


@router.post("/communications/calls/{call_id}/keepAlive")
async def keep_alive(call_id: str, svc: Svc, who: Who) -> Response:
    await svc.keep_alive(who, call_id)
    return Response(status_code=200)


@router.post(
    "/communications/calls/{call_id}/answer",
    status_code=202,
    openapi_extra=request_body(AnswerBody, required=True),
)
async def answer(call_id: str, request: Request, svc: Svc, who: Who) -> Response:
    body, _ = await _body(request, AnswerBody)
    if "audio" not in body.accepted_modalities:
        raise InvalidRequestError("acceptedModalities: must include 'audio'")
    svc.prefetch_media(body.media_config)
    await svc.answer(who, call_id, body.callback_uri)
    return Response(status_code=202)


@router.post(
    "/communications/calls/{call_id}/reject",
    status_code=202,
    openapi_extra=request_body(RejectBody, required=False),
)
async def reject(call_id: str, request: Request, svc: Svc, who: Who) -> Response:
    body, _ = await _body(request, RejectBody)
    await svc.reject(who, call_id, body.reason)
    return Response(status_code=202)


@router.post(
    "/communications/calls/{call_id}/sendDtmfTones",
    openapi_extra=request_body(SendDtmfTonesBody, required=True),
)
async def send_dtmf_tones(
    call_id: str, request: Request, svc: Svc, who: Who, repeat: RepeatId = None
) -> JSONResponse:
    body, _ = await _body(request, SendDtmfTonesBody)
    op = await svc.send_dtmf(
        who,
        call_id,
        DtmfRequest(
            tones=[t.value for t in body.tones],
            delay_ms=body.delay_between_tones_ms,
            tone_ms=body.tone_duration_ms,
            method=DtmfMethod(body.dtmf_method.value),
            client_context=body.client_context,
            repeat_key=repeat,
        ),
    )
    return _op_response(request, call_id, op)


@router.post(
    "/communications/calls/{call_id}/cancelMediaProcessing",
    openapi_extra=request_body(CancelMediaProcessingBody, required=False),
)
async def cancel_media_processing(
    call_id: str, request: Request, svc: Svc, who: Who, repeat: RepeatId = None
) -> JSONResponse:
    body, _ = await _body(request, CancelMediaProcessingBody)
    op = await svc.cancel_media(who, call_id, body.client_context, repeat)
    return _op_response(request, call_id, op)


@router.post(
    "/communications/calls/{call_id}/subscribeToTone",
    openapi_extra=request_body(SubscribeToToneBody, required=False),
)
async def subscribe_to_tone(
    call_id: str, request: Request, svc: Svc, who: Who, repeat: RepeatId = None
) -> JSONResponse:
    body, _ = await _body(request, SubscribeToToneBody)
    op = await svc.subscribe_to_tone(who, call_id, body.client_context, repeat)
    return _op_response(request, call_id, op)


@router.get("/communications/calls/{call_id}/operations")
async def list_operations(call_id: str, request: Request, svc: Svc, who: Who) -> JSONResponse:
    ops = await svc.list_operations(who, call_id)
    return JSONResponse(
        {
            "@odata.context": f"{_base(request)}/$metadata#communications/calls('{call_id}')"
            "/operations",
            "value": [operation_resource(o) for o in ops],
        }
    )


@router.get("/communications/calls/{call_id}/operations/{op_id}")
async def get_operation(call_id: str, op_id: str, svc: Svc, who: Who) -> JSONResponse:
    return JSONResponse(operation_resource(await svc.get_operation(who, call_id, op_id)))
