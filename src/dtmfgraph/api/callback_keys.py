"""What a receiver needs to validate our callbacks: the keys and the OpenID metadata.

``GET /v1/keys`` (and ``/.well-known/dtmfgraph/jwks.json``): the JSON Web Key Set, each key with
``kid``, ``x5t`` and ``x5c``. ``GET /.well-known/openid-configuration`` and
``/v1/.well-known/OpenIdConfiguration`` (the path Graph's samples read): the metadata naming the
issuer and ``jwks_uri``. No token needed; cacheable for 5 minutes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ..notify import CallbackSigner
from ..openid import CACHE_HEADERS as _CACHE
from ..openid import METADATA_PATHS

JWKS_PATHS = ("/v1/keys", "/.well-known/dtmfgraph/jwks.json")

router = APIRouter(include_in_schema=False)


def _signer(request: Request) -> CallbackSigner:
    signer: CallbackSigner = request.app.state.signer
    return signer


async def jwks(request: Request) -> JSONResponse:
    return JSONResponse(_signer(request).jwks(), headers=_CACHE)


async def metadata(request: Request) -> JSONResponse:
    doc = _signer(request).openid_configuration(request.app.state.base_url)
    return JSONResponse(doc, headers=_CACHE)


for _path in JWKS_PATHS:
    router.add_api_route(_path, jwks, methods=["GET"])
for _path in METADATA_PATHS:
    router.add_api_route(_path, metadata, methods=["GET"])

__all__ = ["JWKS_PATHS", "METADATA_PATHS", "router"]
