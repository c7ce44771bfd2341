"""The request bodies in ``/openapi.json``.

The routes read their JSON bodies themselves (to answer with Graph's error envelope and our
own precise messages, never FastAPI's 422), so FastAPI cannot see the body models. Each route
declares its body with :func:`request_body` (``openapi_extra``), and :func:`install` puts the
models' JSON Schemas into ``components/schemas`` together with the limits the service enforces.
"""

from __future__ import annotations

import copy
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


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": REF.format(model="GraphError")}}},
    }


def _json(model: str, description: str, **extra: Any) -> dict[str, Any]:
    content = {"application/json": {"schema": {"$ref": REF.format(model=model)}}}
    return {"description": description, "content": content, **extra}


LOCATION = {"Location": {"description": "The resource's URL", "schema": {"type": "string"}}}
ERRORS: dict[str, str] = {
    "400": "invalidRequest / notAllowed / notSupported: the message names the field",
    "401": "unauthenticated: no or bad bearer token",
    "403": "accessDenied: the token lacks the role",
    "404": "itemNotFound: no such call or operation (or not the caller's)",
    "408": "invalidRequest: the request body did not arrive in time",
    "413": "invalidRequest: the request body is over the limit",
    "503": "serviceNotAvailable: a resource is exhausted or down for now (Retry-After)",
}
_STATUS = ("not" + "Started", "running", "completed", "failed")
WIRE_SCHEMAS: dict[str, Any] = {
    "GraphError": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "innerError"],
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "innerError": {"type": "object"},
                },
            }
        },
    },
    "Call": {
        "type": "object",
        "required": ["@odata.type", "id", "state"],
        "properties": {
            "@odata.type": {"const": "#microsoft.graph.call"},
            "id": {"type": "string"},
            "state": {"type": "string"},
        },
        "additionalProperties": True,
    },
    "CommsOperation": {
        "type": "object",
        "required": ["@odata.type", "id", "status"],
        "properties": {
            "@odata.type": {"type": "string", "pattern": "^#microsoft\\.graph\\."},
            "id": {"type": "string"},
            "status": {"enum": list(_STATUS)},
        },
        "additionalProperties": True,
    },
    "CommsOperationList": {
        "type": "object",
        "required": ["value"],
        "properties": {
            "value": {"type": "array", "items": {"$ref": REF.format(model="CommsOperation")}}
        },
    },
}
CALL = "/communications/calls/{call_id}"
_NO_BODY = {"description": "No body"}
SUCCESS: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {
    ("post", "/communications/calls"): ("201", _json("Call", "The call", headers=LOCATION)),
    ("get", CALL): ("200", _json("Call", "The call")),
    ("delete", CALL): ("204", {"description": "Hung up"}),
    ("post", CALL + "/keepAlive"): ("200", _NO_BODY),
    ("post", CALL + "/answer"): ("202", _NO_BODY),
    ("post", CALL + "/reject"): ("202", _NO_BODY),
    ("get", CALL + "/operations"): ("200", _json("CommsOperationList", "The operations")),
    ("get", CALL + "/operations/{op_id}"): ("200", _json("CommsOperation", "The operation")),
}
ACTIONS = (
    "sendDtmfTones",
    "cancelMediaProcessing",
    "subscribeToTone",
    "playPrompt",
    "recordResponse",
    "record",
)
for _action in ACTIONS:
    SUCCESS[("post", f"{CALL}/{_action}")] = (
        "200",
        _json("CommsOperation", "The operation", headers=LOCATION),
    )
