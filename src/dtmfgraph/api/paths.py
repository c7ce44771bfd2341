"""What a request names: its path with Graph's URL quirks normalised before it is routed, and
the ``client-request-id`` that is echoed."""

from __future__ import annotations

import re

_SLASHES = re.compile(r"/{2,}")
CLIENT_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")
"""A ``client-request-id`` we echo (Graph's are GUIDs)."""


def normalise_path(path: str) -> str:
    """Collapse ``//``; ``/app/calls`` -> ``/communications/calls``; drop ``microsoft.graph.``."""
    path = _SLASHES.sub("/", path)
    parts = path.split("/")
    if len(parts) > 3 and parts[2] == "app" and parts[3] == "calls":
        parts[2:4] = ["communications", "calls"]
    parts = [p.removeprefix("microsoft.graph.") for p in parts]
    out = "/".join(parts)
    return out[:-1] if len(out) > 1 and out.endswith("/") else out


__all__ = ["CLIENT_REQUEST_ID", "normalise_path"]
