"""``/_loopback/...``: controls of the simulated far end (only with ``--media loopback``).

Development and test aid, not part of Graph: list calls and what they heard, make the far end
hang up, press keys, hold or resume, and place an incoming call."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from ..service import LoopbackMedia


class _Press(BaseModel):
    keys: str
    method: str = "rfc4733"


class _Incoming(BaseModel):
    caller: str = "+14255550100"
    callee: str = "sip:bot@127.0.0.1"


def _media(request: Request) -> LoopbackMedia:
    media: LoopbackMedia = request.app.state.media
    return media


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
    _media(request).calls[index].remote_hangup()
    return {"result": "ok"}


@router.post("/calls/{index}/press")
async def press(index: int, body: _Press, request: Request) -> dict[str, str]:
    _media(request).calls[index].press(body.keys, body.method)
    return {"result": "ok"}


@router.post("/calls/{index}/hold")
async def hold(index: int, request: Request) -> dict[str, str]:
    _media(request).calls[index].hold(True)
    return {"result": "ok"}


@router.post("/calls/{index}/resume")
async def resume(index: int, request: Request) -> dict[str, str]:
    _media(request).calls[index].hold(False)
    return {"result": "ok"}


@router.post("/incoming")
async def incoming(body: _Incoming, request: Request) -> dict[str, str]:
    await _media(request).incoming(body.caller, body.callee)
    return {"result": "ok"}
