"""The traps a Graph bot falls into (spec sections 7 and 9), each checked the way a bot meets it:
through the official SDKs where they can express it, raw HTTP where they cannot."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kiota_abstractions.api_error import APIError

from dtmfgraph.service import LoopbackMedia

from .harness import Receiver, Service, free_port, make_settings, running_service
from .sdkhelp import answer_body, dtmf_body, new_call, sdk_mod


@pytest.fixture
async def svc(tmp_path: Path, receiver: Receiver) -> AsyncIterator[Service]:
    settings = make_settings(
        tmp_path,
        f"sqlite+aiosqlite:///{tmp_path / 'graph.sqlite3'}",
        free_port(),
        incoming_callback_uri=receiver.url,
        incoming_answer_timeout_s=120.0,  # a first beta SDK request blocks the loop for seconds
    )
    async with running_service(settings, LoopbackMedia(speed=0.05)) as s:
        yield s


def states(receiver: Receiver, call_id: str) -> list[tuple[str, str]]:
    return [
        (n["changeType"], n["resourceData"]["state"])
        for n in receiver.notes
        if n["resourceUrl"] == f"/communications/calls/{call_id}"
    ]


@pytest.mark.parametrize("version", ["v1.0", "beta"])
async def test_answer_notifies_establishing_then_established(
    svc: Service, receiver: Receiver, version: str
) -> None:
    await svc.media.incoming("+14255550123", "sip:bot@127.0.0.1")
    [created] = await receiver.wait_for(lambda n: n["changeType"] == "created")
    data = created["resourceData"]
    # the incoming call's target is the application (its id is the callbacks' aud)
    [target] = data["targets"]
    assert target["@odata.type"] == "#microsoft.graph.invitationParticipantInfo"
    assert target["identity"]["application"]["id"] == svc.settings.incoming_app_id
    calls = svc.incoming_sdk(version).communications.calls.by_call_id(data["id"])
    call = await calls.get()
    assert call.targets[0].identity.application.id == svc.settings.incoming_app_id
    await calls.answer.post(answer_body(version, receiver.url))
    await receiver.wait_for(
        lambda n: (
            n["resourceData"].get("state") == "established"
            and n["resourceUrl"].endswith(data["id"])
        )
    )
    assert states(receiver, data["id"]) == [
        ("created", "incoming"),
        ("updated", "establishing"),
        ("updated", "established"),
    ]


async def test_answer_without_media_config_fails_as_in_graph(
    svc: Service, receiver: Receiver
) -> None:
    await svc.media.incoming("+14255550123", "sip:bot@127.0.0.1")
    [created] = await receiver.wait_for(lambda n: n["changeType"] == "created")
    cid = created["resourceData"]["id"]
    calls = svc.incoming_sdk().communications.calls.by_call_id(cid)
    body = sdk_mod(
        "v1.0", "communications.calls.item.answer.answer_post_request_body"
    ).AnswerPostRequestBody(callback_uri=receiver.url)
    with pytest.raises(APIError) as info:
        await calls.answer.post(body)
    assert info.value.response_status_code == 400
    assert info.value.error.code == "invalidRequest"  # type: ignore[attr-defined]
    assert "mediaConfig: is required" in info.value.error.message  # type: ignore[attr-defined]
    assert (await calls.get()).state.value.lower() == "incoming"  # still answerable


async def test_enum_values_in_any_case(svc: Service, receiver: Receiver) -> None:
    tok = svc.token()
    async with httpx.AsyncClient(
        base_url=svc.base, headers={"Authorization": f"Bearer {tok}"}
    ) as http:
        r = await http.post(
            "/v1.0/communications/calls",
            json={
                "callbackUri": receiver.url,
                "requestedModalities": ["Audio"],
                "targets": [{"identity": {"phone": {"id": "+14255550100"}}}],
            },
        )
        assert r.status_code == 201, r.json()
        cid = r.json()["id"]
        await receiver.wait_for(lambda n: n["resourceData"].get("state") == "established")
        r = await http.post(
            f"/v1.0/communications/calls/{cid}/sendDtmfTones",
            json={"tones": ["Tone1", "POUND", "star"], "dtmfMethod": "RFC4733"},
        )
        assert r.status_code == 200, r.json()
        await receiver.wait_for(lambda n: n["resourceData"].get("id") == r.json()["id"])
        assert svc.media.calls[0].heard_keys == "1#*"

    inc = await svc.media.incoming("+14255550123", "sip:bot@127.0.0.1")
    [created] = await receiver.wait_for(lambda n: n["changeType"] == "created")
    async with httpx.AsyncClient(
        base_url=svc.base, headers={"Authorization": f"Bearer {svc.incoming_token()}"}
    ) as http:
        r = await http.post(
            f"/v1.0/communications/calls/{created['resourceData']['id']}/reject",
            json={"reason": "Busy"},
        )
    assert r.status_code == 202
    assert await inc.outcome == 486


async def test_small_delays_are_taken_and_raised_to_40_ms(svc: Service, receiver: Receiver) -> None:
    client = svc.sdk()
    call = await client.communications.calls.post(new_call("v1.0", receiver.url))
    await receiver.wait_for(lambda n: n["resourceData"].get("state") == "established")
    calls = client.communications.calls.by_call_id(call.id)
    for delay in (0, 1, 39):
        op = await calls.send_dtmf_tones.post(dtmf_body("v1.0", "12", delay_between_tones_ms=delay))
        [note] = await receiver.wait_for(lambda n, i=op.id: n["resourceData"].get("id") == i)
        assert note["resourceData"]["completionReason"] == "completedSuccessfully"
        async with svc.app.state.repo.unit() as uow:
            stored = await uow.get_operation(call.id, op.id)
        assert stored.delay_ms == 40
    with pytest.raises(APIError) as info:
        await calls.send_dtmf_tones.post(dtmf_body("v1.0", "1", delay_between_tones_ms=-1))
    assert info.value.response_status_code == 400


UNSUPPORTED_SDK = [
    (
        "add_large_gallery_view",
        "add_large_gallery_view_post_request_body",
        "AddLargeGalleryViewPostRequestBody",
    ),
    (
        "change_screen_sharing_role",
        "change_screen_sharing_role_post_request_body",
        "ChangeScreenSharingRolePostRequestBody",
    ),
]


@pytest.mark.parametrize(("action", "module", "cls"), UNSUPPORTED_SDK)
async def test_unimplemented_actions_are_501_never_404_on_a_live_call(
    svc: Service, receiver: Receiver, action: str, module: str, cls: str
) -> None:
    client = svc.sdk()
    call = await client.communications.calls.post(new_call("v1.0", receiver.url))
    calls = client.communications.calls.by_call_id(call.id)
    body = getattr(sdk_mod("v1.0", f"communications.calls.item.{action}.{module}"), cls)()
    with pytest.raises(APIError) as info:
        await getattr(calls, action).post(body)
    assert info.value.response_status_code == 501
    assert info.value.error.code == "notSupported"  # type: ignore[attr-defined]
    # the call is untouched: keepAlive still works
    await calls.keep_alive.post()
    # an unknown call is still 404 (a bot must be able to tell a call that is over)
    other = client.communications.calls.by_call_id("00000000-0000-0000-0000-000000000000")
    with pytest.raises(APIError) as info:
        await getattr(other, action).post(body)
    assert info.value.response_status_code == 404


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/beta/communications/calls/{cid}/audioRoutingGroups"),
        ("POST", "/v1.0/communications/calls/{cid}/participants/x/startHoldMusic"),
        ("POST", "/beta/communications/calls/{cid}/startRecording"),
        ("POST", "/v1.0/communications/calls/logTeleconferenceDeviceQuality"),
    ],
)
async def test_more_unimplemented_paths(
    svc: Service, receiver: Receiver, method: str, path: str
) -> None:
    client = svc.sdk()
    call = await client.communications.calls.post(new_call("v1.0", receiver.url))
    async with httpx.AsyncClient(base_url=svc.base) as http:
        url = path.format(cid=call.id)
        r = await http.request(method, url, json={})
        assert r.status_code == 401  # a token first, as everywhere
        r = await http.request(
            method, url, json={}, headers={"Authorization": f"Bearer {svc.token()}"}
        )
    body: dict[str, Any] = r.json()
    assert r.status_code == 501 and body["error"]["code"] == "notSupported"
    assert "is not supported by dtmfgraph" in body["error"]["message"]
