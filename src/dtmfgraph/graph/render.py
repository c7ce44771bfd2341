"""Generic wire helpers: ``@odata.type`` values, the OData error envelope, validation messages."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from pydantic.alias_generators import to_camel


def odata_type(name: str) -> str:
    """``sendDtmfTonesOperation`` -> ``#microsoft.graph.sendDtmfTonesOperation``."""
    return f"#microsoft.graph.{name}"


def error_envelope(
    code: str, message: str, *, request_id: str, client_request_id: str | None
) -> dict[str, Any]:
    """The Graph error body."""
    inner: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "request-id": request_id,
    }
    if client_request_id is not None:
        inner["client-request-id"] = client_request_id
    return {"error": {"code": code, "message": message, "innerError": inner}}


def _loc(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            name = part if not part.islower() or "_" not in part else to_camel(part)
            out += ("." if out else "") + name
    return out or "body"


def validation_message(exc: ValidationError) -> str:
    """One precise line per problem, naming the field in camelCase, e.g. ``tones[3]: ...``."""
    parts = []
    for err in exc.errors(include_url=False):
        where = _loc(err["loc"])
        msg = err["msg"]
        if err["type"] == "missing":
            msg = "is required"
        elif err["type"] == "string_too_long":
            msg = f"must be at most {err['ctx']['max_length']} characters"
        elif err["type"] == "enum":
            msg = f"{err['input']!r} is not one of {err['ctx']['expected']}"
        parts.append(f"{where}: {msg}")
    return "; ".join(parts)
