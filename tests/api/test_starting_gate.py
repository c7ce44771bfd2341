"""The start gate (``dtmfgraph.api.starting``) in this process, driven as the web server drives
it: what it answers while the API is not up, what waits, and what a failed start answers."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from dtmfgraph.api.starting import Starting


async def _nothing() -> None:
    pass


def _gate() -> Starting:
    return Starting(
        {"/meta": ({"issuer": "é"}, {"Cache-Control": "max-age=1"})}, _nothing, _nothing
    )


async def _get(gate: Starting, path: str, headers: list[tuple[bytes, bytes]] | None = None) -> Any:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": path, "headers": headers or []}
    await gate(scope, receive, send)
    start, body = sent
    return start["status"], dict(start["headers"]), body["body"]


async def test_a_request_waits_for_the_api_then_is_its() -> None:
    gate = _gate()
    waiting = asyncio.create_task(_get(gate, "/v1.0/communications/calls/x"))
    status, headers, body = await _get(gate, "//meta/", [(b"client-request-id", b"abc")])
    assert (status, body) == (200, '{"issuer":"é"}'.encode())
    assert headers[b"cache-control"] == b"max-age=1" and headers[b"client-request-id"] == b"abc"
    status, headers, _ = await _get(gate, "/ready")
    assert status == 503 and headers[b"retry-after"] == b"1"
    await asyncio.sleep(0.05)
    assert not waiting.done()

    async def api(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode()})

    gate.open(api)
    assert (await waiting)[0] == 404
    assert (await _get(gate, "/meta"))[0] == 404  # the API's own now
    assert (await _get(gate, "/health"))[2] == b'{"status":"ready"}'
    assert (await _get(gate, "/ready"))[0] == 200


async def test_a_failed_start_answers_the_waiting_503() -> None:
    gate = _gate()
    waiting = asyncio.create_task(_get(gate, "/v1.0/communications/calls"))
    await asyncio.sleep(0.05)
    gate.fail()
    status, headers, body = await waiting
    assert status == 503 and headers[b"retry-after"] == b"1"
    assert b"serviceNotAvailable" in body and b"request-id" in headers
    assert (await _get(gate, "/health"))[2] == b'{"status":"starting"}'


_PATHS = st.one_of(
    st.sampled_from(["/health", "/ready", "//health/", "/meta", "//meta//", "/"]),
    st.text(min_size=1, max_size=80).map(lambda s: "/" + s),
)
_HEADER_VALUES = st.binary(max_size=200)


@settings(max_examples=300, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST", "HEAD", "DELETE", "BREW"]),
    path=_PATHS,
    client_id=st.one_of(st.none(), _HEADER_VALUES),
    failed=st.booleans(),
)
async def test_hostile_requests_get_an_answer_from_the_gate_never_an_error(
    method: str, path: str, client_id: bytes | None, failed: bool
) -> None:
    """Any method, path and client-request-id, before the API is up (a failed start: its 503)
    or after (the API's answer): one well-formed response, no exception."""
    gate = _gate()
    if failed:
        gate.fail()
    else:

        async def api(scope: Any, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 418, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        gate.open(api)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [] if client_id is None else [(b"client-request-id", client_id)]
    scope = {"type": "http", "method": method, "path": path, "headers": headers}
    await asyncio.wait_for(gate(scope, receive, send), 5)
    start, body = sent
    assert start["type"] == "http.response.start" and body["type"] == "http.response.body"
    own = method == "GET" and path.strip("/") in ("health", "ready", "meta")
    if failed:
        assert start["status"] in ((200, 503) if own else (503,))
    else:
        assert start["status"] in ((200, 418) if own else (418,))
