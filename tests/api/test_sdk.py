"""The Graph API through the official msgraph (v1.0) and msgraph-beta (beta) SDKs."""

from __future__ import annotations

import asyncio
import gc

import httpx
import pytest

from .harness import APP, Receiver, Service
from .sdkhelp import ALL_KEYS, answer_body, context_body, dtmf_body, new_call, sdk_mod

VERSIONS = ["v1.0", "beta"]


def ev(enum: object) -> str:
    """SDK enum -> wire string (the SDK's enum values are PascalCase)."""
    value = str(enum.value)  # type: ignore[attr-defined]
    return value[:1].lower() + value[1:]


def _is_op_end(op_id: str):  # type: ignore[no-untyped-def]
    return lambda n: n["changeType"] == "deleted" and n["resourceData"].get("id") == op_id


async def _established(receiver: Receiver, call_id: str) -> None:
    await receiver.wait_for(
        lambda n: (
            n["resourceUrl"] == f"/communications/calls/{call_id}"
            and n["resourceData"]["state"] == "established"
        )
    )


@pytest.mark.parametrize("version", VERSIONS)
async def test_send_all_keys_through_sdk(svc: Service, receiver: Receiver, version: str) -> None:
    client = svc.sdk(version)
    call = await client.communications.calls.post(new_call(version, receiver.url))
    assert ev(call.state) == "establishing"
    # Graph's myParticipantId is the bot's participant id, never the call id (spec 9)
    assert call.my_participant_id and call.my_participant_id != call.id
    await _established(receiver, call.id)
    calls = client.communications.calls.by_call_id(call.id)
    assert (await calls.get()).my_participant_id == call.my_participant_id
    op = await calls.send_dtmf_tones.post(
        dtmf_body(
            version,
            ALL_KEYS,
            client_context="ctx-1",
            delay_between_tones_ms=50,
            dtmfMethod="sipinfo",
            toneDurationMs=60,
        )
    )
    send_op_cls = sdk_mod(version, "models.send_dtmf_tones_operation").SendDtmfTonesOperation
    assert isinstance(op, send_op_cls)
    assert ev(op.status) == "running" and op.client_context == "ctx-1"

    [note] = await receiver.wait_for(_is_op_end(op.id))
    assert note["resourceUrl"] == f"/communications/calls/{call.id}/operations/{op.id}"
    data = note["resourceData"]
    assert data["@odata.type"] == "#microsoft.graph.sendDtmfTonesOperation"
    assert (data["status"], data["completionReason"]) == ("completed", "completedSuccessfully")
    assert (data["resultInfo"]["code"], data["resultInfo"]["subcode"]) == (200, 0)
    far = svc.media.calls[0]
    assert far.heard_keys == ALL_KEYS
    assert {m for _, m in far.heard} == {"sipinfo"}
    claims = svc.verify_callback(receiver.auth_headers[-1], audience=APP)
    assert claims["callId"] == call.id

    back = await calls.operations.by_comms_operation_id(op.id).get()
    assert isinstance(back, send_op_cls)
    assert ev(back.status) == "completed"
    assert ev(back.completion_reason) == "completedSuccessfully"
    assert back.result_info.code == 200
    ops = await calls.operations.get()
    assert [o.id for o in ops.value] == [op.id]
    assert len([n for n in receiver.notes if _is_op_end(op.id)(n)]) == 1


async def _odata_error(coro):  # type: ignore[no-untyped-def]
    from kiota_abstractions.api_error import APIError

    with pytest.raises(APIError) as info:
        await coro
    err = info.value
    return err.response_status_code, err.error.code if getattr(err, "error", None) else None


async def test_bad_input_through_sdk(svc: Service, receiver: Receiver) -> None:
    v = "v1.0"
    client = svc.sdk(v)
    call = await client.communications.calls.post(new_call(v, receiver.url))
    calls = client.communications.calls.by_call_id(call.id)

    body = dtmf_body(v, "1")
    body.tones = None
    body.additional_data = {"tones": ["tone1", "tone99"]}
    assert await _odata_error(calls.send_dtmf_tones.post(body)) == (400, "invalidRequest")
    assert await _odata_error(
        calls.send_dtmf_tones.post(dtmf_body(v, "1", client_context="x" * 257))
    ) == (400, "invalidRequest")
    assert await _odata_error(calls.send_dtmf_tones.post(dtmf_body(v, "1" * 101))) == (
        400,
        "invalidRequest",
    )
    assert await _odata_error(
        calls.send_dtmf_tones.post(dtmf_body(v, "1", delay_between_tones_ms=-5))
    ) == (400, "invalidRequest")  # (small gaps are taken, raised to 40 ms: test_graph_traps)
    unknown = client.communications.calls.by_call_id("00000000-dead-beef-0000-000000000000")
    assert await _odata_error(unknown.send_dtmf_tones.post(dtmf_body(v, "1"))) == (
        404,
        "itemNotFound",
    )
    other = svc.sdk(v, token=svc.token(app_id="another-app"))
    other_calls = other.communications.calls.by_call_id(call.id)
    assert await _odata_error(other_calls.send_dtmf_tones.post(dtmf_body(v, "1"))) == (
        404,
        "itemNotFound",
    )
    assert await _odata_error(other_calls.get()) == (404, "itemNotFound")
    anon = svc.sdk(v, token="")
    assert (await _odata_error(anon.communications.calls.by_call_id(call.id).get()))[0] == 401


