"""A request's JSON body, read with bounds: an object, of bounded depth and breadth.

Graph bodies are open types: properties we do not know are kept (a created call echoes them
in every GET and notification). So what a client may put there is bounded here, before
anything is stored: the body size is capped by :mod:`.limits`; here the nesting depth and the
members of each object or array. Anything else is an ``InvalidRequestError`` (400).
"""

from __future__ import annotations

import json
from typing import Any

from ..service import InvalidRequestError

MAX_DEPTH = 32
"""Deepest nesting of objects and arrays in a body (Graph's own bodies need 6)."""
MAX_MEMBERS = 256
"""Most properties of one object, or items of one array."""


def parse_object(raw: bytes) -> dict[str, Any]:
    """``raw`` as a JSON object within the bounds above; an empty body is ``{}``."""
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw.decode())  # UTF-8 only (RFC 8259), not json's guess of UTF-16/32
    except json.JSONDecodeError as exc:
        raise InvalidRequestError(f"the body is not valid JSON: {exc.msg}") from None
    except UnicodeDecodeError:
        raise InvalidRequestError("the body is not UTF-8 text") from None
    except RecursionError:
        raise InvalidRequestError(f"the body is nested deeper than {MAX_DEPTH} levels") from None
    if not isinstance(data, dict):
        raise InvalidRequestError("the body must be a JSON object")
    check_shape(data)
    return data


def check_text(text: str, where: str) -> None:
    """A string we can store and send: no NUL (PostgreSQL's text cannot hold it), no lone
    surrogate (no UTF-8 for it)."""
    if "\x00" in text:
        raise InvalidRequestError(f"{where or 'the body'}: strings may not contain NUL (\\u0000)")
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            raise InvalidRequestError(
                f"{where or 'the body'}: a string holds a lone surrogate (\\ud800-\\udfff), "
                "which is not Unicode text"
            ) from None


def check_shape(data: Any) -> None:
    """Refuse ``data`` nested deeper than :data:`MAX_DEPTH`, with an object or array of more
    than :data:`MAX_MEMBERS` members, or with a string :func:`check_text` refuses (iterative:
    no recursion to exhaust)."""
    stack: list[tuple[Any, int, str]] = [(data, 1, "")]
    while stack:
        value, depth, where = stack.pop()
        if isinstance(value, str):
            check_text(value, where)
            continue
        if isinstance(value, dict):
            for key in value:
                check_text(key, where)
            items: list[tuple[str, Any]] = [
                (f"{where}.{k}" if where else k, v) for k, v in value.items()
            ]
        elif isinstance(value, list):
            items = [(f"{where}[{i}]", v) for i, v in enumerate(value)]
        else:
            continue
        if depth > MAX_DEPTH:
            raise InvalidRequestError(f"the body is nested deeper than {MAX_DEPTH} levels")
        if len(items) > MAX_MEMBERS:
            name = where or "the body"
            raise InvalidRequestError(
                f"{name}: has {len(items)} members; at most {MAX_MEMBERS} are allowed"
            )
        stack.extend((v, depth + 1, w) for w, v in items)
