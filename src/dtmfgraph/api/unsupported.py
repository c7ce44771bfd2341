"""Graph call actions dtmfgraph does not implement: 501 ``notSupported``, never a 404.

A 404 on a live call tells a bot (Docs call-keepalive) that the call is over: it would drop its
state and hang up. So every Graph path we know but do not serve answers 501 with the Graph
envelope, after the same checks as a real action (a token; the call must exist and be the
caller's, else 404). The table is the single place to add or remove one: a route that really
implements a path is registered before these and wins.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from .errors import graph_error
from .routes import Svc, Who

CALL = "/communications/calls/{call_id}"

UNSUPPORTED: tuple[tuple[str, str, str], ...] = (
    # (method, path, why) — Graph call features with no meaning without a mixer or Teams
    ("POST", CALL + "/addLargeGalleryView", "Teams gallery views"),
    ("POST", CALL + "/changeScreenSharingRole", "screen sharing"),
    ("GET", CALL + "/audioRoutingGroups", "audio routing groups (no mixer)"),
    ("POST", CALL + "/audioRoutingGroups", "audio routing groups (no mixer)"),
    ("GET", CALL + "/audioRoutingGroups/{item_id}", "audio routing groups (no mixer)"),
    ("PATCH", CALL + "/audioRoutingGroups/{item_id}", "audio routing groups (no mixer)"),
    ("DELETE", CALL + "/audioRoutingGroups/{item_id}", "audio routing groups (no mixer)"),
    ("GET", CALL + "/contentSharingSessions", "content sharing"),
    ("GET", CALL + "/contentSharingSessions/{item_id}", "content sharing"),
    ("POST", CALL + "/participants/{item_id}/startHoldMusic", "hold music (no mixer)"),
    ("POST", CALL + "/participants/{item_id}/stopHoldMusic", "hold music (no mixer)"),
    ("POST", CALL + "/participants/muteAll", "group calls"),
    ("POST", CALL + "/participants/configureMixer", "group calls (no mixer)"),
    ("POST", CALL + "/startRecording", "Teams compliance recording"),
    ("POST", CALL + "/stopRecording", "Teams compliance recording"),
    ("POST", CALL + "/startTranscription", "transcription"),
    ("POST", CALL + "/stopTranscription", "transcription"),
    ("DELETE", CALL + "/participants/{item_id}", "removing a participant (1:1 calls)"),
    ("POST", CALL + "/participants/invite", "inviting participants (no mixer)"),
)
COLLECTION: tuple[tuple[str, str, str], ...] = (
    ("POST", "/communications/calls/logTeleconferenceDeviceQuality", "device quality logs"),
)


def _message(request: Request, why: str) -> str:
    action = request.url.path.rsplit("/", 1)[-1]
    return f"{request.method} {action} is not supported by dtmfgraph ({why})"


Stub = Callable[..., Awaitable[JSONResponse]]


def _call_stub(why: str) -> Stub:
    async def stub(call_id: str, request: Request, svc: Svc, who: Who) -> JSONResponse:
        await svc.get_call(who, call_id)  # 404 for a call that is not the caller's
        return graph_error(request, 501, "notSupported", _message(request, why))

    return stub


def _collection_stub(why: str) -> Stub:
    async def stub(request: Request, who: Who) -> JSONResponse:
        del who  # the token is checked all the same
        return graph_error(request, 501, "notSupported", _message(request, why))

    return stub


router = APIRouter()
_ROWS: list[tuple[str, str, str, Callable[[str], Stub]]] = [
    *((m, p, w, _call_stub) for m, p, w in UNSUPPORTED),
    *((m, p, w, _collection_stub) for m, p, w in COLLECTION),
]
for _method, _path, _why, _make in _ROWS:
    extra: dict[str, Any] = {"summary": f"Not supported: {_why}"}
    router.add_api_route(_path, _make(_why), methods=[_method], status_code=501, **extra)

__all__ = ["COLLECTION", "UNSUPPORTED", "router"]
