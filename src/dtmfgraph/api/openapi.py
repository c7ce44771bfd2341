"""The request bodies in ``/openapi.json``.

The routes read their JSON bodies themselves (to answer with Graph's error envelope and our
own precise messages, never FastAPI's 422), so FastAPI cannot see the body models. Each route
declares its body with :func:`request_body` (``openapi_extra``), and :func:`install` puts the
models' JSON Schemas into ``components/schemas`` together with the limits the service enforces.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema

from ..graph import (
    AnswerBody,
    CancelMediaProcessingBody,
    CreateCallBody,
    PlayPromptBody,
    RecordResponseBody,
    RejectBody,
    SendDtmfTonesBody,
    SubscribeToToneBody,
    WireModel,
)
from ..service import Limits

BODY_MODELS: tuple[type[WireModel], ...] = (
    CreateCallBody,
    SendDtmfTonesBody,
    CancelMediaProcessingBody,
    SubscribeToToneBody,
    AnswerBody,
    RejectBody,
    PlayPromptBody,
    RecordResponseBody,
)
REF = "#/components/schemas/{model}"


def request_body(model: type[WireModel], *, required: bool) -> dict[str, Any]:
    """``openapi_extra`` declaring ``model`` as the JSON request body of a route."""
    return {
        "requestBody": {
            "required": required,
            "content": {"application/json": {"schema": {"$ref": REF.format(model=model.__name__)}}},
        }
    }


def body_schemas(limits: Limits) -> dict[str, Any]:
    """JSON Schemas of the request bodies (and the enums they use), with our limits."""
    _, top = models_json_schema([(m, "validation") for m in BODY_MODELS], ref_template=REF)
    schemas: dict[str, Any] = top["$defs"]
    props = schemas[SendDtmfTonesBody.__name__]["properties"]
    props["tones"]["maxItems"] = limits.max_tones
    for name, lo, hi, default in (
        ("delayBetweenTonesMs", 0, limits.delay_max_ms, limits.delay_default_ms),
        ("toneDurationMs", limits.tone_min_ms, limits.tone_max_ms, limits.tone_default_ms),
    ):
        props[name] = {
            "type": "integer",
            "format": "int32",
            "minimum": lo,
            "maximum": hi,
            "default": default,
            "description": props[name].get("description", ""),
        }
    return schemas


def install(app: FastAPI, limits: Limits) -> None:
    """Make ``app.openapi()`` include the request body schemas."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(body_schemas(limits))
            app.openapi_schema = schema
        return app.openapi_schema

    replace: Callable[[], dict[str, Any]] = openapi
    app.openapi = replace  # type: ignore[method-assign]
