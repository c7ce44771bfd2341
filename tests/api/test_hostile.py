"""Hostile and careless clients (issue 14): every bad request a precise 4xx with the Graph
envelope, on SQLite and PostgreSQL alike, and the call it aimed at still usable afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from .harness import Receiver, Service

V = "/v1.0/communications/calls"


@pytest.fixture
async def client(svc: Service) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {svc.token()}"}
    async with httpx.AsyncClient(base_url=svc.base, headers=headers, timeout=20) as c:
        yield c


def create_body(receiver: Receiver, **extra: Any) -> dict[str, Any]:
    return {
        "callbackUri": receiver.url,
        "requestedModalities": ["audio"],
        "targets": [{"identity": {"phone": {"id": "+14255550100"}}}],
        **extra,
    }


async def new_call(client: httpx.AsyncClient, receiver: Receiver) -> str:
    r = await client.post(V, json=create_body(receiver))
    assert r.status_code == 201, r.text
    call_id: str = r.json()["id"]
    return call_id


def graph_error(r: httpx.Response, status: int, code: str, *words: str) -> str:
    """``r`` is a Graph error envelope with ``status`` and ``code`` whose message names each of
    ``words``; its message."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json"), r.headers
    error = r.json()["error"]
    assert error["code"] == code, error
    message: str = error["message"]
    for word in words:
        assert word in message, message
    return message


DTMF = {"tones": ["tone1"], "delayBetweenTonesMs": 0}


@pytest.mark.parametrize(
    "key",
    ["", "k" * 129, "two words", "caf\u00e9"],
    ids=["empty", "129 characters", "space", "non-ascii"],
)
async def test_a_bad_repeatability_key_is_a_400_naming_the_header(
    svc: Service, client: httpx.AsyncClient, receiver: Receiver, key: str
) -> None:
    cid = await new_call(client, receiver)
    url = f"{V}/{cid}/sendDtmfTones"
    for action, body in (("sendDtmfTones", DTMF), ("cancelMediaProcessing", {})):
        for _ in range(2):  # the first one stored nothing: the second is answered the same
            r = await client.post(
                f"{V}/{cid}/{action}",
                json=body,
                headers={"Repeatability-Request-ID": key.encode()},
            )
            graph_error(r, 400, "invalidRequest", "Repeatability-Request-ID")
    # the call still takes keys, with and without a good repeatability key
    for headers in ({}, {"Repeatability-Request-ID": "k" * 128}):
        r = await client.post(url, json=DTMF, headers=headers)
        assert r.status_code == 200, r.text


async def test_a_repeatability_key_belongs_to_one_action_kind(
    svc: Service, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    cid = await new_call(client, receiver)
    key = {"Repeatability-Request-ID": "K-1"}
    sent = await client.post(f"{V}/{cid}/sendDtmfTones", json=DTMF, headers=key)
    assert sent.status_code == 200, sent.text
    op = sent.json()
    # reusing the key for another action is refused: it cancels nothing and returns no send
    for action in ("cancelMediaProcessing", "subscribeToTone"):
        r = await client.post(f"{V}/{cid}/{action}", json={}, headers=key)
        graph_error(r, 400, "invalidRequest", "Repeatability-Request-ID", "sendDtmfTones")
    # a retry of the same action still returns the first operation
    again = await client.post(f"{V}/{cid}/sendDtmfTones", json=DTMF, headers=key)
    assert again.status_code == 200 and again.json()["id"] == op["id"]
    # a cancel with a key of its own cancels; retried, it is the same cancel
    cancel_key = {"Repeatability-Request-ID": "K-2"}
    cancel = await client.post(f"{V}/{cid}/cancelMediaProcessing", json={}, headers=cancel_key)
    assert cancel.json()["@odata.type"] == "#microsoft.graph.cancelMediaProcessingOperation"
    again = await client.post(f"{V}/{cid}/cancelMediaProcessing", json={}, headers=cancel_key)
    assert again.json()["id"] == cancel.json()["id"]
    r = await client.post(f"{V}/{cid}/sendDtmfTones", json=DTMF, headers=cancel_key)
    graph_error(r, 400, "invalidRequest", "cancelMediaProcessing")
