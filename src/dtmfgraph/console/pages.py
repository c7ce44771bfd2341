"""The console's HTML pages (Jinja2 templates shipped in the package) and its login."""

from __future__ import annotations

import secrets
from typing import Final
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ..api.auth import Authenticator, AuthError
from ..service import NotFoundError
from .queries import calls_page
from .sessions import COOKIE, PRE_COOKIE, SESSION_S, Session
from .state import (
    TEMPLATES,
    ConsoleDep,
    ConsoleError,
    ServiceDep,
    SessionDep,
    methods_of,
    page_context,
)

router = APIRouter(prefix="/console", include_in_schema=False)
MAX_FORM: Final = 16384


def set_session_cookie(request: Request, response: Response, session: Session) -> None:
    response.set_cookie(
        COOKIE,
        session.id,
        max_age=int(SESSION_S),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https" or _public_https(request),
        path="/",
    )


def _public_https(request: Request) -> bool:
    """The service is reached over https (``public_base_url``), e.g. behind a TLS proxy."""
    return str(request.app.state.base_url).startswith("https://")


def _page(
    request: Request, session: Session, template: str, status: int = 200, **extra: object
) -> Response:
    response = TEMPLATES.TemplateResponse(
        request, template, page_context(request, session, **extra), status_code=status
    )
    new = getattr(request.state, "new_session", None)
    if new is not None:
        set_session_cookie(request, response, new)
    return response


def _login_page(request: Request, error: str = "", status: int = 200) -> Response:
    nonce = secrets.token_urlsafe(16)
    response = TEMPLATES.TemplateResponse(
        request,
        "login.html",
        {"request": request, "error": error, "nonce": nonce},
        status_code=status,
    )
    response.set_cookie(
        PRE_COOKIE, nonce, max_age=3600, httponly=True, samesite="strict", path="/console"
    )
    return response


@router.get("/login")
async def login(request: Request, state: ConsoleDep, token: str | None = None) -> Response:
    """``?token=``: a one-time link from ``serve`` becomes a session; without one, the form."""
    if token is None:
        return _login_page(request)
    principal = state.auth.spend(token)
    if principal is None:
        return _login_page(request, "This login link is not valid (used already, or expired).", 401)
    session = state.auth.start(principal)
    response = RedirectResponse("/console", status_code=303)
    set_session_cookie(request, response, session)
    return response


@router.post("/login")
async def login_with_api_token(request: Request, state: ConsoleDep) -> Response:
    """A pasted API bearer token logs in as its tenant and app (a urlencoded form)."""
    raw = await request.body()
    if len(raw) > MAX_FORM:
        return _login_page(request, f"The form is larger than {MAX_FORM} bytes.", 413)
    form = parse_qs(raw.decode("utf-8", errors="replace"), max_num_fields=8)
    token = (form.get("token") or [""])[0]
    nonce = (form.get("nonce") or [""])[0]
    if not nonce or not secrets.compare_digest(nonce, request.cookies.get(PRE_COOKIE, "")):
        return _login_page(request, "The form expired: try again.", 403)
    authenticator: Authenticator = request.app.state.authenticator
    try:
        principal = authenticator.principal(f"Bearer {token.strip()}")
    except AuthError as exc:
        return _login_page(request, f"That token was refused: {exc}", 401)
    session = state.auth.start(principal)
    response = RedirectResponse("/console", status_code=303)
    set_session_cookie(request, response, session)
    return response


@router.get("", response_class=HTMLResponse)
async def calls_list(request: Request, session: SessionDep, state: ConsoleDep) -> Response:
    rows = await calls_page(
        request.app.state.repo.engine, session.principal, heard=methods_of(state)
    )
    return _page(request, session, "calls.html", rows=[r.to_json() for r in rows])


@router.get("/calls/{call_id}", response_class=HTMLResponse)
async def call_page(
    call_id: str, request: Request, session: SessionDep, svc: ServiceDep
) -> Response:
    try:
        call = await svc.get_call(session.principal, call_id)
    except NotFoundError:
        raise ConsoleError(404, f"There is no call {call_id} for this app.") from None
    return _page(
        request,
        session,
        "call.html",
        call_id=call.id,
        direction=call.direction.value,
        state=call.state.value,
    )


@router.get("/inbox", response_class=HTMLResponse)
async def inbox_page(request: Request, session: SessionDep, state: ConsoleDep) -> Response:
    if state.inbox is None:
        raise ConsoleError(404, "The built-in inbox is turned off (console_inbox).")
    return _page(request, session, "inbox.html")


def error_page(request: Request, status: int, message: str) -> Response:
    return TEMPLATES.TemplateResponse(
        request,
        "error.html",
        {"request": request, "status": status, "message": message},
        status_code=status,
    )
