"""Console logins: one-time login links, session cookies, CSRF tokens.

``serve`` prints a link with a one-time token (:meth:`ConsoleAuth.login_link`) bound to a
principal (tenant and app); opening it trades the token for a session cookie (``HttpOnly``,
``SameSite=Strict``, ``Secure`` behind https) and the token is spent. Pasting an API bearer
token into the login form does the same for that token's tenant and app. Each session carries
a CSRF token the pages send back with every POST (``X-CSRF-Token`` or a ``csrf`` form field).
Sessions live in memory (a restart logs everyone out); at most ``MAX_SESSIONS``, the oldest
dropped first; each lasts ``SESSION_S``.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

from ..service import Principal

COOKIE: Final = "dtmfgraph_console"
PRE_COOKIE: Final = "dtmfgraph_console_login"
"""A login form's CSRF value (double-submit), set when the login page is shown."""
SESSION_S: Final = 12 * 3600.0
LOGIN_LINK_S: Final = 24 * 3600.0
MAX_SESSIONS: Final = 256
MAX_LINKS: Final = 64


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    principal: Principal
    csrf: str
    expires: float


class ConsoleAuth:
    def __init__(self, *, open_access: Principal | None = None) -> None:
        self.open_access = open_access
        """With API auth off (loopback only), everyone is this principal without a login."""
        self._links: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def login_link(self, principal: Principal) -> str:
        """A new one-time login token for ``principal``."""
        token = secrets.token_urlsafe(32)
        self._links[token] = (principal, time.time() + LOGIN_LINK_S)
        while len(self._links) > MAX_LINKS:
            self._links.popitem(last=False)
        return token

    def spend(self, token: str) -> Principal | None:
        """The principal of a valid one-time token (which is then spent), or ``None``."""
        found = self._links.pop(token, None)
        if found is None or found[1] < time.time():
            return None
        return found[0]

    def start(self, principal: Principal) -> Session:
        session = Session(
            secrets.token_urlsafe(32), principal, secrets.token_urlsafe(24), time.time() + SESSION_S
        )
        self._sessions[session.id] = session
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return session

    def session(self, cookie: str | None) -> Session | None:
        if not cookie:
            return None
        session = self._sessions.get(cookie)
        if session is None:
            return None
        if session.expires < time.time():
            del self._sessions[cookie]
            return None
        return session

    def end(self, cookie: str | None) -> None:
        if cookie:
            self._sessions.pop(cookie, None)

    @staticmethod
    def csrf_ok(session: Session, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(session.csrf, given or "")