async def test_errors_raw(svc: Service, receiver: Receiver) -> None:
    token = svc.token()
    h = {"Authorization": f"Bearer {token}", "client-request-id": "my-id-1"}
    async with httpx.AsyncClient(base_url=svc.base, headers=h) as http:
        r = await http.post("/v1.0/communications/calls", json={"targets": []})
        assert r.status_code == 400
        err = r.json()["error"]
        assert err["code"] == "invalidRequest" and "callbackUri" in err["message"]
        assert err["innerError"]["client-request-id"] == "my-id-1"
        assert err["innerError"]["request-id"] == r.headers["request-id"]
        assert r.headers["client-request-id"] == "my-id-1" and err["innerError"]["date"]
        r = await http.post(
            "/v1.0/communications/calls",
            json={
                "callbackUri": "http://example.com/cb",
                "targets": [{"identity": {"phone": {"id": "+1425"}}}],
            },
        )
        assert r.status_code == 400 and "https" in r.json()["error"]["message"]
        r = await http.post(
            "/v1.0/communications/calls",
            json={"callbackUri": receiver.url, "targets": [{"identity": {"user": {"id": "bob"}}}]},
        )
        assert r.status_code == 400 and "targets[0].identity" in r.json()["error"]["message"]
        # open types: unknown properties are kept; sip: URI dialled directly, inband only
        r = await http.post(
            "/beta//app/calls",
            json={
                "callbackUri": receiver.url,
                "targets": [{"identity": {"user": {"id": "sip:alice@127.0.0.1;dtmf=inband"}}}],
                "myExtension": {"a": 1},
            },
        )
        assert r.status_code == 201, r.text
        call = r.json()
        assert call["myExtension"] == {"a": 1} and call["@odata.type"] == "#microsoft.graph.call"
        assert r.headers["location"].endswith(f"/beta/communications/calls/{call['id']}")
        cid = call["id"]
        await _established(receiver, cid)
        r = await http.post(
            f"/beta/app/calls/{cid}/microsoft.graph.sendDtmfTones", json={"tones": ["flash"]}
        )
        assert r.status_code == 400 and "flash" in r.json()["error"]["message"]
        r = await http.post(
            f"/v1.0/communications/calls/{cid}/sendDtmfTones",
            json={"tones": ["tone1"], "dtmfMethod": "rfc4733"},
        )
        assert r.status_code == 400 and "rfc4733" in r.json()["error"]["message"]
        # Repeatability-Request-ID: the retried action returns the same operation
        rh = {"Repeatability-Request-ID": "rep-1"}
        r1 = await http.post(
            f"/v1.0/communications/calls/{cid}/sendDtmfTones", json={"tones": ["tone5"]}, headers=rh
        )
        r2 = await http.post(
            f"/v1.0/communications/calls/{cid}/sendDtmfTones", json={"tones": ["tone5"]}, headers=rh
        )
        assert r1.status_code == r2.status_code == 200
        assert r1.json()["id"] == r2.json()["id"]
        assert r1.headers["location"].endswith(f"/operations/{r1.json()['id']}")
        await receiver.wait_for(_is_op_end(r1.json()["id"]))
        assert svc.media.calls[0].heard == [("5", "inband")]
        r = await http.get(f"/v1.0/communications/calls/{cid}/operations/nope")
        assert r.status_code == 404 and r.json()["error"]["code"] == "itemNotFound"
        r = await http.post(f"/v1.0/communications/calls/{cid}/keepAlive")
        assert r.status_code == 200


