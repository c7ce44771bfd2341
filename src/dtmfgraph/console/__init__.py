"""The browser console inside ``dtmfgraph serve`` (see docs/console.md).

Pages and JSON over the same :class:`~dtmfgraph.service.CallService` as the Graph API, scoped
the same way (a login sees its own tenant's and app's calls), fed live by the per-call
:class:`~dtmfgraph.journal.Journal`. No layer below imports this package."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from ..api.auth import DEV_PRINCIPAL
from ..journal import Journal
from ..notify import CallbackSigner
from ..settings import Settings
from . import api, media, pages
from .inbox import Inbox
from .sessions import ConsoleAuth
from .state import HERE, Console, ConsoleError, LoginRequiredError


def install(
    app: FastAPI, settings: Settings, journal: Journal, signer: CallbackSigner, *, loopback: bool
) -> Console:
    """Mount the console (``/console``), its static files and the inbox (``/inbox/{name}``)."""
    inbox = None
    if settings.console_inbox:
        inbox = Inbox(
            issuer=signer.issuer,
            secret=settings.effective_callback_secret(),
            jwks=signer.jwks(),
            hub=journal.hub,
        )
    state = Console(
        settings=settings,
        auth=ConsoleAuth(open_access=None if settings.auth_enabled else DEV_PRINCIPAL),
        journal=journal,
        inbox=inbox,
        loopback=loopback,
    )
    app.state.console = state
    app.include_router(pages.router)
    app.include_router(api.router)
    app.include_router(media.router)
    app.include_router(api.inbox_router)
    app.mount("/console/static", StaticFiles(directory=HERE / "static"), name="console-static")

    @app.exception_handler(LoginRequiredError)
    async def login_required(request: Request, exc: LoginRequiredError) -> Response:
        if exc.api:
            return JSONResponse({"error": "log in first"}, status_code=401)
        return RedirectResponse("/console/login", status_code=303)

    @app.exception_handler(ConsoleError)
    async def console_error(request: Request, exc: ConsoleError) -> Response:
        if request.url.path.startswith("/console/api/"):
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        return pages.error_page(request, exc.status, exc.message)

    return state


__all__ = ["Console", "install"]
