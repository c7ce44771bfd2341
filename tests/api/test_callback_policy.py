"""callbackUri policy end to end: https always; http only to loopback and allow-listed hosts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from .conftest import ServiceFactory
from .harness import Receiver, serve_in_task, stop

ALLOWED = "127.0.0.2"


@pytest.fixture
async def listed_receiver() -> AsyncIterator[Receiver]:
    """A webhook receiver on 127.0.0.2: loopback traffic, but not a host that takes http
    callbacks unless it is allow-listed."""
    r = Receiver(host=ALLOWED)
    server, task = await serve_in_task(r.app(), r.port, host=ALLOWED)
    try:
        yield r
    finally:
        await stop(server, task)


def body(callback: str) -> dict[str, Any]:
    return {"callbackUri": callback, "targets": [{"identity": {"user": {"id": "sip:b@h"}}}]}


async def test_callback_uri_policy(
    service_factory: ServiceFactory, listed_receiver: Receiver, receiver: Receiver
) -> None:
    hosts = [ALLOWED, "hooks.example"]
    async with (
        service_factory(callback_allowed_hosts=hosts) as svc,
        httpx.AsyncClient(
            base_url=f"{svc.base}/v1.0", headers={"Authorization": f"Bearer {svc.token()}"}
        ) as http,
    ):
        # http:// to an allow-listed host: accepted and delivered there
        resp = await http.post("/communications/calls", json=body(listed_receiver.url))
        assert resp.status_code == 201, resp.text
        cid = resp.json()["id"]
        await listed_receiver.wait_for(
            lambda n: (
                n["resourceData"].get("state") == "established"
                and n["resourceUrl"] == f"/communications/calls/{cid}"
            )
        )

        # http:// to loopback: accepted without being listed
        resp = await http.post("/communications/calls", json=body(receiver.url))
        assert resp.status_code == 201, resp.text

        # http:// to any other host: 400 naming callbackUri (nothing is created)
        for uri in (
            "http://198.51.100.7/cb",
            "http://hooks.example.org/cb",  # not hooks.example
            "http://127.0.0.3/cb",  # loopback range, but neither listed nor 127.0.0.1
        ):
            resp = await http.post("/communications/calls", json=body(uri))
            assert resp.status_code == 400, (uri, resp.text)
            err = resp.json()["error"]
            assert err["code"] == "invalidRequest"
            assert err["message"].startswith("callbackUri: must be an https URL"), err
            assert repr(uri) in err["message"]
        for uri in ("ftp://198.51.100.7/cb", "/relative/cb", "https:///nohost"):
            resp = await http.post("/communications/calls", json=body(uri))
            assert resp.status_code == 400, (uri, resp.text)
            assert resp.json()["error"]["message"].startswith("callbackUri: "), uri

        # https:// to any host: accepted (a closed loopback port, so nothing leaves the machine;
        # https to other hosts is checked without a call in tests/service)
        resp = await http.post("/communications/calls", json=body("https://127.0.0.3:9/cb"))
        assert resp.status_code == 201, resp.text
        assert resp.json()["callbackUri"] == "https://127.0.0.3:9/cb"
        resp = await http.delete(f"/communications/calls/{resp.json()['id']}")
        assert resp.status_code == 204
