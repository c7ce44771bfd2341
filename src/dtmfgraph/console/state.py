"""The console's state on the app, and the request dependencies its routes share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

from fastapi import Depends, Request

from ..journal import Journal
from ..service import CallService, Principal
from ..settings import Settings
from .inbox import Inbox
from .sessions import COOKIE, ConsoleAuth, Session

if TYPE_CHECKING:
    from fastapi.templating import Jinja2Templates

HERE = Path(__file__).parent


class _Templates:
    """The console's Jinja2 templates, loaded (Jinja2 with them) when the first page is
    rendered, so that a start-up does not pay for them."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._templates: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._templates is None:
            from fastapi.templating import Jinja2Templates  # noqa: PLC0415

            self._templates = Jinja2Templates(directory=str(self._directory))
        return getattr(self._templates, name)


TEMPLATES = cast("Jinja2Templates", _Templates(HERE / "templates"))


@dataclass
class Console:
    settings: Settings
    auth: ConsoleAuth
    journal: Journal
    inbox: Inbox | None
    loopback: bool
    stopping: bool = False


class LoginRequiredError(Exception):
    """No session: pages redirect to the login page, the JSON routes answer 401."""

    def __init__(self, api: bool) -> None:
        self.api = api


class ConsoleError(Exception):
    """A console request that cannot be done: its status and a message for the page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def methods_of(state: Console) -> Callable[[str], set[str]]:
    """The DTMF methods the journal saw in a call (sent and heard)."""

    def methods(call_id: str) -> set[str]:
        journal = state.journal.get(call_id)
        return set(journal.methods) if journal is not None else set()

    return methods


def console(request: Request) -> Console:
    state: Console = request.app.state.console
    return state


def service(request: Request) -> CallService:
    svc: CallService = request.app.state.service
    return svc


def current_session(request: Request) -> Session:
    """The request's session; with API auth off, one is opened for the dev app at once."""
    state = console(request)
    found = state.auth.session(request.cookies.get(COOKIE))
    if found is not None:
        return found
    if state.auth.open_access is not None:
        session = state.auth.start(state.auth.open_access)
        request.state.new_session = session
        return session
    raise LoginRequiredError(api=request.url.path.startswith("/console/api/"))


def csrf_checked(
    request: Request, session: Annotated[Session, Depends(current_session)]
) -> Session:
    """The session, once the POST proved it came from a console page (its CSRF token)."""
    given = request.headers.get("x-csrf-token")
    if not ConsoleAuth.csrf_ok(session, given):
        raise ConsoleError(403, "the request carries no valid CSRF token (reload the page)")
    return session


SessionDep = Annotated[Session, Depends(current_session)]
CsrfSession = Annotated[Session, Depends(csrf_checked)]
ConsoleDep = Annotated[Console, Depends(console)]
ServiceDep = Annotated[CallService, Depends(service)]


def page_context(request: Request, session: Session, **extra: Any) -> dict[str, Any]:
    state = console(request)
    who: Principal = session.principal
    return {
        "request": request,
        "csrf": session.csrf,
        "tenant": who.tenant_id,
        "app": who.app_id,
        "loopback": state.loopback,
        "inbox_url": f"{state.settings.effective_base_url()}/inbox/console",
        "chime_url": f"{state.settings.effective_base_url()}/console/prompts/chime.wav",
        **extra,
    }
