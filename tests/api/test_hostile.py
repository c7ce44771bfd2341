"""Hostile and careless clients (issue 14): every bad request a precise 4xx with the Graph
envelope, on SQLite and PostgreSQL alike, and the call it aimed at still usable afterwards."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from dtmfgraph.store.tables import outbox

from .conftest import ServiceFactory
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


async def test_a_body_over_the_cap_is_a_413_and_stores_nothing(
    svc: Service, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    assert svc.settings.max_body_bytes == 64 * 1024  # the documented default
    big = create_body(receiver, subject="x" * (64 * 1024))
    r = await client.post(V, json=big)  # refused by its Content-Length, unread
    graph_error(r, 413, "invalidRequest", str(64 * 1024))
    assert "request-id" in r.headers

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: refused as it passes
        yield json.dumps(create_body(receiver))[:-1].encode()
        for _ in range(100):
            yield b', "x": "' + b"y" * 1000 + b'"'
        yield b"}"

    r = await client.post(V, content=chunks(), headers={"Content-Type": "application/json"})
    graph_error(r, 413, "invalidRequest", str(64 * 1024))
    # just under the cap is taken
    r = await client.post(V, json=create_body(receiver, subject="x" * (60 * 1024)))
    assert r.status_code == 201, r.text


async def test_the_body_cap_is_a_setting(
    service_factory: ServiceFactory, receiver: Receiver
) -> None:
    async with (
        service_factory(max_body_bytes=2048) as svc,
        httpx.AsyncClient(
            base_url=svc.base, headers={"Authorization": f"Bearer {svc.token()}"}
        ) as c,
    ):
        r = await c.post(V, json=create_body(receiver, subject="x" * 2048))
        graph_error(r, 413, "invalidRequest", "2048")
        r = await c.post(V, json=create_body(receiver, subject="x" * 1024))
        assert r.status_code == 201, r.text


async def test_a_body_that_trickles_is_cut_off_with_408(
    service_factory: ServiceFactory, receiver: Receiver
) -> None:
    async with service_factory(body_read_timeout_s=0.5) as svc:
        reader, writer = await asyncio.open_connection("127.0.0.1", svc.settings.port)
        body = json.dumps(create_body(receiver)).encode()
        writer.write(
            b"POST /v1.0/communications/calls HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: Bearer {svc.token()}\r\n".encode()
            + f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body[:10]
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 408 "), head
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        error = json.loads(await reader.readexactly(length))["error"]
        assert error["code"] == "invalidRequest" and "0.5 s" in error["message"]
        writer.close()


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (json.dumps({f"k{i}": i for i in range(300)}), ["wide", "256"]),
        ('{"d": ' * 40 + "{}" + "}" * 40, ["deeper", "32"]),
        ("[" * 2000 + "]" * 2000, ["deeper", "32"]),
        ("[" * 30000 + "]" * 30000, ["deeper", "32"]),
    ],
    ids=["300 members", "40 levels", "2000 levels", "30000 levels"],
)
async def test_open_type_extras_are_bounded(
    svc: Service, client: httpx.AsyncClient, receiver: Receiver, extra: str, words: list[str]
) -> None:
    def with_extra(body: dict[str, Any]) -> bytes:
        name = "wide" if "wide" in words else "deep"
        return (json.dumps(body)[:-1] + f', "{name}": {extra}}}').encode()

    json_type = {"Content-Type": "application/json"}
    r = await client.post(V, content=with_extra(create_body(receiver)), headers=json_type)
    graph_error(r, 400, "invalidRequest", *words)
    # sendDtmfTones is an open type too
    cid = await new_call(client, receiver)
    r = await client.post(f"{V}/{cid}/sendDtmfTones", content=with_extra(DTMF), headers=json_type)
    graph_error(r, 400, "invalidRequest", *words)


BAD_CALLBACKS = {
    "port 99999": "http://localhost:99999/cb",
    "port 0": "http://localhost:0/cb",
    "CR LF": "http://localhost:8000/cb\r\nX-Evil: 1",
    "NUL": "http://localhost:8000/cb\x00",
    "space": "http://localhost:8000/c b",
    "non-ASCII": "https://example.com/caf\u00e9",
    "3000 characters": "https://example.com/" + "a" * 3000,
    "unclosed IPv6": "http://[::1",
    "bad port": "http://localhost:80x/cb",
}


@pytest.mark.parametrize("uri", BAD_CALLBACKS.values(), ids=BAD_CALLBACKS.keys())
async def test_a_callback_uri_that_cannot_be_delivered_to_is_a_400(
    svc: Service, client: httpx.AsyncClient, receiver: Receiver, uri: str
) -> None:
    r = await client.post(V, json=create_body(receiver) | {"callbackUri": uri})
    graph_error(r, 400, "invalidRequest", "callbackUri")
    # answer checks it the same way, and the call stays answerable
    await svc.media.incoming("+14255550123", "sip:bot@127.0.0.1")
    [created] = await receiver.wait_for(lambda n: n["changeType"] == "created")
    cid = created["resourceData"]["id"]
    answer = {"callbackUri": uri, "acceptedModalities": ["audio"], "mediaConfig": {}}
    async with httpx.AsyncClient(
        base_url=svc.base, headers={"Authorization": f"Bearer {svc.incoming_token()}"}
    ) as c:
        r = await c.post(f"{V}/{cid}/answer", json=answer)
        graph_error(r, 400, "invalidRequest", "callbackUri")
        r = await c.post(f"{V}/{cid}/answer", json=answer | {"callbackUri": receiver.url})
        assert r.status_code == 202, r.text


async def test_any_delivery_error_is_a_failed_attempt(
    service_factory: ServiceFactory, receiver: Receiver
) -> None:
    # incoming_callback_uri is configuration (not checked by the policy): one httpx refuses
    async with service_factory(incoming_callback_uri="http://localhost:99999/cb") as svc:
        await svc.media.incoming("+14255550123", "sip:bot@127.0.0.1")
        engine = svc.app.state.repo.engine
        for _ in range(200):
            async with engine.connect() as conn:
                rows = (await conn.execute(sa.select(outbox))).mappings().all()
            if rows and rows[0]["attempts"] >= 1:
                break
            await asyncio.sleep(0.05)
        [row] = rows
        assert row["attempts"] >= 1 and "65535" in row["last_error"], row


def forged(header: dict[str, Any]) -> str:
    """A token whose JOSE header is ``header`` (any JSON), with a junk signature."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    claims = {"tid": "t", "appid": "a", "iss": "dtmfgraph", "aud": "dtmfgraph", "exp": 2**40}
    return ".".join([b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), "c2ln"])


