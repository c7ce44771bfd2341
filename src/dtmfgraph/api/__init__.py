"""The HTTP API: FastAPI routes under ``/v1.0`` and ``/beta``, auth, Graph errors.

The names below are imported on first use (PEP 562), so that a light module of this package
(``starting``, ``paths``) can be imported without FastAPI, the service, the store and the
media stack: ``serve`` answers its first requests while those load."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import build_media, create_app
    from .auth import Authenticator, AuthError, mint_token

_WHERE = {
    "build_media": ".app",
    "create_app": ".app",
    "Authenticator": ".auth",
    "AuthError": ".auth",
    "mint_token": ".auth",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name], __name__), name)


__all__ = ["AuthError", "Authenticator", "build_media", "create_app", "mint_token"]
