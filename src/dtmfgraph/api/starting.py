"""``Starting``: the ASGI app ``serve`` listens with before the API has loaded, and that stays
in front of it.

``serve`` listens as soon as its settings are read and checked; FastAPI, the store, the service
and the media stack (numpy, SIP, dnspython, cryptography) are imported and started behind this
gate (``dtmfgraph.cli.starter``). Meanwhile:

* ``GET /health``: 200 at once, ``{"status": "starting"}``, later ``{"status": "ready"}``
  (the process is up);
* ``GET /ready``: 503 with ``Retry-After: 1`` while starting, 200 ``{"status": "ready"}`` once
  every request is served (a readiness probe must not wait);
* ``GET`` of the OpenID metadata (:data:`dtmfgraph.openid.METADATA_PATHS`): the same document,
  from the settings alone, the API's own route serves once it is up;
* every other request waits until the API is up and is then served by it: nothing is refused
  for coming early. Only if the start fails (``serve`` then exits with its error) is a waiting
  request answered 503 with ``Retry-After``.

Every answer of the gate carries a ``request-id`` (and echoes a valid ``client-request-id``) as
the API's own do. Once the API is up, only ``/health`` and ``/ready`` stay the gate's.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp as Asgi  # (starlette.types imports only the stdlib)
from starlette.types import Receive, Scope, Send

from .paths import CLIENT_REQUEST_ID, normalise_path

HEALTH_PATH = "/health"
READY_PATH = "/ready"
_GATES_OWN = (HEALTH_PATH, READY_PATH, "//")
"""Paths that may be the gate's own once the API is up (``//health`` is ``/health``)."""
RETRY_AFTER_S = 1
"""What ``/ready`` (and a request whose start failed) tells a client to wait, in seconds."""


def json_body(doc: object) -> bytes:
    """``doc`` as the API's JSON responses render it (compact, UTF-8)."""
    return json.dumps(doc, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


class Starting:
    """See the module docstring. ``early``: path -> (JSON document, extra headers) answered
    to a ``GET`` while the API is not up yet. ``begin`` and ``end`` are awaited at the server's
    lifespan start-up and shut-down: ``begin`` must return at once (the start runs as a task
    of its own), ``end`` stops it or the API."""

    def __init__(
        self,
        early: dict[str, tuple[object, dict[str, str]]],
        begin: Callable[[], Awaitable[None]],
        end: Callable[[], Awaitable[None]],
    ) -> None:
        self._early = {
            path: (json_body(doc), [(k.lower().encode(), v.encode()) for k, v in headers.items()])
            for path, (doc, headers) in early.items()
        }
        self._begin = begin
        self._end = end
        self.api: Asgi | None = None
        """The API once it is up (its requests go straight there then)."""
        self.failed = False
        self._settled = asyncio.Event()

    @property
    def ready(self) -> bool:
        return self.api is not None

    def open(self, api: Asgi) -> None:
        """The API is up: serve every request with it, the waiting ones first."""
        self.api = api
        self._settled.set()

    def fail(self) -> None:
        """The start failed (the server is stopping): waiting requests get 503."""
        self.failed = True
        self._settled.set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind != "http":  # websockets: only the API has any
            await self._wait_for_api(scope, receive, send)
            return
        api = self.api
        path = scope["path"]
        if api is not None and not path.startswith(_GATES_OWN):
            await api(scope, receive, send)  # the common case, once up
            return
        if scope["method"] == "GET":
            path = normalise_path(path)
            answer = self._answer(path)
            if answer is not None:
                status, body, headers = answer
                client_id = _header(scope, b"client-request-id")
                if client_id is None or CLIENT_REQUEST_ID.fullmatch(client_id):
                    await _respond(send, status, body, headers, client_id)
                    return
        await self._wait_for_api(scope, receive, send)

    def _answer(self, path: str) -> tuple[int, bytes, list[tuple[bytes, bytes]]] | None:
        if path == HEALTH_PATH:
            return 200, json_body({"status": "ready" if self.ready else "starting"}), []
        if path == READY_PATH:
            if self.ready:
                return 200, json_body({"status": "ready"}), []
            retry = [(b"retry-after", str(RETRY_AFTER_S).encode())]
            return 503, json_body({"status": "starting"}), retry
        if path in self._early and not self.ready:
            body, headers = self._early[path]
            return 200, body, headers
        return None

    async def _wait_for_api(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._settled.wait()
        if self.api is not None:
            await self.api(scope, receive, send)
        elif scope["type"] == "http":
            body = json_body(
                {
                    "error": {
                        "code": "serviceNotAvailable",
                        "message": "The service could not start; see its log.",
                    }
                }
            )
            retry = [(b"retry-after", str(RETRY_AFTER_S).encode())]
            await _respond(send, 503, body, retry, _header(scope, b"client-request-id"))
        # (a websocket not accepted is closed by the server)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self._begin()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._end()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            text: str = value.decode("latin-1")
            return text
    return None


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]],
    client_id: str | None,
) -> None:
    extra = [(b"request-id", str(uuid.uuid4()).encode())]
    if client_id is not None and CLIENT_REQUEST_ID.fullmatch(client_id):
        extra.append((b"client-request-id", client_id.encode()))
    head = [
        (b"content-length", str(len(body)).encode()),
        (b"content-type", b"application/json"),
        *headers,
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


__all__ = ["HEALTH_PATH", "READY_PATH", "RETRY_AFTER_S", "Starting", "json_body"]
