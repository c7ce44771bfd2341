"""Call control routes: transfer, participants, mute/unmute, updateRecordingStatus (spec 3-6).

Participants are rendered from the call (``dtmfgraph.notify.participants``): the bot and the
far end of the 1:1 SIP call; ``myParticipantId`` of the call names the bot's.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from ..graph.control_models import (
    MuteBody,
    RedirectBody,
    TransferBody,
    UpdateRecordingStatusBody,
)
from ..notify.participants import participants_json
from ..service import NotFoundError
from ..service.model import snapshot_call
from .openapi import request_body
from .routes import RepeatId, Svc, Who, _base, _body, _op_response

router = APIRouter()
CALL = "/communications/calls/{call_id}"


@router.get(CALL + "/participants")
async def list_participants(call_id: str, request: Request, svc: Svc, who: Who) -> JSONResponse:
    call = await svc.control.call_for_roster(who, call_id)
    context = f"{_base(request)}/$metadata#communications/calls('{call_id}')/participants"
    return JSONResponse(
        {"@odata.context": context, "value": participants_json(snapshot_call(call))}
    )


@router.get(CALL + "/participants/{participant_id}")
async def get_participant(
    call_id: str, participant_id: str, request: Request, svc: Svc, who: Who
) -> JSONResponse:
    call = await svc.control.call_for_roster(who, call_id)
    for item in participants_json(snapshot_call(call)):
        if item["id"] == participant_id:
            context = (
                f"{_base(request)}/$metadata#communications/calls('{call_id}')/participants/$entity"
            )
            return JSONResponse({"@odata.context": context, **item})
    raise NotFoundError(f"participant {participant_id} was not found on call {call_id}")


async def _mute(
    call_id: str,
    request: Request,
    svc: Svc,
    who: Who,
    repeat: RepeatId,
    *,
    muted: bool,
    participant_id: str | None = None,
) -> JSONResponse:
    body, _ = await _body(request, MuteBody)
    op = await svc.control.mute(
        who, call_id, muted, body.client_context, repeat, participant_id=participant_id
    )
    return _op_response(request, call_id, op)


@router.post(CALL + "/mute", openapi_extra=request_body(MuteBody, required=False))
async def mute(
    call_id: str, request: Request, svc: Svc, who: Who, repeat: RepeatId = None
) -> JSONResponse:
    return await _mute(call_id, request, svc, who, repeat, muted=True)


@router.post(CALL + "/unmute", openapi_extra=request_body(MuteBody, required=False))
async def unmute(
    call_id: str, request: Request, svc: Svc, who: Who, repeat: RepeatId = None
) -> JSONResponse:
    return await _mute(call_id, request, svc, who, repeat, muted=False)


@router.post(
    CALL + "/participants/{participant_id}/mute",
    openapi_extra=request_body(MuteBody, required=False),
)
async def mute_participant(
    call_id: str,
    participant_id: str,
    request: Request,
    svc: Svc,
    who: Who,
    repeat: RepeatId = None,
) -> JSONResponse:
    return await _mute(
        call_id, request, svc, who, repeat, muted=True, participant_id=participant_id
    )


@router.post(
    CALL + "/updateRecordingStatus",
    openapi_extra=request_body(UpdateRecordingStatusBody, required=True),
)
async def update_recording_status(
    call_id: str, request: Request, svc: Svc, who: Who, repeat: RepeatId = None
) -> JSONResponse:
    body, _ = await _body(request, UpdateRecordingStatusBody)
    op = await svc.control.update_recording_status(
        who, call_id, body.status, body.client_context, repeat
    )
    return _op_response(request, call_id, op)


@router.post(
    CALL + "/transfer", status_code=202, openapi_extra=request_body(TransferBody, required=True)
)
async def transfer(call_id: str, request: Request, svc: Svc, who: Who) -> Response:
    body, _ = await _body(request, TransferBody)
    await svc.transfers.transfer(who, call_id, body.transfer_target, body.transferee)
    return Response(status_code=202)


@router.post(
    CALL + "/redirect", status_code=202, openapi_extra=request_body(RedirectBody, required=True)
)
async def redirect(call_id: str, request: Request, svc: Svc, who: Who) -> Response:
    body, _ = await _body(request, RedirectBody)
    await svc.transfers.redirect(who, call_id, body.targets, body.timeout, body.callback_uri)
    return Response(status_code=202)
