"""``/openapi.json`` describes the request bodies (the routes still answer with Graph errors)."""

from __future__ import annotations

import re
from typing import Any

import httpx

from .harness import Receiver, Service

TONES = [f"tone{i}" for i in range(10)] + ["star", "pound", "a", "b", "c", "d", "flash"]
ACTIONS = {
    "/communications/calls": ("CreateCallBody", True),
    "/communications/calls/{call_id}/sendDtmfTones": ("SendDtmfTonesBody", True),
    "/communications/calls/{call_id}/cancelMediaProcessing": ("CancelMediaProcessingBody", False),
    "/communications/calls/{call_id}/subscribeToTone": ("SubscribeToToneBody", False),
    "/communications/calls/{call_id}/answer": ("AnswerBody", True),
    "/communications/calls/{call_id}/playPrompt": ("PlayPromptBody", True),
    "/communications/calls/{call_id}/recordResponse": ("RecordResponseBody", True),
    "/communications/calls/{call_id}/reject": ("RejectBody", False),
}


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    assert ref.startswith("#/components/schemas/"), ref
    out: dict[str, Any] = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return out


async def test_request_bodies_in_openapi(svc: Service, receiver: Receiver) -> None:
    async with httpx.AsyncClient() as http:
        resp = await http.get(f"{svc.base}/openapi.json")
    assert resp.status_code == 200
    doc = resp.json()
    bodies: dict[str, dict[str, Any]] = {}
    for version in ("/v1.0", "/beta"):
        for path, (name, required) in ACTIONS.items():
            op = doc["paths"][version + path]["post"]
            body = op["requestBody"]
            assert body["required"] is required, path
            schema = body["content"]["application/json"]["schema"]
            assert schema == {"$ref": f"#/components/schemas/{name}"}
            bodies[name] = resolve(doc, schema)
        assert "requestBody" not in doc["paths"][version + "/communications/calls/{call_id}"]["get"]

    send = bodies["SendDtmfTonesBody"]
    props = send["properties"]
    assert send["required"] == ["tones"]
    assert send.get("additionalProperties") is True  # open type: extensions are kept
    tones = props["tones"]
    assert tones["type"] == "array" and tones["minItems"] == 1 and tones["maxItems"] == 100
    assert resolve(doc, tones["items"])["enum"] == TONES
    delay = props["delayBetweenTonesMs"]
    assert (delay["type"], delay["minimum"], delay["maximum"], delay["default"]) == (
        "integer",
        0,
        10_000,
        100,
    )
    tone = props["toneDurationMs"]
    assert (tone["minimum"], tone["maximum"], tone["default"]) == (40, 2_000, 100)
    assert resolve(doc, props["dtmfMethod"])["enum"] == ["auto", "rfc4733", "sipinfo", "inband"]
    assert props["dtmfMethod"]["default"] == "auto"
    for name in ("SendDtmfTonesBody", "CancelMediaProcessingBody", "SubscribeToToneBody"):
        ctx = bodies[name]["properties"]["clientContext"]
        string = next(s for s in ctx["anyOf"] if s.get("type") == "string")
        assert string["maxLength"] == 256, name
    create = bodies["CreateCallBody"]
    assert set(create["required"]) == {"callbackUri", "targets"}
    assert resolve(doc, bodies["RejectBody"]["properties"]["reason"])["enum"] == [
        "none",
        "busy",
        "forbidden",
    ]
    assert "acceptedModalities" in bodies["AnswerBody"]["properties"]

    # the schema is documentation only: a bad body still gets Graph's envelope, not a 422
    async with httpx.AsyncClient(
        base_url=f"{svc.base}/v1.0", headers={"Authorization": f"Bearer {svc.token()}"}
    ) as http:
        cid = (
            await http.post(
                "/communications/calls",
                json={
                    "callbackUri": receiver.url,
                    "targets": [{"identity": {"user": {"id": "sip:b@127.0.0.1"}}}],
                },
            )
        ).json()["id"]
        resp = await http.post(
            f"/communications/calls/{cid}/sendDtmfTones", json={"tones": ["tone1", "tone99"]}
        )
    assert resp.status_code == 400
    err = resp.json()["error"]
    assert err["code"] == "invalidRequest" and err["message"].startswith("tones[1]: 'tone99'")


async def test_links_lead_from_a_created_call_to_its_operations(svc: Service) -> None:
    """The links schemathesis follows (tests/api/test_schemathesis.py): each names an operation
    of its own version, binds every path parameter of it, and hangs on the status the source
    answers with (201 for a created call, 200 for an action's operation)."""
    async with httpx.AsyncClient() as http:
        doc = (await http.get(f"{svc.base}/openapi.json")).json()
    by_id = {
        op["operationId"]: (path, method)
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
    }
    call = "/communications/calls/{call_id}"
    for version in ("/v1.0", "/beta"):
        create = doc["paths"][f"{version}/communications/calls"]["post"]["responses"]
        links = create["201"]["links"]
        targets = {by_id[link["operationId"]] for link in links.values()}
        assert targets == {
            (f"{version}{call}", "get"),
            (f"{version}{call}", "delete"),
            (f"{version}{call}/operations", "get"),
            (f"{version}{call}/keepAlive", "post"),
            (f"{version}{call}/sendDtmfTones", "post"),
            (f"{version}{call}/cancelMediaProcessing", "post"),
            (f"{version}{call}/subscribeToTone", "post"),
            (f"{version}{call}/playPrompt", "post"),
        }
        assert {str(link["parameters"]) for link in links.values()} == {
            str({"call_id": "$response.body#/id"})
        }
        for action in ("sendDtmfTones", "cancelMediaProcessing", "subscribeToTone", "playPrompt"):
            responses = doc["paths"][f"{version}{call}/{action}"]["post"]["responses"]
            assert [s for s, r in responses.items() if "links" in r] == ["200"], action
            links = responses["200"]["links"]
            assert by_id[links["GetOperation"]["operationId"]] == (
                f"{version}{call}/operations/{{op_id}}",
                "get",
            )
            assert links["GetOperation"]["parameters"] == {
                "call_id": "$request.path.call_id",
                "op_id": "$response.body#/id",
            }
            for name, link in links.items():
                path, _ = by_id[link["operationId"]]
                assert path.startswith(version + "/"), (action, name)
                assert set(link["parameters"]) == set(re.findall(r"{(\w+)}", path))