async def test_cancel_mid_sequence(svc: Service, receiver: Receiver) -> None:
    v = "beta"
    client = svc.sdk(v)
    call = await client.communications.calls.post(new_call(v, receiver.url))
    await _established(receiver, call.id)
    calls = client.communications.calls.by_call_id(call.id)
    long_op = await calls.send_dtmf_tones.post(dtmf_body(v, "1234567890" * 8))
    queued = await calls.send_dtmf_tones.post(dtmf_body(v, "999"))
    assert (ev(long_op.status), ev(queued.status)) == ("running", "notStarted")
    await asyncio.sleep(0.3)
    cancel = await calls.cancel_media_processing.post(context_body(v, "cancel", "stop"))
    cancel_op_cls = sdk_mod(
        v, "models.cancel_media_processing_operation"
    ).CancelMediaProcessingOperation
    assert isinstance(cancel, cancel_op_cls) and ev(cancel.status) == "completed"
    heard = svc.media.calls[0].heard_keys
    assert 0 < len(heard) < 80 and ("1234567890" * 8).startswith(heard)
    for op in (long_op, queued):
        [note] = await receiver.wait_for(_is_op_end(op.id))
        assert note["resourceData"]["completionReason"] == "mediaOperationCanceled"
        assert note["resourceData"]["resultInfo"]["subcode"] == 8508
        back = await calls.operations.by_comms_operation_id(op.id).get()
        assert ev(back.completion_reason) == "mediaOperationCanceled"
    await asyncio.sleep(0.3)
    assert svc.media.calls[0].heard_keys == heard
    assert len([n for n in receiver.notes if _is_op_end(long_op.id)(n)]) == 1


async def test_remote_hangup_mid_send(svc: Service, receiver: Receiver) -> None:
    v = "v1.0"
    client = svc.sdk(v)
    call = await client.communications.calls.post(new_call(v, receiver.url))
    await _established(receiver, call.id)
    calls = client.communications.calls.by_call_id(call.id)
    op = await calls.send_dtmf_tones.post(dtmf_body(v, "1234567890" * 5))
    await asyncio.sleep(0.2)
    svc.media.calls[0].remote_hangup()
    [note] = await receiver.wait_for(_is_op_end(op.id))
    assert note["resourceData"]["status"] == "failed"
    assert note["resourceData"]["resultInfo"]["subcode"] == 4097
    [end] = await receiver.wait_for(
        lambda n: (
            n["changeType"] == "deleted" and n["resourceUrl"] == f"/communications/calls/{call.id}"
        )
    )
    assert end["resourceData"]["state"] == "terminated"
    assert end["resourceData"]["resultInfo"]["code"] == 200
    got = await calls.get()
    assert ev(got.state) == "terminated"


async def test_hang_up_mid_send_leaves_no_task_error_unretrieved(
    svc: Service, receiver: Receiver
) -> None:
    """Found by the stateful fuzzing: a DELETE while a key is being sent ended the media job
    with ``CallEndedError`` that nobody read ("Task exception was never retrieved")."""
    loop = asyncio.get_running_loop()
    seen: list[dict[str, object]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    try:
        v = "v1.0"
        client = svc.sdk(v)
        for _ in range(3):
            call = await client.communications.calls.post(new_call(v, receiver.url))
            await _established(receiver, call.id)
            calls = client.communications.calls.by_call_id(call.id)
            op = await calls.send_dtmf_tones.post(dtmf_body(v, "1234567890" * 5))
            await asyncio.sleep(0.2)
            await calls.delete()
            [note] = await receiver.wait_for(_is_op_end(op.id))
            assert note["resourceData"]["status"] in ("completed", "failed")
        await asyncio.sleep(0.2)
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)
    assert not seen, [str(c.get("message")) + repr(c.get("exception")) for c in seen]


async def test_hangup_notifies(svc: Service, receiver: Receiver) -> None:
    v = "v1.0"
    client = svc.sdk(v)
    call = await client.communications.calls.post(new_call(v, receiver.url))
    await _established(receiver, call.id)
    await client.communications.calls.by_call_id(call.id).delete()
    notes = await receiver.wait_for(
        lambda n: n["resourceUrl"] == f"/communications/calls/{call.id}", count=4
    )
    states = [(n["changeType"], n["resourceData"]["state"]) for n in notes]
    assert states == [
        ("updated", "establishing"),
        ("updated", "established"),
        ("updated", "terminating"),
        ("deleted", "terminated"),
    ]
    assert notes[-1]["resourceData"]["resultInfo"]["subcode"] == 7000


