"""Participants, mute/unmute and updateRecordingStatus through the official SDKs (spec 5-6).

The SDKs are the client: their request builders send the bodies, their models parse our
answers, and the roster notifications our webhook receiver gets are parsed with their
``participant`` model as a bot would.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from kiota_abstractions.api_error import APIError
from kiota_serialization_json.json_parse_node_factory import JsonParseNodeFactory

from .harness import APP, Receiver, Service
from .sdkhelp import new_call, sdk_mod
from .test_sdk import VERSIONS, ev


def _call_url(call_id: str) -> str:
    return f"/communications/calls/{call_id}"


def _rosters(receiver: Receiver, call_id: str) -> list[list[dict[str, Any]]]:
    return [
        n["resourceData"]
        for n in receiver.notes
        if n["resourceUrl"] == f"{_call_url(call_id)}/participants"
    ]


def _parse_participant(version: str, data: dict[str, Any]) -> Any:
    cls = sdk_mod(version, "models.participant").Participant
    node = JsonParseNodeFactory().get_root_parse_node("application/json", json.dumps(data).encode())
    return node.get_object_value(cls)


async def _up(svc: Service, receiver: Receiver, version: str, target: str) -> tuple[Any, Any]:
    client = svc.sdk(version)
    call = await client.communications.calls.post(new_call(version, receiver.url, target))
    await receiver.wait_for(
        lambda n: (
            n["resourceUrl"] == _call_url(call.id) and n["resourceData"]["state"] == "established"
        )
    )
    return client.communications.calls.by_call_id(call.id), call


def _mute_body(version: str, action: str, context: str) -> Any:
    name = {"mute": "Mute", "unmute": "Unmute"}[action]
    mod = sdk_mod(version, f"communications.calls.item.{action}.{action}_post_request_body")
    return getattr(mod, f"{name}PostRequestBody")(client_context=context)


@pytest.mark.parametrize("version", VERSIONS)
async def test_participants_are_the_bot_and_the_far_end(
    svc: Service, receiver: Receiver, version: str
) -> None:
    """GET participants: two, the bot's id is the call's myParticipantId, the far end's
    identity is the call's target (a phone: communicationsIdentitySet); by id each one; an
    unknown id is 404 itemNotFound."""
    calls, call = await _up(svc, receiver, version, "+14255550100")
    roster = await calls.participants.get()
    assert roster is not None and len(roster.value) == 2
    bot, far = roster.value
    assert bot.id == call.my_participant_id != call.id
    assert bot.info.identity.application.id == APP
    assert bot.is_muted is False and bot.is_in_lobby is False
    assert ev(bot.media_streams[0].media_type) == "audio"
    assert far.id not in (bot.id, call.id)
    assert far.info.identity.odata_type == "#microsoft.graph.communicationsIdentitySet"
    assert far.info.identity.phone.id == "+14255550100"
    assert ev(far.info.endpoint_type) == "default"
    assert ev(far.media_streams[0].direction) == "sendReceive"
    one = await calls.participants.by_participant_id(far.id).get()
    assert one is not None and one.id == far.id and one.info.identity.phone.id == "+14255550100"
    with pytest.raises(APIError) as err:
        await calls.participants.by_participant_id("no-such-participant").get()
    assert err.value.response_status_code == 404
    assert err.value.error.code == "itemNotFound"  # type: ignore[attr-defined]
    # no roster notification without a change: the notification sequence is as before
    assert _rosters(receiver, call.id) == []


@pytest.mark.parametrize("version", VERSIONS)
async def test_mute_and_unmute_return_completed_operations_and_notify_the_roster(
    svc: Service, receiver: Receiver, version: str
) -> None:
    """mute: a completed muteParticipantOperation (200 + Location), the bot's isMuted true in
    GET and in a roster notification the SDK's model parses; muting again: completed, no new
    roster; unmute: unmuteParticipantOperation, isMuted false, roster again."""
    calls, call = await _up(svc, receiver, version, "sip:bob@example.invalid")
    op = await calls.mute.post(_mute_body(version, "mute", "m1"))
    mute_cls = sdk_mod(version, "models.mute_participant_operation").MuteParticipantOperation
    assert isinstance(op, mute_cls)
    assert ev(op.status) == "completed" and op.client_context == "m1"
    assert op.result_info.code == 200
    bot = await calls.participants.by_participant_id(call.my_participant_id).get()
    assert bot.is_muted is True and bot.media_streams[0].server_muted is True
    [roster] = await receiver.wait_for(
        lambda n: n["resourceUrl"] == f"{_call_url(call.id)}/participants"
    )
    assert roster["changeType"] == "updated"
    parsed = [_parse_participant(version, p) for p in roster["resourceData"]]
    assert next(p.id for p in parsed) == call.my_participant_id
    assert parsed[0].is_muted is True and parsed[1].is_muted is False
    assert parsed[0].roster_sequence_number == 1
    assert parsed[1].info.identity.user.id == "sip:bob@example.invalid"

    again = await calls.mute.post(_mute_body(version, "mute", "m2"))
    assert ev(again.status) == "completed"
    un = await calls.unmute.post(_mute_body(version, "unmute", "u1"))
    unmute_cls = sdk_mod(version, "models.unmute_participant_operation")
    assert isinstance(un, unmute_cls.UnmuteParticipantOperation)
    assert ev(un.status) == "completed" and un.client_context == "u1"
    rosters = await receiver.wait_for(
        lambda n: n["resourceUrl"] == f"{_call_url(call.id)}/participants", count=2
    )
    assert len(rosters) == 2  # muting a muted call changed nothing
    bots = [r["resourceData"][0] for r in rosters]
    assert [b["isMuted"] for b in bots] == [True, False]
    assert [b["rosterSequenceNumber"] for b in bots] == [1, 2]
    ops = {o.id: o for o in (await calls.operations.get()).value}
    assert {op.id, again.id, un.id} <= set(ops)
    # no operation notification for these (completed in the response: spec 0)
    op_notes = [n for n in receiver.notes if "/operations/" in n["resourceUrl"]]
    assert op_notes == []


@pytest.mark.parametrize("version", VERSIONS)
async def test_update_recording_status(svc: Service, receiver: Receiver, version: str) -> None:
    """updateRecordingStatus: a completed operation, the status on the bot's recordingInfo
    (initiator: the application), no notification; an unknown status is 400."""
    calls, call = await _up(svc, receiver, version, "sip:bob@example.invalid")
    mod = sdk_mod(
        version,
        "communications.calls.item.update_recording_status.update_recording_status_post_request_body",
    )
    status = sdk_mod(version, "models.recording_status").RecordingStatus
    op = await calls.update_recording_status.post(
        mod.UpdateRecordingStatusPostRequestBody(status=status.Recording, client_context="r1")
    )
    op_cls = sdk_mod(version, "models.update_recording_status_operation")
    assert isinstance(op, op_cls.UpdateRecordingStatusOperation)
    assert ev(op.status) == "completed" and op.client_context == "r1"
    bot = await calls.participants.by_participant_id(call.my_participant_id).get()
    assert ev(bot.recording_info.recording_status) == "recording"
    assert bot.recording_info.initiator.application.id == APP
    async with httpx.AsyncClient(
        base_url=svc.base, headers={"Authorization": f"Bearer {svc.token()}"}
    ) as http:
        r = await http.post(
            f"/{version}/communications/calls/{call.id}/updateRecordingStatus",
            json={"status": "paused"},
        )
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalidRequest"
    assert "notRecording, recording, failed" in r.json()["error"]["message"]
    assert _rosters(receiver, call.id) == []


async def test_mute_errors(svc: Service, receiver: Receiver) -> None:
    """mute needs Calls.Initiate.All (403), an established call (400 notAllowed); the far
    end's participant cannot be muted (400 notSupported, no mixer); the bot's can (the same
    as call mute); an unknown participant is 404."""
    calls, call = await _up(svc, receiver, "v1.0", "sip:bob@example.invalid")
    roster = await calls.participants.get()
    far_id = roster.value[1].id
    base = f"/v1.0/communications/calls/{call.id}"
    async with httpx.AsyncClient(
        base_url=svc.base, headers={"Authorization": f"Bearer {svc.token()}"}
    ) as http:
        r = await http.post(f"{base}/participants/{far_id}/mute", json={})
        assert r.status_code == 400 and r.json()["error"]["code"] == "notSupported"
        r = await http.post(f"{base}/participants/nobody/mute", json={})
        assert r.status_code == 404
        r = await http.post(f"{base}/participants/{call.my_participant_id}/mute", json={})
        assert r.status_code == 200
        assert r.json()["@odata.type"] == "#microsoft.graph.muteParticipantOperation"
        assert r.headers["location"].endswith(f"{base}/operations/{r.json()['id']}")
        weak = svc.token(roles=("Calls.AccessMedia.All",))
        r = await http.post(f"{base}/unmute", json={}, headers={"Authorization": f"Bearer {weak}"})
        assert r.status_code == 403
        await http.delete(base)
        await receiver.wait_for(
            lambda n: n["resourceUrl"] == _call_url(call.id) and n["changeType"] == "deleted"
        )
        r = await http.post(f"{base}/unmute", json={})
        assert r.status_code == 400 and r.json()["error"]["code"] == "notAllowed"
        r = await http.get(f"{base}/participants")
        assert r.status_code == 200 and r.json()["value"] == []


async def test_transfer_requests_and_outcomes(svc: Service, receiver: Receiver) -> None:
    """transfer: 202 and no body; bad targets, a transferee that is not the far end and a
    consultative transfer naming no other call of ours are 400 with precise messages; a far
    end that fails the transfer (486) brings the call back to established 500/7000; one that
    succeeds ends it 0/7015 GracefulTransferCompleted."""
    _calls, call = await _up(svc, receiver, "v1.0", "sip:bob@example.invalid")
    base = f"/v1.0/communications/calls/{call.id}/transfer"
    async with httpx.AsyncClient(
        base_url=svc.base, headers={"Authorization": f"Bearer {svc.token()}"}
    ) as http:
        cases = [
            ({"transferTarget": {}}, "invalidRequest", "transferTarget.identity: is required"),
            (
                {"transferTarget": {"identity": {"user": {"id": "bob"}}}},
                "invalidRequest",
                "transferTarget.identity: no dialable id",
            ),
            (
                {
                    "transferTarget": {"identity": {"user": {"id": "sip:c@h"}}},
                    "transferee": {"participantId": "someone-else"},
                },
                "invalidRequest",
                "is not the far end of this call",
            ),
            (
                {
                    "transferTarget": {
                        "identity": {"user": {"id": "sip:c@h"}},
                        "replacesCallId": "x",
                    }
                },
                "invalidRequest",
                "transferTarget.replacesCallId: no call x of this application",
            ),
            (
                {"transferTarget": {"replacesCallId": call.id}},
                "invalidRequest",
                "transferTarget.replacesCallId: must name another call of this application",
            ),
        ]
        for body, code, words in cases:
            r = await http.post(base, json=body)
            assert r.status_code == 400, r.text
            assert r.json()["error"]["code"] == code and words in r.json()["error"]["message"]
        r = await http.post(
            base, json={"transferTarget": {"identity": {"user": {"id": "sip:busy@h"}}}}
        )
        assert r.status_code == 202 and r.content == b""
        [failed] = await receiver.wait_for(
            lambda n: (
                n["resourceUrl"] == _call_url(call.id)
                and n["resourceData"].get("state") == "established"
                and n["resourceData"].get("resultInfo") is not None
            )
        )
        assert failed["resourceData"]["resultInfo"]["code"] == 500
        assert "486" in failed["resourceData"]["resultInfo"]["message"]
        r = await http.post(
            base, json={"transferTarget": {"identity": {"user": {"id": "sip:c@h"}}}}
        )
        assert r.status_code == 202
        [end] = await receiver.wait_for(
            lambda n: n["resourceUrl"] == _call_url(call.id) and n["changeType"] == "deleted"
        )
        info = end["resourceData"]["resultInfo"]
        assert (info["code"], info["subcode"], info["message"]) == (
            0,
            7015,
            "GracefulTransferCompleted",
        )
        assert svc.media.calls[0].transferred_to == "sip:c@h"
        r = await http.post(
            base, json={"transferTarget": {"identity": {"user": {"id": "sip:c@h"}}}}
        )
        assert r.status_code == 400 and r.json()["error"]["code"] == "notAllowed"
    states = [
        n["resourceData"]["state"]
        for n in receiver.for_call(call.id)
        if n["resourceUrl"] == _call_url(call.id)
    ]
    assert states == [
        "establishing", "established", "transferring", "transferAccepted", "established",
        "transferring", "transferAccepted", "terminated",
    ]  # fmt: skip


@pytest.mark.parametrize("version", VERSIONS)
async def test_consultative_transfer_ends_both_calls(
    svc: Service, receiver: Receiver, version: str
) -> None:
    """The SDK transfers call A's far end to call B's (transferTarget.replacesCallId = B): A
    goes transferring, transferAccepted, terminated 0/7015 with terminationReason
    AppTransferred; B, its far end replaced, ends 0/7015 too. A transfer replacing a call
    that is over is 400 notAllowed."""
    a, call_a = await _up(svc, receiver, version, "sip:caller@example.invalid")
    _b, call_b = await _up(svc, receiver, version, "sip:agent@example.invalid")
    m = lambda p: sdk_mod(version, p)  # noqa: E731
    info = m("models.invitation_participant_info").InvitationParticipantInfo(
        identity=m("models.communications_identity_set").CommunicationsIdentitySet(
            user=m("models.identity").Identity(id="sip:agent@example.invalid")
        ),
        replaces_call_id=call_b.id,
    )
    body = m("communications.calls.item.transfer.transfer_post_request_body")
    await a.transfer.post(body.TransferPostRequestBody(transfer_target=info))
    ends = {}
    for cid in (call_a.id, call_b.id):
        [ends[cid]] = await receiver.wait_for(
            lambda n, c=cid: n["resourceUrl"] == _call_url(c) and n["changeType"] == "deleted"
        )
    end_a = ends[call_a.id]["resourceData"]
    assert end_a["terminationReason"] == "AppTransferred"
    for end in ends.values():
        info_ = end["resourceData"]["resultInfo"]
        assert (info_["code"], info_["subcode"]) == (0, 7015)
    assert "terminationReason" not in ends[call_b.id]["resourceData"]
    states = [
        n["resourceData"]["state"]
        for n in receiver.for_call(call_a.id)
        if n["resourceUrl"] == _call_url(call_a.id)
    ]
    assert states[2:] == ["transferring", "transferAccepted", "terminated"]
    c, _call_c = await _up(svc, receiver, version, "sip:third@example.invalid")
    with pytest.raises(APIError) as err:
        await c.transfer.post(body.TransferPostRequestBody(transfer_target=info))
    assert err.value.response_status_code == 400
    assert "not established" in str(err.value.error.message)  # type: ignore[attr-defined]


async def test_redirect_requests_and_outcome(svc: Service, receiver: Receiver) -> None:
    """redirect: bad bodies are 400 invalidRequest (no targets, 26 targets, timeout outside
    15..90, an unmappable target); a good one answers the caller 302 with every target, 202
    here, and the call ends terminated 200/7000 (sent to the redirect's callbackUri); a call
    that is not incoming any more is 400 notAllowed. The ringing call's roster is the bot and
    the caller."""
    inc = await svc.media.incoming("+14255550123", "sip:bot@127.0.0.1")
    [created] = await receiver.wait_for(lambda n: n["changeType"] == "created")
    cid = created["resourceData"]["id"]
    base = f"/v1.0/communications/calls/{cid}"
    target = {"identity": {"user": {"id": "sip:bob@127.0.0.1:5070"}}}
    async with httpx.AsyncClient(
        base_url=svc.base, headers={"Authorization": f"Bearer {svc.incoming_token()}"}
    ) as http:
        roster = (await http.get(f"{base}/participants")).json()["value"]
        assert roster[1]["info"]["identity"]["phone"]["id"] == "+14255550123"
        assert roster[1]["info"]["identity"]["@odata.type"] == (
            "#microsoft.graph.communicationsIdentitySet"
        )
        cases = [
            ({"targets": []}, "targets: give 1 to 25 targets"),
            ({"targets": [target] * 26}, "targets: give 1 to 25 targets, got 26"),
            ({"targets": [target], "timeout": 10}, "timeout: must be between 15 and 90"),
            ({"targets": [{"identity": {"user": {"id": "bob"}}}]}, "targets[0].identity"),
        ]
        for body, words in cases:
            r = await http.post(f"{base}/redirect", json=body)
            assert r.status_code == 400 and r.json()["error"]["code"] == "invalidRequest"
            assert words in r.json()["error"]["message"], r.json()
        second = {"identity": {"phone": {"id": "sip:carol@127.0.0.1"}}}
        r = await http.post(
            f"{base}/redirect",
            json={"targets": [target, second], "timeout": 60, "callbackUri": receiver.url},
        )
        assert r.status_code == 202 and r.content == b""
        assert await inc.outcome == 302
        assert inc.redirected_to == ["sip:bob@127.0.0.1:5070", "sip:carol@127.0.0.1"]
        [end] = await receiver.wait_for(
            lambda n: n["resourceUrl"] == _call_url(cid) and n["changeType"] == "deleted"
        )
        info = end["resourceData"]["resultInfo"]
        assert (info["code"], info["subcode"]) == (200, 7000)
        r = await http.post(f"{base}/redirect", json={"targets": [target]})
        assert r.status_code == 400 and r.json()["error"]["code"] == "notAllowed"
