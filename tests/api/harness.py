"""Real servers for the API tests: the service on uvicorn, a webhook receiver, SDK clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import jwt
import uvicorn
from kiota_abstractions.authentication import (
    AccessTokenProvider,
    AllowedHostsValidator,
    BaseBearerTokenAuthenticationProvider,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dtmfgraph.api import create_app, mint_token
from dtmfgraph.service import LoopbackMedia
from dtmfgraph.settings import Settings

from ..judges.ports import free_port as _free_port

SECRET = "test-secret-" + "x" * 40
TENANT = "11111111-1111-1111-1111-111111111111"
APP = "22222222-2222-2222-2222-222222222222"


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    return _free_port(socket.SOCK_STREAM)


async def serve_in_task(
    app: Any, port: int, host: str = "127.0.0.1", **tls: Any
) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    """``app`` on uvicorn in a task; ``tls``: uvicorn's ``ssl_certfile`` / ``ssl_keyfile``."""
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on", **tls)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    else:
        raise RuntimeError("server did not start")
    return server, task


async def stop(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, 25)


@dataclass
class Receiver:
    """A real HTTP webhook receiver: records every commsNotification POSTed to /cb."""

    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    """The host in ``url`` (the receiver listens where the test starts it)."""
    scheme: str = "http"
    """``https`` when the test serves it with TLS."""
    up: bool = True
    hang_s: float = 0.0
    """While > 0, each POST is held this long, then refused (a receiver that hangs)."""
    batches: list[dict[str, Any]] = field(default_factory=list)
    auth_headers: list[str] = field(default_factory=list)
    refused: int = 0
    _new: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}/cb"

    async def _cb(self, request: Request) -> Response:
        if self.hang_s > 0:
            await asyncio.sleep(self.hang_s)
            self.refused += 1
            return Response(status_code=503)
        if not self.up:
            self.refused += 1
            return Response(status_code=503)
        self.batches.append(json.loads(await request.body()))
        self.auth_headers.append(request.headers.get("authorization", ""))
        self._new.set()
        return Response(status_code=202)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/cb", self._cb, methods=["POST"])])

    @property
    def notes(self) -> list[dict[str, Any]]:
        return [n for b in self.batches for n in b["value"]]

    def for_call(self, call_id: str) -> list[dict[str, Any]]:
        return [
            n for n in self.notes if n["resourceUrl"].startswith(f"/communications/calls/{call_id}")
        ]

    async def wait_for(
        self, pred: Callable[[dict[str, Any]], bool], timeout: float = 10.0, count: int = 1
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            found = [n for n in self.notes if pred(n)]
            if len(found) >= count:
                return found
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for notifications; have {self.notes}")
            self._new.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new.wait(), left)

    def verify_jwt(
        self, header: str, audience: str, *, jwks: dict[str, Any], issuer: str
    ) -> dict[str, Any]:
        """Verify a callback's bearer token as a receiver holding the published ``jwks``
        would: RS256 only, the key named by ``kid``, issuer, audience and tenant required."""
        assert header.startswith("Bearer ")
        token = header[7:]
        kid = jwt.get_unverified_header(token)["kid"]
        key = next(k for k in jwt.PyJWKSet.from_dict(jwks).keys if k.key_id == kid)
        claims: dict[str, Any] = jwt.decode(
            token,
            key.key,
            algorithms=["RS256"],
            audience=audience,
            issuer=issuer,
            options={"require": ["exp", "iat", "tid"]},
        )
        return claims


class StaticToken(AccessTokenProvider):
    def __init__(self, token: str) -> None:
        self.token = token

    async def get_authorization_token(
        self, uri: str, additional_authentication_context: dict[str, Any] | None = None
    ) -> str:
        return self.token

    def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
        return AllowedHostsValidator([])


@dataclass
class Service:
    settings: Settings
    media: LoopbackMedia
    app: Any

    @property
    def base(self) -> str:
        return self.settings.effective_base_url()

    def token(self, **kw: Any) -> str:
        kw.setdefault("tenant_id", TENANT)
        kw.setdefault("app_id", APP)
        return mint_token(self.settings, **kw)

    def sdk(self, version: str = "v1.0", token: str | None = None) -> Any:
        return sdk_client(self.base, self.token() if token is None else token, version)

    def verify_callback(self, header: str, audience: str) -> dict[str, Any]:
        """A callback's claims, verified against this service's published keys."""
        signer = self.app.state.signer
        return Receiver().verify_jwt(header, audience, jwks=signer.jwks(), issuer=signer.issuer)

    def incoming_token(self, **kw: Any) -> str:
        """A token of the app incoming calls belong to (``incoming_tenant_id``/``_app_id``)."""
        s = self.settings
        return self.token(tenant_id=s.incoming_tenant_id, app_id=s.incoming_app_id, **kw)

    def incoming_sdk(self, version: str = "v1.0") -> Any:
        """An SDK client acting as the app incoming calls belong to."""
        return self.sdk(version, token=self.incoming_token())


def make_settings(tmp: Path, db_url: str, port: int, **over: Any) -> Settings:
    base: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "data_dir": tmp,
        "database_url": db_url,
        "jwt_hs256_secret": SECRET,
        "loopback_speed": 0.05,
        "notify_backoff_initial_s": 0.05,
        "notify_backoff_max_s": 0.3,
        "notify_retry_for_s": 60.0,
        "notify_timeout_s": 2.0,
    }
    base.update(over)
    return Settings(**base)


@contextlib.asynccontextmanager
async def running_service(settings: Settings, media: LoopbackMedia) -> AsyncIterator[Service]:
    app = create_app(settings, media)
    server, task = await serve_in_task(app, settings.port)
    try:
        yield Service(settings, media, app)
    finally:
        await stop(server, task)


def trail(notes: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Each notification as (changeType, call state or operation id), in arrival order."""
    return [
        (n["changeType"], n["resourceData"].get("state") or n["resourceData"]["id"]) for n in notes
    ]


PG_DSN = os.environ.get("DTMFGRAPH_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
"""The machine's PostgreSQL (``scripts/test`` starts it); each test makes its own database."""


async def fresh_pg_db() -> str:
    """A new, empty PostgreSQL database; its name."""
    name = f"dtmfgraph_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(PG_DSN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name


async def drop_pg_db(name: str) -> None:
    conn = await asyncpg.connect(PG_DSN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def pg_url(name: str) -> str:
    """The SQLAlchemy URL of database ``name`` on the test PostgreSQL."""
    base = PG_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    return f"{base}/{name}"


@contextlib.asynccontextmanager
async def pg_database() -> AsyncIterator[str]:
    """A fresh PostgreSQL database for one test: its SQLAlchemy URL; dropped afterwards."""
    name = await fresh_pg_db()
    try:
        yield pg_url(name)
    finally:
        await drop_pg_db(name)


def sdk_client(base: str, token: str, version: str = "v1.0") -> Any:
    """The official SDK (``msgraph`` for v1.0, ``msgraph_beta`` for beta) pointed at a
    service at ``base``, with ``token``."""
    if version == "v1.0":
        from msgraph import GraphRequestAdapter, GraphServiceClient
    else:
        from msgraph_beta import GraphRequestAdapter, GraphServiceClient  # type: ignore[no-redef]
    adapter = GraphRequestAdapter(BaseBearerTokenAuthenticationProvider(StaticToken(token)))
    adapter.base_url = f"{base}/{version}"
    return GraphServiceClient(request_adapter=adapter)
