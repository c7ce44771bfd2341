"""ASGI middleware: path normalisation (Graph URL quirks) and request ids."""

from __future__ import annotations

import json
import logging
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..graph import error_envelope
from .paths import CLIENT_REQUEST_ID, normalise_path

log = logging.getLogger(__name__)


class GraphMiddleware:
    """Normalises the path and tags every response with ``request-id`` / ``client-request-id``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = normalise_path(scope["path"])
        scope = dict(scope, path=path, raw_path=path.encode())
        # as HTTP defines them (and Starlette reads them): bytes, latin-1; never a decode error
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        request_id = str(uuid.uuid4())
        client_id = headers.get("client-request-id")
        bad_client_id = client_id is not None and not CLIENT_REQUEST_ID.fullmatch(client_id)
        if bad_client_id:
            client_id = None  # not echoed
        state = dict(scope.get("state") or {})
        state.update(request_id=request_id, client_request_id=client_id)
        scope["state"] = state

        started = False

        async def send_with_ids(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                extra = [(b"request-id", request_id.encode())]
                if client_id is not None:
                    extra.append((b"client-request-id", client_id.encode()))
                message = dict(message, headers=[*message.get("headers", []), *extra])
            await send(message)

        async def answer(status: int, code: str, message: str) -> None:
            body = json.dumps(
                error_envelope(code, message, request_id=request_id, client_request_id=client_id)
            ).encode()
            headers = [(b"content-type", b"application/json")]
            await send_with_ids(
                {"type": "http.response.start", "status": status, "headers": headers}
            )
            await send_with_ids({"type": "http.response.body", "body": body})

        if bad_client_id:
            await answer(
                400,
                "invalidRequest",
                "client-request-id: the header must be 1 to 128 visible ASCII characters "
                "(a GUID is 36)",
            )
            return
        try:
            await self.app(scope, receive, send_with_ids)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), path)
            if started:
                raise
            await answer(500, "generalException", "An internal error occurred.")
