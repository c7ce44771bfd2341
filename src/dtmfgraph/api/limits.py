"""Bounds on what a request may make the service read: body size and body read time.

An ASGI middleware in front of the routes (and of the forwarding to other nodes): a body
larger than the cap is refused with 413 before it is read (by its ``Content-Length``) or as
soon as the bytes read pass the cap (chunked bodies); a body that has not fully arrived
within the read timeout (a client that trickles it) is refused with 408. Both answer with the
Graph error envelope.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..graph import error_envelope

log = logging.getLogger(__name__)

GRAPH_PREFIXES = ("/v1.0/", "/beta/")
LOOPBACK_PREFIX = "/_loopback/"
LOOPBACK_MAX_BYTES = 10 * 1024 * 1024 + 64 * 1024
"""The loopback far end's ``/play`` takes a WAV file of up to 10 MiB (dev only)."""
OTHER_MAX_BYTES = 1024 * 1024
"""Paths outside the Graph API (the console and its inbox check their own, smaller, limits)."""
DRAIN_BYTES = 1024 * 1024
"""How much of a refused body is read and dropped before the answer, so that the client,
still sending, reads the 413 (a larger rest is not read: the connection is closed on it)."""


class BodyError(Exception):
    """A request body over the size cap (413) or too slow to arrive (408)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class BodyLimits:
    max_bytes: int = 64 * 1024
    """Largest body of a Graph API request (``max_body_bytes``)."""
    timeout_s: float = 10.0
    """Longest time a whole body may take to arrive (``body_read_timeout_s``)."""

    def cap(self, path: str) -> int:
        if path.startswith(GRAPH_PREFIXES):
            return self.max_bytes
        if path.startswith(LOOPBACK_PREFIX):
            return LOOPBACK_MAX_BYTES
        return max(self.max_bytes, OTHER_MAX_BYTES)


def too_large(cap: int) -> BodyError:
    return BodyError(413, f"the request body is larger than {cap} bytes (the limit)")


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses such a request before it gets here
    return None


async def _drain(receive: Receive, deadline: float, budget: int = DRAIN_BYTES) -> None:
    """Read and drop the rest of a body: at most ``budget`` bytes, until ``deadline``."""
    with contextlib.suppress(TimeoutError):
        while budget > 0:
            message = await asyncio.wait_for(receive(), deadline - time.monotonic())
            budget -= len(message.get("body", b""))
            if message["type"] != "http.request" or not message.get("more_body", False):
                return


class BodyLimitMiddleware:
    """Enforces :class:`BodyLimits` on every HTTP request."""

    def __init__(self, app: ASGIApp, limits: BodyLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self.limits.cap(scope["path"])
        length = _content_length(scope)
        deadline = time.monotonic() + self.limits.timeout_s
        if length is not None and length > cap:
            if length <= DRAIN_BYTES:
                await _drain(receive, deadline)
            await self._refuse(scope, send, too_large(cap))
            return
        seen = 0
        done = False
        started = False

        async def bounded_receive() -> Message:
            nonlocal seen, done
            if done:  # the body is in: what follows is the disconnect, waited for freely
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), deadline - time.monotonic())
            except TimeoutError:
                raise BodyError(
                    408,
                    f"the request body did not arrive within {self.limits.timeout_s:g} s",
                ) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > cap:
                    raise too_large(cap)
                done = not message.get("more_body", False)
            return message

        async def watch_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, bounded_receive, watch_send)
        except BodyError as exc:
            if started:
                raise
            if exc.status == 413:
                await _drain(receive, deadline, DRAIN_BYTES)
            await self._refuse(scope, watch_send, exc)

    @staticmethod
    async def _refuse(scope: Scope, send: Send, exc: BodyError) -> None:
        log.info("%s %s: %s", scope.get("method"), scope["path"], exc)
        state = scope.get("state") or {}
        body = json.dumps(
            error_envelope(
                "invalidRequest",
                str(exc),
                request_id=state.get("request_id", ""),
                client_request_id=state.get("client_request_id"),
            )
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),  # the rest of the body is not read
        ]
        await send({"type": "http.response.start", "status": exc.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
