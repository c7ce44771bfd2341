"""The console's JSON routes (``/console/api/...``): data for the pages, live updates
(server-sent events), and the dev phone's actions, every one scoped to the session's tenant and
app like the Graph API, every POST checked for the session's CSRF token."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, Final, TypeVar

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError

from ..graph import CreateCallBody, SendDtmfTonesBody
from ..journal import TooManyWatchersError
from ..notify import call_resource, operation_resource
from ..service import (
    DtmfMethod,
    DtmfRequest,
    InvalidRequestError,
    LoopbackMedia,
    NewCall,
    NotAllowedError,
    NotFoundError,
    NotSupportedError,
    Operation,
    Principal,
    ServiceError,
    ServiceUnavailableError,
)
from ..service.errors import AccessDeniedError
from ..service.loopback import LoopbackCall
from ..tones.spectrum import FLOOR_DBM0, key_marks, spectrogram
from .inbox import MAX_BODY, NAME
from .queries import MAX_PAGE, PAGE, calls_page, notifications
from .sessions import COOKIE
from .state import ConsoleDep, ConsoleError, CsrfSession, ServiceDep, SessionDep, methods_of

router = APIRouter(prefix="/console/api", include_in_schema=False)
inbox_router = APIRouter(include_in_schema=False)

B = TypeVar("B", bound=BaseModel)

STREAM_MAX_S: Final = 20.0
"""An event stream ends after this long (the browser reconnects): a stopping server is never
held up by a page left open."""
PING_S: Final = 10.0
MAX_COLUMNS: Final = 2000
_SERVICE_ERRORS = {
    NotFoundError: 404,
    InvalidRequestError: 400,
    NotAllowedError: 409,
    NotSupportedError: 400,
    AccessDeniedError: 403,
    ServiceUnavailableError: 503,
}


async def json_body(request: Request, limit: int = 65536) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > limit:
        raise ConsoleError(413, f"the body is larger than {limit} bytes")
    try:
        data = json.loads(raw or b"{}")
    except ValueError:
        raise ConsoleError(400, "the body is not JSON") from None
    if not isinstance(data, dict):
        raise ConsoleError(400, "the body must be a JSON object")
    return data


def service_error(exc: Exception) -> ConsoleError:
    for kind, status in _SERVICE_ERRORS.items():
        if isinstance(exc, kind):
            return ConsoleError(status, str(exc))
    if isinstance(exc, ServiceError):
        return ConsoleError(400, str(exc))
    raise exc


# --- data ---------------------------------------------------------------------------------
@router.get("/calls")
async def list_calls(
    request: Request,
    session: SessionDep,
    state: ConsoleDep,
    before: float | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = PAGE,
) -> JSONResponse:
    rows = await calls_page(
        request.app.state.repo.engine,
        session.principal,
        before=before,
        limit=limit,
        heard=methods_of(state),
    )
    return JSONResponse({"value": [r.to_json() for r in rows]})


@router.get("/calls/{call_id}")
async def call_detail(
    call_id: str,
    request: Request,
    session: SessionDep,
    svc: ServiceDep,
    state: ConsoleDep,
    after: int = 0,
) -> JSONResponse:
    who = session.principal
    try:
        call = await svc.get_call(who, call_id)
        ops = await svc.list_operations(who, call_id)
    except NotFoundError as exc:
        raise service_error(exc) from None
    journal = state.journal.get(call_id)
    entries, dropped = await state.journal.saved_or_live(call_id, after)
    media = svc.media_of(call_id)
    return JSONResponse(
        {
            "call": call_resource(call),
            "operations": [operation_resource(o) for o in ops],
            "notifications": await notifications(request.app.state.repo.engine, call_id),
            "entries": entries,
            "dropped": dropped,
            "audio": journal is not None and journal.audio is not None,
            "farEnd": _far_end_index(state.loopback, request, media),
            "now": time.time(),
        }
    )


def _far_end_index(loopback: bool, request: Request, media: object) -> int | None:
    if not loopback or not isinstance(media, LoopbackCall):
        return None
    calls: list[LoopbackCall] = request.app.state.media.calls
    return next((i for i, c in enumerate(calls) if c is media), None)


@router.get("/calls/{call_id}/spectrogram")
async def call_spectrogram(
    call_id: str,
    session: SessionDep,
    svc: ServiceDep,
    state: ConsoleDep,
    since: float | None = None,
    until: float | None = None,
    columns: Annotated[int, Query(ge=10, le=MAX_COLUMNS)] = 800,
    side: Annotated[str, Query(pattern="^(far|ours)$")] = "far",
) -> JSONResponse:
    """The far end's audio as the detector was fed it (``side=ours``: the audio we sent, as
    our RTP carried it): levels on the detector's block grid
    (max over the blocks each column covers, one byte per cell: 0 = ``FLOOR_DBM0``, 255 = 0
    dBm0), and the keys the detector finds in that audio with their two tones."""
    try:
        await svc.get_call(session.principal, call_id)
    except NotFoundError as exc:
        raise service_error(exc) from None
    journal = state.journal.get(call_id)
    ring = None if journal is None else journal.audio if side == "far" else journal.audio_out
    if ring is None:
        raise ConsoleError(404, "no audio was kept for this call")
    t0, samples = ring.samples(since, until)
    spec, marks = await asyncio.to_thread(_analyse, samples)
    blocks = spec.level.shape[0]
    step = max(1, -(-blocks // columns))
    if blocks:
        usable = blocks - blocks % step
        level = spec.level[:usable].reshape(-1, step, spec.level.shape[1]).max(axis=1)
        if usable < blocks:
            level = np.vstack([level, spec.level[usable:].max(axis=0, keepdims=True)])
    else:
        level = spec.level
    cells = np.clip((level - FLOOR_DBM0) * (255.0 / -FLOOR_DBM0), 0, 255).astype(np.uint8)
    return JSONResponse(
        {
            "start": t0,
            "seconds": len(samples) / 8000,
            "columnSeconds": step * spec.times[1] if len(spec.times) > 1 else spec.block_s,
            "blockSeconds": spec.block_s,
            "columns": int(cells.shape[0]),
            "bins": int(cells.shape[1]) if cells.ndim == 2 else 0,
            "freqs": [float(spec.freqs[0]), float(spec.freqs[-1])],
            "floor": FLOOR_DBM0,
            "cells": base64.b64encode(cells.tobytes()).decode(),
            "keys": [
                {
                    "key": m.key,
                    "start": t0 + m.start,
                    "end": t0 + m.end,
                    "level": round(m.level_dbm0, 1),
                    "low": m.low_hz,
                    "high": m.high_hz,
                }
                for m in marks
            ],
        }
    )


def _analyse(samples: np.ndarray[Any, Any]) -> tuple[Any, Any]:
    return spectrogram(samples), key_marks(samples)


@router.get("/inbox")
async def inbox_list(
    session: SessionDep, state: ConsoleDep, name: str | None = None
) -> JSONResponse:
    if state.inbox is None:
        raise ConsoleError(404, "the built-in inbox is turned off")
    found = state.inbox.deliveries(session.principal.app_id, name)
    return JSONResponse({"value": [d.to_json() for d in found[:200]]})


@router.get("/stream")
async def stream(
    request: Request, session: SessionDep, state: ConsoleDep, call: str | None = None
) -> Response:
    """Server-sent events: ``call`` (a call changed), ``entry`` (a journal entry of the call
    asked for), ``inbox`` (a delivery arrived), ``resync`` (messages were lost: reload)."""
    who = session.principal
    if call is not None:
        try:
            await request.app.state.service.get_call(who, call)
        except NotFoundError as exc:
            raise service_error(exc) from None

    def mine(message: dict[str, Any]) -> bool:
        kind = message.get("type")
        if kind == "inbox":
            return message.get("app") in (who.app_id, None)
        if message.get("tenant") != who.tenant_id or message.get("app") != who.app_id:
            return kind == "resync"
        return kind == "call" or (kind == "entry" and message.get("call") == call)

    try:
        watcher = state.journal.hub.watch(mine)
    except TooManyWatchersError:
        raise ConsoleError(503, "too many live pages open; close some") from None

    async def events() -> AsyncIterator[bytes]:
        ends = time.monotonic() + STREAM_MAX_S
        try:
            yield b"retry: 1000\n\n"
            while time.monotonic() < ends and not state.stopping:
                message = await watcher.next(min(1.0, PING_S))
                if message is None:
                    return
                if message.get("type") == "ping":
                    continue
                yield f"data: {json.dumps(message, separators=(',', ':'))}\n\n".encode()
        finally:
            state.journal.hub.leave(watcher)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


# --- actions: the dev phone ------------------------------------------------------------------
@router.post("/calls")
async def place_call(request: Request, session: CsrfSession, svc: ServiceDep) -> JSONResponse:
    """Place a call: the body of ``POST /communications/calls`` (validated by the same model)."""
    data = await json_body(request)
    try:
        body = CreateCallBody.model_validate(data)
        call = await svc.create_call(
            session.principal,
            NewCall(body.callback_uri, body.targets, body.tenant_id, data),
        )
    except ValidationError as exc:
        raise ConsoleError(400, first_error(exc)) from None
    except Exception as exc:
        raise service_error(exc) from None
    return JSONResponse(call_resource(call), status_code=201)


async def start_operation(
    request: Request, model: type[B], start: Callable[[B], Awaitable[Operation]]
) -> JSONResponse:
    """A dev-phone action: the Graph request body of the action, validated by its model, then
    the same service call as the API; the operation as the API would render it."""
    data = await json_body(request)
    try:
        op = await start(model.model_validate(data))
    except ValidationError as exc:
        raise ConsoleError(400, first_error(exc)) from None
    except Exception as exc:
        raise service_error(exc) from None
    return JSONResponse(operation_resource(op))


@router.post("/calls/{call_id}/sendDtmfTones")
async def send_tones(
    call_id: str, request: Request, session: CsrfSession, svc: ServiceDep
) -> JSONResponse:
    """The keypad: the body of Graph ``sendDtmfTones``, the same model and service call."""

    def send(body: SendDtmfTonesBody) -> Awaitable[Operation]:
        return svc.send_dtmf(
            session.principal,
            call_id,
            DtmfRequest(
                tones=[t.value for t in body.tones],
                delay_ms=body.delay_between_tones_ms,
                tone_ms=body.tone_duration_ms,
                method=DtmfMethod(body.dtmf_method.value),
                client_context=body.client_context,
            ),
        )

    return await start_operation(request, SendDtmfTonesBody, send)


@router.post("/calls/{call_id}/hangup")
async def hang_up(call_id: str, session: CsrfSession, svc: ServiceDep) -> Response:
    try:
        await svc.hangup(session.principal, call_id)
    except Exception as exc:
        raise service_error(exc) from None
    return Response(status_code=204)


@router.post("/calls/{call_id}/answer")
async def answer(call_id: str, session: CsrfSession, svc: ServiceDep) -> Response:
    try:
        await svc.answer(session.principal, call_id, None)
    except Exception as exc:
        raise service_error(exc) from None
    return Response(status_code=202)


@router.post("/calls/{call_id}/reject")
async def reject(call_id: str, session: CsrfSession, svc: ServiceDep) -> Response:
    try:
        await svc.reject(session.principal, call_id, "none")
    except Exception as exc:
        raise service_error(exc) from None
    return Response(status_code=202)


async def _far_end(call_id: str, who: Principal, request: Request) -> LoopbackCall:
    """The simulated far end of a call of ``who`` (``--media loopback`` only)."""
    if not isinstance(request.app.state.media, LoopbackMedia):
        raise ConsoleError(404, "the far end can be driven only with --media loopback")
    svc = request.app.state.service
    try:
        await svc.get_call(who, call_id)
    except NotFoundError as exc:
        raise service_error(exc) from None
    media = svc.media_of(call_id)
    if not isinstance(media, LoopbackCall):
        raise ConsoleError(409, "the call has no far end now (not up, or over)")
    return media


@router.post("/calls/{call_id}/far/{action}")
async def far_end(call_id: str, action: str, request: Request, session: CsrfSession) -> Response:
    """The simulated far end: ``press`` (``{"keys": "12#", "method": "rfc4733"}``), ``hold``,
    ``resume``, ``hangup``."""
    far = await _far_end(call_id, session.principal, request)
    if action == "press":
        data = await json_body(request)
        keys, method = str(data.get("keys", "")), str(data.get("method", "rfc4733"))
        if not keys or len(keys) > 32 or any(k not in "0123456789*#ABCD" for k in keys.upper()):
            raise ConsoleError(400, "keys: 1 to 32 of 0-9 * # A-D")
        if method not in ("rfc4733", "sipinfo", "inband"):
            raise ConsoleError(400, "method: rfc4733, sipinfo or inband")
        far.press(keys.upper(), method)
    elif action in ("hold", "resume"):
        far.hold(action == "hold")
    elif action == "hangup":
        far.remote_hangup()
    else:
        raise ConsoleError(404, f"no far-end action {action!r}")
    return Response(status_code=204)


@router.post("/logout")
async def logout(request: Request, session: CsrfSession, state: ConsoleDep) -> Response:
    state.auth.end(session.id)
    response = Response(status_code=204)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.post("/incoming")
async def incoming(request: Request, session: CsrfSession) -> Response:
    """A simulated incoming call (``--media loopback``): ``{"caller": "+1425..."}``."""
    media = request.app.state.media
    if not isinstance(media, LoopbackMedia):
        raise ConsoleError(404, "incoming calls can be simulated only with --media loopback")
    data = await json_body(request)
    caller = str(data.get("caller") or "+14255550100")[:128]
    await media.incoming(caller, "sip:bot@127.0.0.1")
    return Response(status_code=202)


def first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"])
    return f"{where}: {error['msg']}" if where else str(error["msg"])


# --- the built-in webhook receiver ---------------------------------------------------------
@inbox_router.post("/inbox/{name}")
async def take_delivery(name: str, request: Request, state: ConsoleDep) -> Response:
    if state.inbox is None or not NAME.match(name):
        return JSONResponse({"error": "no such inbox"}, status_code=404)
    raw = await request.body()
    if len(raw) > MAX_BODY:
        return JSONResponse({"error": f"larger than {MAX_BODY} bytes"}, status_code=413)
    delivery = state.inbox.take(name, request.headers.get("authorization"), raw)
    if not delivery.valid:
        return JSONResponse({"error": delivery.reason}, status_code=401)
    return Response(status_code=202)
