"""The OpenID metadata document that tells a callback receiver our issuer and keys.

Plain data from the issuer and the base URL: ``serve`` answers it before the rest of the API
has loaded (``dtmfgraph.api.starting``), and the API's own route serves the same document."""

from __future__ import annotations

from typing import Any

METADATA_PATHS = ("/.well-known/openid-configuration", "/v1/.well-known/OpenIdConfiguration")
"""Where the metadata is served (the second is the path Graph's samples read)."""
CACHE_HEADERS = {"Cache-Control": "public, max-age=300"}
"""Keys and metadata may be cached for 5 minutes."""


def openid_configuration(issuer: str, base_url: str) -> dict[str, Any]:
    """The OpenID metadata document (shape of Bot Framework's, with our addresses)."""
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{base_url}/invalid",
        "jwks_uri": f"{base_url}/v1/keys",
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
    }


__all__ = ["CACHE_HEADERS", "METADATA_PATHS", "openid_configuration"]