async def test_incoming_answer_and_tones(svc: Service, receiver: Receiver) -> None:
    v = "beta"
    inc = await svc.media.incoming("+14255550199", "sip:bot@127.0.0.1")
    [created] = await receiver.wait_for(lambda n: n["changeType"] == "created")
    data = created["resourceData"]
    assert data["state"] == "incoming" and data["direction"] == "incoming"
    cid = data["id"]
    calls = svc.incoming_sdk(v).communications.calls.by_call_id(cid)
    await calls.answer.post(answer_body(v, receiver.url))
    far = await inc.outcome
    assert not isinstance(far, int)
    await _established(receiver, cid)
    sub = await calls.subscribe_to_tone.post(context_body(v, "subscribe", "tones"))
    assert ev(sub.status) == "completed"
    far.press("12#*9")
    tones = await receiver.wait_for(lambda n: "toneInfo" in n["resourceData"], count=5)
    assert [t["resourceData"]["toneInfo"]["tone"] for t in tones] == [
        "tone1",
        "tone2",
        "pound",
        "star",
        "tone9",
    ]
    assert [t["resourceData"]["toneInfo"]["sequenceId"] for t in tones] == [1, 2, 3, 4, 5]
    assert all(t["changeType"] == "updated" for t in tones)
    # no Calls.AccessMedia.All: subscribeToTone is denied
    weak = svc.sdk(v, token=svc.incoming_token(roles=("Calls.Initiate.All",)))
    code = await _odata_error(
        weak.communications.calls.by_call_id(cid).subscribe_to_tone.post(
            context_body(v, "subscribe")
        )
    )
    assert code == (403, "accessDenied")


async def test_incoming_reject(svc: Service, receiver: Receiver) -> None:
    inc = await svc.media.incoming("sip:carol@127.0.0.1", "sip:bot@127.0.0.1")
    [created] = await receiver.wait_for(lambda n: n["changeType"] == "created")
    cid = created["resourceData"]["id"]
    tok = svc.incoming_token()
    async with httpx.AsyncClient(
        base_url=svc.base, headers={"Authorization": f"Bearer {tok}"}
    ) as http:
        r = await http.post(f"/v1.0/communications/calls/{cid}/reject", json={"reason": "busy"})
        assert r.status_code == 202 and r.content == b""
        assert await inc.outcome == 486
        r = await http.get(f"/v1.0/communications/calls/{cid}")
        assert r.json()["state"] == "terminated"
        r = await http.post(f"/v1.0/communications/calls/{cid}/answer", json={})
        assert r.status_code == 400


@pytest.mark.parametrize("version", VERSIONS)
async def test_an_established_calls_audio_is_active(
    svc: Service, receiver: Receiver, version: str
) -> None:
    """``mediaState`` (callMediaState): the SDK reads ``audio: active`` on an established call,
    in its ``established`` notification and from GET; a call still establishing has none."""
    client = svc.sdk(version)
    call = await client.communications.calls.post(new_call(version, receiver.url))
    assert call.media_state is None
    [note] = await receiver.wait_for(
        lambda n: (
            n["resourceData"].get("id") == call.id
            and n["resourceData"].get("state") == "established"
        )
    )
    assert note["resourceData"]["mediaState"] == {
        "@odata.type": "#microsoft.graph.callMediaState",
        "audio": "active",
    }
    back = await client.communications.calls.by_call_id(call.id).get()
    assert back is not None and back.media_state is not None
    assert ev(back.media_state.audio) == "active"
    # the far end holds the call, then resumes it: each change notified, GET follows
    async with httpx.AsyncClient() as http:
        held = await http.post(f"{svc.base}/_loopback/calls/0/hold")
    assert held.status_code == 200
    for audio in ("inactive", "active"):
        [update] = await receiver.wait_for(
            lambda n, audio=audio: (
                n["resourceUrl"] == f"/communications/calls/{call.id}"
                and n["resourceData"].get("mediaState", {}).get("audio") == audio
                and n is not note
            )
        )
        assert update["changeType"] == "updated"
        assert update["resourceData"]["state"] == "established"
        back = await client.communications.calls.by_call_id(call.id).get()
        assert back is not None and back.media_state is not None
        assert ev(back.media_state.audio) == audio
        if audio == "inactive":
            svc.media.calls[0].hold(False)
    states = [
        n["resourceData"]["mediaState"]["audio"]
        for n in receiver.notes
        if n["resourceUrl"] == f"/communications/calls/{call.id}"
        and "mediaState" in n["resourceData"]
    ]
    assert states == ["active", "inactive", "active"]
    # the roster follows the far end's audio direction (spec 5): sendOnly, then sendReceive
    rosters = [
        n["resourceData"]
        for n in await receiver.wait_for(
            lambda n: n["resourceUrl"] == f"/communications/calls/{call.id}/participants",
            count=2,
        )
    ]
    far = [next(p for p in r if p["id"] != call.my_participant_id) for r in rosters]
    assert [p["mediaStreams"][0]["direction"] for p in far] == ["sendOnly", "sendReceive"]
    assert [p["rosterSequenceNumber"] for p in far] == [1, 2]