@pytest.mark.parametrize(
    "header",
    [
        {"alg": ["HS256"], "typ": "JWT"},
        {"alg": {"HS256": 1}, "typ": "JWT"},
        {"alg": 256},
        {"alg": None},
        {"alg": "HS256", "kid": ["x"], "crit": [{"a": 1}]},
        {"alg": "HS256", "typ": {"x": 1}},
    ],
    ids=["alg list", "alg object", "alg number", "alg null", "odd kid and crit", "typ object"],
)
async def test_a_forged_jose_header_is_a_401_with_one_log_line_at_most(
    svc: Service, receiver: Receiver, header: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    caplog.clear()
    auth = {"Authorization": f"Bearer {forged(header)}"}
    async with httpx.AsyncClient(base_url=svc.base, headers=auth) as c:
        for r in (
            await c.post(V, json=create_body(receiver)),
            await c.get(f"{V}/some-call"),
            await c.delete(f"{V}/some-call"),
        ):
            graph_error(r, 401, "unauthenticated", "Access token")
            assert r.headers["www-authenticate"] == "Bearer"
    noisy = [rec for rec in caplog.records if rec.levelno >= logging.WARNING]
    assert len(noisy) <= 3 and not any(rec.exc_info for rec in noisy), noisy


async def test_non_utf8_header_bytes_are_a_4xx_or_ignored(
    svc: Service, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    cid = await new_call(client, receiver)
    # a header nobody reads: the request is served as if it were not there
    r = await client.get(f"{V}/{cid}", headers={"X-Whatever": b"\xff\xfe caf\xe9"})
    assert r.status_code == 200, r.text
    r = await client.get(f"{V}/{cid}", headers={"client-request-id": b"\xffbad"})
    graph_error(r, 400, "invalidRequest", "client-request-id")
    r = await client.post(
        f"{V}/{cid}/sendDtmfTones", json=DTMF, headers={"Repeatability-Request-ID": b"k\xff"}
    )
    graph_error(r, 400, "invalidRequest", "Repeatability-Request-ID")
    for value in (b"Bearer \xff\xfe.\xff.\xff", b"\xffBearer x"):
        r = await client.get(f"{V}/{cid}", headers={"Authorization": value})
        graph_error(r, 401, "unauthenticated")
    # a good client-request-id is echoed
    r = await client.get(f"{V}/{cid}", headers={"client-request-id": "abc-123"})
    assert r.headers["client-request-id"] == "abc-123"


async def test_every_action_checks_its_role(
    svc: Service, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    cid = await new_call(client, receiver)
    r = await client.post(f"{V}/{cid}/sendDtmfTones", json=DTMF)
    op_id = r.json()["id"]
    calls = (
        ("GET", f"{V}/{cid}", None),
        ("GET", f"{V}/{cid}/operations", None),
        ("GET", f"{V}/{cid}/operations/{op_id}", None),
        ("POST", f"{V}/{cid}/keepAlive", None),
        ("POST", f"{V}/{cid}/sendDtmfTones", DTMF),
        ("POST", f"{V}/{cid}/cancelMediaProcessing", {}),
        ("POST", f"{V}/{cid}/subscribeToTone", {}),
        ("POST", V, create_body(receiver)),
        ("DELETE", f"{V}/{cid}", None),
    )
    nobody = {"Authorization": f"Bearer {svc.token(roles=())}"}
    for method, url, body in calls:
        r = await client.request(method, url, json=body, headers=nobody)
        graph_error(r, 403, "accessDenied", "Calls.")
    # reading needs either role; hanging up needs Calls.Initiate.All
    media_only = {"Authorization": f"Bearer {svc.token(roles=('Calls.AccessMedia.All',))}"}
    for method, url, _ in calls[:3]:
        r = await client.request(method, url, headers=media_only)
        assert r.status_code == 200, (url, r.text)
    r = await client.delete(f"{V}/{cid}", headers=media_only)
    graph_error(r, 403, "accessDenied", "Calls.Initiate.All")
    # the call was never hung up by them
    r = await client.get(f"{V}/{cid}")
    assert r.json()["state"] in ("establishing", "established"), r.json()
    assert (await client.delete(f"{V}/{cid}")).status_code == 204


async def test_nul_and_odd_ids_are_answered_alike_on_both_databases(
    svc: Service, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    cid = await new_call(client, receiver)
    for bad in ("a%00b", "%00", "x" * 65, "caf%C3%A9"):
        for method, url in (
            ("GET", f"{V}/{bad}"),
            ("DELETE", f"{V}/{bad}"),
            ("GET", f"{V}/{bad}/operations"),
            ("POST", f"{V}/{bad}/sendDtmfTones"),
            ("POST", f"{V}/{bad}/keepAlive"),
            ("GET", f"{V}/{cid}/operations/{bad}"),
        ):
            r = await client.request(method, url, json=DTMF if method == "POST" else None)
            graph_error(r, 404, "itemNotFound")
        r = await client.get(f"/recordings/{bad}", headers={"Authorization": "Bearer x"})
        graph_error(r, 404, "itemNotFound")
    # NUL inside strings of a body: a 400 naming where
    r = await client.post(f"{V}/{cid}/sendDtmfTones", json=DTMF | {"clientContext": "a\x00b"})
    graph_error(r, 400, "invalidRequest", "clientContext", "NUL")
    r = await client.post(f"{V}/{cid}/cancelMediaProcessing", json={"clientContext": "\x00"})
    graph_error(r, 400, "invalidRequest", "clientContext", "NUL")
    r = await client.post(V, json=create_body(receiver, subject="x\x00"))
    graph_error(r, 400, "invalidRequest", "subject", "NUL")
    r = await client.post(V, json=create_body(receiver, **{"we\x00ird": 1}))
    graph_error(r, 400, "invalidRequest", "NUL")
    # and the call is still fine
    r = await client.post(f"{V}/{cid}/sendDtmfTones", json=DTMF | {"clientContext": "ok"})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "raw",
    [b'{"clientContext": "caf\xe9"}', b"\xff\xfe{\x00}\x00", b'{"clientContext": "\\ud800"}'],
    ids=["latin-1", "UTF-16", "lone surrogate"],
)
async def test_a_body_that_is_not_unicode_text_is_a_400(
    svc: Service, client: httpx.AsyncClient, receiver: Receiver, raw: bytes
) -> None:
    cid = await new_call(client, receiver)
    json_type = {"Content-Type": "application/json"}
    for url in (V, f"{V}/{cid}/sendDtmfTones", f"{V}/{cid}/cancelMediaProcessing"):
        r = await client.post(url, content=raw, headers=json_type)
        graph_error(r, 400, "invalidRequest")
    await svc.media.incoming("+14255550123", "sip:bot@127.0.0.1")
    [created] = await receiver.wait_for(lambda n: n["changeType"] == "created")
    token = {"Authorization": f"Bearer {svc.incoming_token()}"}
    for action in ("answer", "reject"):
        url = f"{V}/{created['resourceData']['id']}/{action}"
        r = await client.post(url, content=raw, headers=json_type | token)
        graph_error(r, 400, "invalidRequest")


async def test_made_up_methods_do_not_grow_the_metrics(
    svc: Service, client: httpx.AsyncClient
) -> None:
    for i in range(30):
        r = await client.request(f"X{i}", f"{V}/whatever")
        assert r.status_code in (404, 405), r.text
        r = await client.request(f"FOO{i}", "/metrics")
        assert r.status_code in (404, 405), r.text
    text = (await client.get("/metrics")).text
    methods = {
        line.split('method="')[1].split('"')[0]
        for line in text.splitlines()
        if line.startswith("dtmfgraph_http_requests_total{")
    }
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}
    assert "other" in methods


async def test_loopback_calls_out_of_range_are_404(svc: Service, client: httpx.AsyncClient) -> None:
    for index in ("0", "7", "-1", "99999999999999999999"):
        for method, action in (("POST", "hangup"), ("POST", "press"), ("GET", "played")):
            body = {"keys": "1"} if action == "press" else None
            r = await client.request(method, f"/_loopback/calls/{index}/{action}", json=body)
            graph_error(r, 404, "itemNotFound", "loopback call")
    r = await client.post("/_loopback/calls/abc/hangup")
    graph_error(r, 400, "invalidRequest", "index")
    r = await client.post("/_loopback/calls/0/press", json={"keys": 5})
    graph_error(r, 400, "invalidRequest", "keys")


async def test_the_openapi_document_tells_the_truth(
    svc: Service, client: httpx.AsyncClient
) -> None:
    doc = (await client.get("/openapi.json")).json()
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert '"422"' not in json.dumps(doc)  # the service never answers 422
    call = "/v1.0/communications/calls/{call_id}"
    ops = doc["paths"]
    for method, path, status in (
        ("post", call + "/keepAlive", "200"),
        ("post", call + "/answer", "202"),
        ("post", call + "/reject", "202"),
        ("delete", call, "204"),
    ):
        assert "content" not in ops[path][method]["responses"][status], (path, status)
    for method, path in (("get", call), ("post", call + "/sendDtmfTones")):
        op = ops[path][method]
        assert op["security"] == [{"bearerAuth": []}]
        assert "authorization" not in [p["name"] for p in op.get("parameters", [])]
        for status in ("400", "401", "403", "404", "408", "413", "503"):
            assert status in op["responses"], (path, status)
    links = ops["/v1.0/communications/calls"]["post"]["responses"]["201"]["links"]
    assert any(link["parameters"] == {"call_id": "$response.body#/id"} for link in links.values())
    # a method no route serves: 405 naming every method the path has
    r = await client.put(f"{V}/some-call")
    graph_error(r, 405, "notAllowed")
    assert set(r.headers["allow"].split(", ")) >= {"GET", "DELETE"}, r.headers