BEARER = "bearerAuth"
SECURITY_SCHEMES = {
    BEARER: {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
    "recordingAccessToken": {"type": "http", "scheme": "bearer"},
}


LINKED_ACTIONS = ("sendDtmfTones", "cancelMediaProcessing", "subscribeToTone", "playPrompt")
"""The actions a created call links to (and an action's operation to the next ones): the media
queue, its cancellation and tone subscriptions; recordResponse and record wait for audio, and
answer and reject are for incoming calls, so they are left to the per-operation runs."""
ON_CALL: dict[tuple[str, str], str] = {
    ("get", CALL): "GetCall",
    ("delete", CALL): "HangUp",
    ("get", f"{CALL}/operations"): "ListOperations",
    ("post", f"{CALL}/keepAlive"): "KeepAlive",
    **{("post", f"{CALL}/{a}"): a[0].upper() + a[1:] for a in LINKED_ACTIONS},
}
"""The operations on a call that links lead to (by method and path), with their link names."""


def _graph_operation(method: str, path: str, op: dict[str, Any]) -> None:
    """Make one operation of a Graph route say what the service does."""
    op["security"] = [{BEARER: []}]
    op["parameters"] = [p for p in op.get("parameters", []) if p["name"] != "authorization"]
    responses = op.setdefault("responses", {})
    responses.pop("422", None)
    found = SUCCESS.get((method, path))
    if found is not None:
        status, response = found
        responses.pop("200", None)
        responses[status] = copy.deepcopy(response)  # each operation gets links of its own
    elif "501" in responses:
        responses["501"] = _error("notSupported: dtmfgraph does not implement this action")
    for status, text in ERRORS.items():
        responses[status] = _error(text)


def _call_links(ops: dict[tuple[str, str], dict[str, Any]]) -> None:
    """Links of one API version (``ops``: its Graph operations by method and path without the
    version): from a created call (201) to the operations on it (:data:`ON_CALL`), and from an
    action's operation (200) to that operation and to the call's operations but keepAlive."""

    def link(key: tuple[str, str], call_id: str) -> dict[str, Any]:
        return {"operationId": ops[key]["operationId"], "parameters": {"call_id": call_id}}

    created = ops[("post", "/communications/calls")]["responses"]["201"]
    created["links"] = {name: link(key, "$response.body#/id") for key, name in ON_CALL.items()}
    get_op = ops[("get", f"{CALL}/operations/{{op_id}}")]["operationId"]
    for action in LINKED_ACTIONS:
        links = {
            "GetOperation": {
                "operationId": get_op,
                "parameters": {"call_id": "$request.path.call_id", "op_id": "$response.body#/id"},
            }
        }
        links.update(
            (name, link(key, "$request.path.call_id"))
            for key, name in ON_CALL.items()
            if name != "KeepAlive"
        )
        ops[("post", f"{CALL}/{action}")]["responses"]["200"]["links"] = links


def make_true(schema: dict[str, Any]) -> None:
    """Post-process FastAPI's document so that it tells the truth (issue 14): every status a
    route answers with its body (the Graph error envelope for errors; none for 204, keepAlive,
    answer and reject), the bearer security scheme instead of an optional header, no 422
    (the service never answers it), and links from a created call to its actions."""
    paths: dict[str, dict[str, Any]] = schema.get("paths", {})
    graph: list[tuple[str, str, str, dict[str, Any]]] = []
    for full, ops in paths.items():
        for version in ("/v1.0", "/beta"):
            if full.startswith(version + "/"):
                for method, op in ops.items():
                    graph.append((version, method, full.removeprefix(version), op))
    by_version: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
    for version, method, path, op in graph:
        _graph_operation(method, path, op)
        by_version.setdefault(version, {})[(method, path)] = op
    for version_ops in by_version.values():
        _call_links(version_ops)
    for full, ops in paths.items():
        if full.startswith(("/v1.0/", "/beta/")):
            continue
        for op in ops.values():
            responses = op.setdefault("responses", {})
            responses.pop("422", None)
            op["parameters"] = [p for p in op.get("parameters", []) if p["name"] != "authorization"]
            if full.startswith("/recordings/"):
                op["security"] = [{"recordingAccessToken": []}]
                responses["200"] = {
                    "description": "The recording (a WAV file)",
                    "content": {
                        "application/octet-stream": {
                            "schema": {"type": "string", "format": "binary"}
                        }
                    },
                }
                for status in ("401", "404"):
                    responses[status] = _error(ERRORS[status])
            elif full.startswith("/_loopback/"):
                for status in ("400", "404", "408", "413"):
                    responses[status] = _error(
                        ERRORS[status].replace("call or operation", "loopback call")
                    )
                if full.endswith("/played"):
                    responses["200"] = {
                        "description": "What the bot played to the far end (WAV)",
                        "content": {
                            "audio/wav": {"schema": {"type": "string", "format": "binary"}}
                        },
                    }
    components = schema.setdefault("components", {})
    components.setdefault("schemas", {}).update(WIRE_SCHEMAS)
    components["securitySchemes"] = SECURITY_SCHEMES
    for name in ("HTTPValidationError", "ValidationError"):
        components["schemas"].pop(name, None)


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
            make_true(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    replace: Callable[[], dict[str, Any]] = openapi
    app.openapi = replace  # type: ignore[method-assign]
