"""Domain and HTTP errors -> the Graph error envelope."""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..graph import error_envelope, validation_message
from ..service import (
    AccessDeniedError,
    InvalidRequestError,
    NotAllowedError,
    NotFoundError,
    NotSupportedError,
    ServiceError,
    ServiceUnavailableError,
)
from .auth import AuthError

log = logging.getLogger(__name__)

_MAP: list[tuple[type[Exception], int, str]] = [
    (NotFoundError, 404, "itemNotFound"),
    (InvalidRequestError, 400, "invalidRequest"),
    (NotAllowedError, 400, "notAllowed"),
    (NotSupportedError, 400, "notSupported"),
    (AccessDeniedError, 403, "accessDenied"),
    (AuthError, 401, "unauthenticated"),
    (ServiceUnavailableError, 503, "serviceNotAvailable"),
]


def graph_error(
    request: Request,
    status: int,
    code: str,
    message: str,
    *,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    state = request.scope.get("state") or {}
    body = error_envelope(
        code,
        message,
        request_id=state.get("request_id", ""),
        client_request_id=state.get("client_request_id"),
    )
    headers = dict(headers or {})
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body, status_code=status, headers=headers or None)


def allowed_methods(request: Request, starlette_allow: str) -> str:
    """Every method served at ``request``'s path, from ``/openapi.json`` (Starlette's
    ``Allow`` names only the first route's methods); ``starlette_allow`` for other paths."""
    methods: set[str] = set()
    for template, ops in request.app.openapi().get("paths", {}).items():
        pattern = re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, request.url.path):
            methods.update(m.upper() for m in ops)
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods)) if methods else starlette_allow


def install(app: FastAPI) -> None:
    async def on_known(request: Request, exc: Exception) -> JSONResponse:
        for typ, status, code in _MAP:
            if isinstance(exc, typ):
                extra = (
                    {"Retry-After": str(exc.retry_after_s)}
                    if isinstance(exc, ServiceUnavailableError)
                    else None
                )
                return graph_error(request, status, code, str(exc), headers=extra)
        return graph_error(request, 500, "generalException", "internal error")

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ValidationError)
        return graph_error(request, 400, "invalidRequest", validation_message(exc))

    async def on_request_validation(request: Request, exc: Exception) -> JSONResponse:
        """FastAPI's own checks (a path parameter, a dev route's body): 400, never 422."""
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        message = f"{where}: {first.get('msg', 'invalid')}" if where else "invalid request"
        return graph_error(request, 400, "invalidRequest", message)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404:
            return graph_error(
                request, 404, "itemNotFound", f"Resource not found for {request.url.path}"
            )
        if exc.status_code == 405:
            allow = allowed_methods(request, (exc.headers or {}).get("Allow", ""))
            return graph_error(
                request,
                405,
                "notAllowed",
                f"{request.method[:20]} is not allowed on this resource (allowed: {allow})",
                headers={"Allow": allow},
            )
        return graph_error(request, exc.status_code, "invalidRequest", str(exc.detail))

    app.add_exception_handler(ServiceError, on_known)
    app.add_exception_handler(AuthError, on_known)
    app.add_exception_handler(ValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_request_validation)
