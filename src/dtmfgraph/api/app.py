"""``create_app``: the FastAPI app, its lifespan (migrations, recovery, outbox), routes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from ..notify import CallbackSigner, Dispatcher
from ..service import CallService, Limits, LoopbackMedia, MediaBackend, ServiceConfig
from ..settings import Settings
from ..store import SqlRepository, upgrade
from . import errors, loopback, routes
from .auth import Authenticator
from .middleware import GraphMiddleware


def service_config(settings: Settings) -> ServiceConfig:
    return ServiceConfig(
        sip_trunk_uri=settings.sip_trunk_uri,
        callback_allowed_hosts=tuple(h.lower() for h in settings.callback_allowed_hosts),
        incoming_tenant_id=settings.incoming_tenant_id,
        incoming_app_id=settings.incoming_app_id,
        incoming_callback_uri=settings.incoming_callback_uri,
        incoming_answer_timeout_s=settings.incoming_answer_timeout_s,
        keepalive_timeout_s=settings.keepalive_timeout_s,
        dial_timeout_s=settings.dial_timeout_s,
        limits=Limits(),
    )


def create_app(settings: Settings, media: MediaBackend | None = None) -> FastAPI:
    """The Graph API app; ``media`` defaults to ``LoopbackMedia(speed=settings.loopback_speed)``."""
    if media is None:
        if settings.media != "loopback":
            raise ValueError(f"media backend {settings.media!r} is not available yet")
        media = LoopbackMedia(speed=settings.loopback_speed)
    authenticator = Authenticator(settings)
    secret = settings.effective_callback_secret()
    signer = CallbackSigner(
        issuer=settings.callback_issuer,
        hs256_secret=secret,
        rs256_private_key=settings.callback_rs256_private_key,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = settings.effective_database_url()
        if url.startswith("sqlite"):
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        repo = SqlRepository(url)
        await upgrade(repo.engine)
        dispatcher = Dispatcher(
            repo,
            signer,
            timeout_s=settings.notify_timeout_s,
            max_attempts=settings.notify_max_attempts,
            backoff_initial_s=settings.notify_backoff_initial_s,
            backoff_max_s=settings.notify_backoff_max_s,
        )
        service = CallService(repo, media, service_config(settings), on_commit=dispatcher.wake)
        await service.start()
        app.state.repo = repo
        app.state.service = service
        app.state.dispatcher = dispatcher
        task = asyncio.create_task(dispatcher.run())
        try:
            yield
        finally:
            await service.close()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await dispatcher.close()
            await repo.close()

    app = FastAPI(
        title="dtmfgraph",
        summary="Microsoft Graph calls API for DTMF, backed by a real media engine",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.authenticator = authenticator
    app.state.media = media
    app.state.base_url = settings.effective_base_url()
    errors.install(app)
    app.include_router(routes.router, prefix="/v1.0")
    app.include_router(routes.router, prefix="/beta")
    if isinstance(media, LoopbackMedia):
        app.include_router(loopback.router)
    app.add_middleware(GraphMiddleware)
    return app
