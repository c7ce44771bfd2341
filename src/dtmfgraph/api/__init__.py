"""The HTTP API: FastAPI routes under ``/v1.0`` and ``/beta``, auth, Graph errors."""

from .app import build_media, create_app
from .auth import Authenticator, AuthError, mint_token

__all__ = ["AuthError", "Authenticator", "build_media", "create_app", "mint_token"]
