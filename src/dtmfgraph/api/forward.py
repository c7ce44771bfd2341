"""Several nodes on one PostgreSQL database: a request about a live call goes to its node.

A call's SIP dialog and RTP live in the node (``dtmfgraph serve`` process) that placed or answered
it; any node can read every call from the database, but only the owner can send its keys, cancel,
subscribe, answer, reject or hang up. :class:`Forwarder` carries such a request (method, path,
query, the ``Authorization`` and ``Content-Type`` headers, body) over PostgreSQL ``NOTIFY`` to the
owner's channel; the owner runs it through its own app, exactly as if it had arrived there
(authentication included), and ``NOTIFY``s the response (status, ``Content-Type``, ``Location``,
``Retry-After``, body) back to the asking node's channel; a ``Location`` names the node the client
asked (its public base URL), not the owner. :class:`Router` is the ASGI middleware that decides: a
state-changing request (POST, PATCH, DELETE) under ``/communications/calls/{id}`` whose call
another live node owns is forwarded; one whose owner is known dead (no heartbeat for the lease,
``node_dead_after_s``, or its forwarding connection gone from the database) is answered at once 503
with ``Retry-After`` (the time until another node has ended the call); everything else (reads, new
calls, calls of this node or of stopped nodes) is handled here.

The connection that listens (:class:`.listener.Listener`) is reopened when it goes (the
database restarted): meanwhile a request to forward answers 503 with ``Retry-After`` at once,
and one waiting for an answer that can no longer come back ends the same way.

No cluster protocol of our own: the database is the only thing the nodes share. A ``NOTIFY``
payload is at most 8,000 bytes, far above these requests and responses; one that does not fit
gets a clear error.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Receive, Scope, Send

from ..graph import error_envelope
from ..service.errors import ServiceUnavailableError
from ..store.tables import calls, nodes
from .listener import Listener, ListenerDownError

log = logging.getLogger(__name__)


FORWARDED_HEADER = "x-dtmfgraph-forwarded-by"
"""Set on a request a node runs for another one (so it is never forwarded again)."""
_CALL_PATH = re.compile(r"^/(?:v1\.0|beta)/communications/calls/([A-Za-z0-9._~-]{1,64})(?:/|$)")
_PAYLOAD_MAX = 7900
"""Bytes a ``NOTIFY`` payload may have (PostgreSQL's limit is 8,000)."""
_KEPT_REQUEST_HEADERS = ("authorization", "content-type", "client-request-id")
_KEPT_RESPONSE_HEADERS = ("content-type", "location", "retry-after")
_LISTENING = sa.text(
    "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = :channel)"
)
"""Whether a node's forwarding connection (named after its channel) is still there."""


def channel_of(node_id: str) -> str:
    """The ``LISTEN`` channel of ``node_id`` (a valid identifier whatever the node's name)."""
    return "dtmfgraph_" + hashlib.sha256(node_id.encode()).hexdigest()[:40]


def asyncpg_dsn(url: str) -> str:
    """A SQLAlchemy ``postgresql+asyncpg://`` URL as the plain DSN asyncpg takes."""
    return re.sub(r"^postgresql\+asyncpg://", "postgresql://", url)


class ForwardError(ServiceUnavailableError):
    """The owner could not be asked, or did not answer in time (or died meanwhile), or this
    node's own forwarding connection is away (being reopened)."""

    def __init__(self, message: str, *, retry_after_s: float = 1.0) -> None:
        super().__init__(message, retry_after_s=math.ceil(retry_after_s))


class Forwarder:
    """Requests to and from the other nodes over ``LISTEN``/``NOTIFY`` (PostgreSQL only)."""

    def __init__(
        self,
        app: ASGIApp,
        dsn: str,
        node_id: str,
        *,
        timeout_s: float = 15.0,
        base_url: str = "",
        check_every_s: float = 1.0,
    ) -> None:
        self._app = app
        self.node_id = node_id
        self.channel = channel_of(node_id)
        self.base_url = base_url.rstrip("/")
        """This node's public base URL: the ``Location`` of what it forwards names it."""
        self._timeout = timeout_s
        self._check_every = check_every_s
        self._listener = Listener(
            dsn,
            self.channel,
            self._on_notify,
            on_lost=self._lost,
            what="forwarding connection",
            meanwhile="requests for calls of other nodes answer 503 with Retry-After",
        )
        self._running = False
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.forwarded = 0
        """Requests this node sent to others."""
        self.served = 0
        """Requests this node ran for others."""

    @property
    def listening(self) -> bool:
        """Whether the forwarding connection is there (it is reopened when it goes)."""
        return self._listener.up

    async def start(self) -> None:
        await self._listener.start()
        self._running = True

    async def close(self) -> None:
        self._running = False
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._fail_waiting("this node is shutting down")
        await self._listener.close()

    def _lost(self) -> None:
        """The forwarding connection went: the answers awaited on it will never come."""
        self._fail_waiting(
            "this node lost its forwarding connection to the database while it waited for the "
            "call's node to answer; the request may or may not have run there"
        )

    def _fail_waiting(self, message: str) -> None:
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ForwardError(message))

    async def forward(
        self,
        owner: str,
        request: dict[str, Any],
        died: Callable[[], Awaitable[float | None]] | None = None,
    ) -> dict[str, Any]:
        """Run ``request`` on node ``owner``; its response (``status``, ``headers``, ``body``).
        ``died`` is asked every ``check_every_s`` while the answer is awaited: a number (the
        seconds to retry after) means the owner is dead, and the wait ends at once."""
        if not self._running:
            raise ForwardError("forwarding is not running")
        rid = uuid.uuid4().hex
        body = {"kind": "request", "id": rid, "reply": self.channel, "base": self.base_url}
        payload = json.dumps({**body, **request})
        if len(payload.encode()) > _PAYLOAD_MAX:
            raise ForwardError("the request is too large to forward to the call's node")
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = future
        try:
            await self._send(channel_of(owner), payload)
            self.forwarded += 1
            return await self._answer(owner, future, died)
        except TimeoutError:
            raise ForwardError(
                f"node {owner!r}, which carries this call, did not answer in {self._timeout:g} s"
            ) from None
        finally:
            self._waiting.pop(rid, None)

    async def _answer(
        self,
        owner: str,
        future: asyncio.Future[dict[str, Any]],
        died: Callable[[], Awaitable[float | None]] | None,
    ) -> dict[str, Any]:
        async with asyncio.timeout(self._timeout):
            while True:
                done, _ = await asyncio.wait([future], timeout=self._check_every)
                if done:
                    return future.result()
                retry_after = await died() if died is not None else None
                if retry_after is not None:
                    raise ForwardError(
                        f"node {owner!r}, which carries this call, died; another node ends "
                        "the call shortly",
                        retry_after_s=retry_after,
                    )

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            message = json.loads(payload)
            kind = message["kind"]
        except (ValueError, KeyError, TypeError):
            log.warning("forward: dropped a malformed notification (%d bytes)", len(payload))
            return
        if kind == "response":
            future = self._waiting.get(str(message.get("id")))
            if future is not None and not future.done():
                future.set_result(message)
            return
        if kind == "request":
            task = asyncio.ensure_future(self._serve(message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _serve(self, message: dict[str, Any]) -> None:
        """Run another node's request through this node's app and send back the response."""
        try:
            headers = {str(k): str(v) for k, v in dict(message["headers"]).items()}
            headers[FORWARDED_HEADER] = str(message.get("from", "?"))
            transport = httpx.ASGITransport(app=self._app)
            async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
                r = await client.request(
                    str(message["method"]),
                    str(message["path"]),
                    params=str(message.get("query", "")),
                    headers=headers,
                    content=str(message.get("body", "")).encode(),
                )
            kept = {k: r.headers[k] for k in _KEPT_RESPONSE_HEADERS if k in r.headers}
            asker = str(message.get("base") or "")
            location = kept.get("location", "")
            if asker and self.base_url and location.startswith(self.base_url + "/"):
                kept["location"] = asker + location[len(self.base_url) :]
            response = {"status": r.status_code, "headers": kept, "body": r.text}
        except Exception as exc:  # answer anyway: the asking node is waiting
            log.exception("forward: serving a request for another node failed")
            response = _failure(f"forwarded: {exc}")
        self.served += 1
        reply = json.dumps({"kind": "response", "id": message.get("id"), **response})
        if len(reply.encode()) > _PAYLOAD_MAX:
            too_large = _failure("the response is too large to forward")
            reply = json.dumps({"kind": "response", "id": message.get("id"), **too_large})
        with contextlib.suppress(ForwardError):  # the asking node sees this node is away
            await self._send(str(message["reply"]), reply)

    async def _send(self, channel: str, payload: str) -> None:
        try:
            await self._listener.send(channel, payload)
        except ListenerDownError as exc:
            raise ForwardError(
                "this node cannot reach the other nodes right now: its forwarding connection "
                "to the database is being reopened",
                retry_after_s=exc.retry_after_s,
            ) from None


class Routing:
    """What :class:`Router` needs, set once the app has started (PostgreSQL only)."""

    def __init__(self) -> None:
        self.forwarder: Forwarder | None = None
        self.engine: AsyncEngine | None = None
        self.dead_after_s = 5.0
        """The node lease: a node that has not beaten for this long is dead."""
        self.heartbeat_s = 1.0
        self.carries: Callable[[str], bool] = lambda _call_id: False
        """Whether this node carries the call (then no other can own it: nothing to look up)."""


class Router:
    """ASGI middleware: a state-changing request about a call another live node owns is
    forwarded to it (see the module docstring). Inactive until ``routing.forwarder`` is set."""

    def __init__(self, app: ASGIApp, routing: Routing) -> None:
        self.app = app
        self.routing = routing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        forwarder = self.routing.forwarder
        match = _CALL_PATH.match(scope.get("path", "")) if scope["type"] == "http" else None
        if (
            forwarder is None
            or match is None
            or self.routing.carries(match.group(1))
            or scope["method"] not in ("POST", "PATCH", "DELETE")
            or any(k.decode().lower() == FORWARDED_HEADER for k, _ in scope["headers"])
        ):
            await self.app(scope, receive, send)
            return
        call_id = match.group(1)
        try:
            owner, retry_after = await self._owner(call_id)
        except (sa.exc.SQLAlchemyError, OSError):  # the store is away: a call of this node
            owner, retry_after = None, None  # is served from its memory, any other 503 here
        if owner is None or owner == forwarder.node_id:
            await self.app(scope, receive, send)
            return
        if retry_after is not None:
            message = (
                f"node {owner!r}, which carries this call, is gone; another node ends the call "
                "shortly"
            )
            await _unavailable(send, message, retry_after)
            return
        body = await _read_body(receive)
        headers = {
            k.decode().lower(): v.decode("latin-1")
            for k, v in scope["headers"]
            if k.decode().lower() in _KEPT_REQUEST_HEADERS
        }
        request = {
            "from": forwarder.node_id,
            "method": scope["method"],
            "path": scope["path"],
            "query": scope.get("query_string", b"").decode("latin-1"),
            "headers": headers,
            "body": body.decode("utf-8", errors="replace"),
        }

        async def died() -> float | None:
            try:
                return (await self._owner(call_id))[1]
            except (sa.exc.SQLAlchemyError, OSError):  # cannot tell now: keep waiting
                return None

        try:
            response = await forwarder.forward(owner, request, died)
            status = int(response["status"])
            out_headers = dict(response.get("headers", {}))
            out_body = str(response.get("body", "")).encode()
        except ForwardError as exc:
            await _unavailable(send, str(exc), exc.retry_after_s)
            return
        raw = [(k.encode(), str(v).encode()) for k, v in out_headers.items()]
        raw.append((b"content-length", str(len(out_body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": out_body})

    async def _owner(self, call_id: str) -> tuple[str | None, float | None]:
        """The node carrying ``call_id`` (``None``: none, or one that stopped and ended its
        calls), and, when that node is dead, the seconds until another node has ended the
        call (else ``None``). Dead: no heartbeat for the lease, or no connection listening on
        its channel (a killed process's connection is gone at once)."""
        engine = self.routing.engine
        if engine is None:
            return None, None
        q = (
            sa.select(calls.c.node_id, nodes.c.heartbeat_at)
            .select_from(calls.outerjoin(nodes, nodes.c.id == calls.c.node_id))
            .where(calls.c.id == call_id, calls.c.state != "terminated")
        )
        async with engine.connect() as conn:
            row = (await conn.execute(q)).first()
            if row is None or row.node_id is None or not row.heartbeat_at:
                return None, None
            listening = await conn.scalar(_LISTENING, {"channel": channel_of(str(row.node_id))})
        lease = self.routing.dead_after_s
        age = time.time() - row.heartbeat_at
        if age > lease or not listening:
            # the reaper (on every node's heartbeat) ends the call once the lease has run out
            return str(row.node_id), max(0.0, lease - age) + self.routing.heartbeat_s
        return str(row.node_id), None


async def _unavailable(send: Send, message: str, retry_after_s: float) -> None:
    """Answer 503 ``serviceNotAvailable`` with ``Retry-After`` (the SDK retries it)."""
    body = json.dumps(_envelope("serviceNotAvailable", message)).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"retry-after", str(max(1, math.ceil(retry_after_s))).encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _failure(message: str) -> dict[str, Any]:
    """A 500 response (status, headers, body) carrying a Graph error envelope."""
    body = json.dumps(_envelope("generalException", message))
    return {"status": 500, "headers": {"content-type": "application/json"}, "body": body}


def _envelope(code: str, message: str) -> dict[str, Any]:
    return error_envelope(code, message, request_id=str(uuid.uuid4()), client_request_id=None)


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)
