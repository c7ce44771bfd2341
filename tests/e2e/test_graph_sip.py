"""The Graph API on real SIP calls: the official SDKs drive `--media sip`, baresip is the far end.

Everything is real: the service on uvicorn with a ``SipMedia`` phone on free ports, baresip 1.0
as the phone it calls (or that calls it), a real HTTP webhook receiver for the notifications,
and ``msgraph-sdk`` / ``msgraph-beta-sdk`` as the client. What baresip reports (its ctrl_tcp
events, its stdout, its recording of our audio) is the judge of what went into the call.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from kiota_abstractions.api_error import APIError

from dtmfgraph.api import create_app
from dtmfgraph.media import RtpSession
from dtmfgraph.service.sip_media import SipMedia
from dtmfgraph.tones import detect

from ..api.harness import Receiver, Service, free_port, make_settings, serve_in_task, stop
from ..api.sdkhelp import ALL_KEYS, answer_body, context_body, dtmf_body, new_call, sdk_mod
from ..judges.baresip import Baresip, require_baresip
from ..judges.baresip import free_port as free_udp_port
from ..judges.sipp import sipp_uas, uas_reject_scenario
from .raw_sip import final_response

Note = dict[str, Any]
LONG = "1234567890" * 4


def ev(enum: object) -> str:
    """SDK enum -> wire string (the SDK's enum values are PascalCase)."""
    value = str(enum.value)  # type: ignore[attr-defined]
    return value[:1].lower() + value[1:]


def call_url(call_id: str) -> str:
    return f"/communications/calls/{call_id}"


def is_op_end(op_id: str) -> Callable[[Note], bool]:
    return lambda n: n["changeType"] == "deleted" and n["resourceData"].get("id") == op_id


def is_call_state(call_id: str, state: str) -> Callable[[Note], bool]:
    return lambda n: (
        n["resourceUrl"] == call_url(call_id) and n["resourceData"].get("state") == state
    )


def code(note: Note) -> tuple[int, int]:
    info = note["resourceData"]["resultInfo"]
    return info["code"], info["subcode"]


SipService = Service
"""``tests/api``'s running-service handle; here ``media`` is the ``SipMedia``."""


async def start_sip_service(tmp_path: Path, receiver: Receiver, **over: Any) -> Any:
    settings = make_settings(
        tmp_path,
        f"sqlite+aiosqlite:///{tmp_path / 'graph.sqlite3'}",
        free_port(),
        media="sip",
        sip_host="127.0.0.1",
        sip_port=0,
        incoming_callback_uri=receiver.url,
        **over,
    )
    app = create_app(settings)  # the media comes from the settings, as with `serve`
    assert isinstance(app.state.media, SipMedia)
    server, task = await serve_in_task(app, settings.port)
    return SipService(settings, app.state.media, app), server, task


@pytest.fixture
async def svc(tmp_path: Path, receiver: Receiver) -> AsyncIterator[SipService]:
    require_baresip()
    service, server, task = await start_sip_service(tmp_path / "svc", receiver)
    try:
        yield service
    finally:
        await stop(server, task)


async def place_call(svc: SipService, receiver: Receiver, version: str, target: str) -> Any:
    """POST a call to ``target`` with the SDK and wait until it is established."""
    client = svc.sdk(version)
    call = await client.communications.calls.post(new_call(version, receiver.url, target))
    assert ev(call.state) == "establishing"
    await receiver.wait_for(is_call_state(call.id, "established"))
    return client, call


SEND_CASES = [
    ("v1.0", "auto"),
    ("v1.0", "rfc4733"),
    ("v1.0", "sipinfo"),
    ("v1.0", "inband"),
    ("beta", "rfc4733"),
]


@pytest.mark.parametrize(("version", "method"), SEND_CASES)
async def test_all_16_keys_reach_baresip_then_delete(
    tmp_path: Path, svc: SipService, receiver: Receiver, version: str, method: str
) -> None:
    async with Baresip(tmp_path / "bs", record=method == "inband") as bs:
        client, call = await place_call(svc, receiver, version, bs.uri)
        await bs.wait_event("CALL_ESTABLISHED", 5)
        calls = client.communications.calls.by_call_id(call.id)
        extra = {} if method == "auto" else {"dtmfMethod": method}
        if method == "inband":
            await asyncio.sleep(0.2)  # some silence before the first tone, as a phone sends
        op = await calls.send_dtmf_tones.post(
            dtmf_body(
                version,
                ALL_KEYS,
                client_context=f"all-{method}",
                delay_between_tones_ms=80,
                toneDurationMs=80,
                **extra,
            )
        )
        op_cls = sdk_mod(version, "models.send_dtmf_tones_operation").SendDtmfTonesOperation
        assert isinstance(op, op_cls)
        assert ev(op.status) == "running" and op.client_context == f"all-{method}"

        [note] = await receiver.wait_for(is_op_end(op.id), timeout=15)
        data = note["resourceData"]
        assert data["@odata.type"] == "#microsoft.graph.sendDtmfTonesOperation"
        assert (data["status"], data["completionReason"]) == ("completed", "completedSuccessfully")
        assert code(note) == (200, 0)
        back = await calls.operations.by_comms_operation_id(op.id).get()
        assert isinstance(back, op_cls)
        assert ev(back.status) == "completed"
        assert ev(back.completion_reason) == "completedSuccessfully"
        assert (back.result_info.code, back.result_info.subcode) == (200, 0)

        if method in ("auto", "rfc4733"):  # baresip negotiates telephone-event: auto = RFC 4733
            await bs.wait_for(lambda b: len(b.rfc4733_keys()) >= 16, 5, "16 RFC 4733 keys")
        elif method == "sipinfo":
            await bs.wait_for(lambda b: len(b.info_keys()) >= 16, 5, "16 INFO keys")
        await asyncio.sleep(0.3)  # anything extra would show up here

        # DELETE: baresip sees the call closed; terminating then terminated (200/7000)
        await calls.delete()
        await bs.wait_event("CALL_CLOSED", 5)
        notes = await receiver.wait_for(
            lambda n: n["resourceUrl"] == call_url(call.id), count=4, timeout=5
        )
        assert [(n["changeType"], n["resourceData"]["state"]) for n in notes] == [
            ("updated", "establishing"),
            ("updated", "established"),
            ("updated", "terminating"),
            ("deleted", "terminated"),
        ]
        assert code(notes[-1]) == (200, 7000)
        assert ev((await calls.get()).state) == "terminated"

    if method in ("auto", "rfc4733"):
        assert (bs.rfc4733_keys(), bs.info_keys()) == (ALL_KEYS, "")
        assert bs.dtmf_starts() == ALL_KEYS
    elif method == "sipinfo":
        assert (bs.info_keys(), bs.rfc4733_keys()) == (ALL_KEYS, "")
    else:
        assert bs.dtmf_starts() == "", "in-band keys must not arrive as events"
        audio = bs.recorded_audio()
        assert len(audio) > 8000, "baresip recorded less than a second of our audio"
        assert "".join(d.key for d in detect(audio)) == ALL_KEYS


@pytest.mark.parametrize("method", ["rfc4733", "sipinfo"])
async def test_cancel_mid_sequence(
    tmp_path: Path, svc: SipService, receiver: Receiver, method: str
) -> None:
    v = "beta" if method == "sipinfo" else "v1.0"
    heard = (lambda b: b.rfc4733_keys()) if method == "rfc4733" else (lambda b: b.info_keys())
    async with Baresip(tmp_path / "bs") as bs:
        client, call = await place_call(svc, receiver, v, bs.uri)
        calls = client.communications.calls.by_call_id(call.id)
        long_op = await calls.send_dtmf_tones.post(dtmf_body(v, LONG, dtmfMethod=method))  # 8 s
        queued = await calls.send_dtmf_tones.post(dtmf_body(v, "999", dtmfMethod=method))
        assert (ev(long_op.status), ev(queued.status)) == ("running", "notStarted")
        await bs.wait_for(lambda b: len(heard(b)) >= 3, 5, "three keys")
        cancel = await calls.cancel_media_processing.post(context_body(v, "cancel", "stop"))
        cancel_cls = sdk_mod(
            v, "models.cancel_media_processing_operation"
        ).CancelMediaProcessingOperation
        assert isinstance(cancel, cancel_cls) and ev(cancel.status) == "completed"
        for op in (long_op, queued):
            [note] = await receiver.wait_for(is_op_end(op.id))
            assert note["resourceData"]["completionReason"] == "mediaOperationCanceled"
            assert code(note) == (400, 8508)
            back = await calls.operations.by_comms_operation_id(op.id).get()
            assert ev(back.completion_reason) == "mediaOperationCanceled"
        await asyncio.sleep(0.3)
        prefix = heard(bs)
        assert 3 <= len(prefix) < len(LONG) and LONG.startswith(prefix), prefix
        await asyncio.sleep(0.7)
        assert heard(bs) == prefix, "keys kept coming after the cancel"
        # the call still works after a cancel
        after = await calls.send_dtmf_tones.post(dtmf_body(v, "#", dtmfMethod=method))
        [note] = await receiver.wait_for(is_op_end(after.id))
        assert note["resourceData"]["completionReason"] == "completedSuccessfully"
        await bs.wait_for(lambda b: heard(b) == prefix + "#", 5, "the key after the cancel")
        await calls.delete()
        await bs.wait_event("CALL_CLOSED", 5)
    assert len([n for n in receiver.notes if is_op_end(long_op.id)(n)]) == 1


async def test_far_end_hangs_up_mid_send(
    tmp_path: Path, svc: SipService, receiver: Receiver
) -> None:
    v = "v1.0"
    async with Baresip(tmp_path / "bs") as bs:
        client, call = await place_call(svc, receiver, v, bs.uri)
        calls = client.communications.calls.by_call_id(call.id)
        op = await calls.send_dtmf_tones.post(dtmf_body(v, LONG))
        queued = await calls.send_dtmf_tones.post(dtmf_body(v, "5"))
        await bs.wait_for(lambda b: len(b.rfc4733_keys()) >= 2, 5, "two keys")
        await bs.hangup()
        for one in (op, queued):
            [note] = await receiver.wait_for(is_op_end(one.id))
            assert note["resourceData"]["status"] == "failed"
            assert note["resourceData"]["completionReason"] == "unknown"
            assert code(note) == (200, 4097)
        [end] = await receiver.wait_for(
            lambda n: n["changeType"] == "deleted" and n["resourceUrl"] == call_url(call.id)
        )
        assert end["resourceData"]["state"] == "terminated"
        assert code(end) == (200, 4097)
        got = await calls.get()
        assert ev(got.state) == "terminated" and got.result_info.subcode == 4097
        back = await calls.operations.by_comms_operation_id(op.id).get()
        assert ev(back.status) == "failed" and back.result_info.subcode == 4097
    keys = bs.rfc4733_keys()
    assert 2 <= len(keys) < len(LONG) and LONG.startswith(keys)


async def wait_incoming(svc: SipService, receiver: Receiver, version: str = "v1.0") -> Any:
    """The ``created`` notification of an incoming call, and the incoming app's SDK handle on
    that call."""
    [created] = await receiver.wait_for(lambda n: n["changeType"] == "created")
    cid = created["resourceData"]["id"]
    return created, svc.incoming_sdk(version).communications.calls.by_call_id(cid)


async def answer_incoming(calls: Any, receiver: Receiver, version: str = "v1.0") -> None:
    """Answer an incoming call (audio, callbacks to ``receiver``) with the SDK."""
    await calls.answer.post(answer_body(version, receiver.url))


async def test_baresip_calls_in_we_answer_and_hear_keys(
    tmp_path: Path, svc: SipService, receiver: Receiver
) -> None:
    v = "v1.0"
    async with Baresip(tmp_path / "bs", answer=False) as bs:
        await bs.dial(svc.media.uri)  # type: ignore[attr-defined]
        created, calls = await wait_incoming(svc, receiver, v)
        data = created["resourceData"]
        assert (data["state"], data["direction"]) == ("incoming", "incoming")
        assert created["resourceUrl"] == call_url(data["id"])
        assert bs.uri.split("@")[0] in data["source"]["identity"]["user"]["id"]
        cid = data["id"]
        await answer_incoming(calls, receiver, v)
        await receiver.wait_for(is_call_state(cid, "established"))
        await bs.wait_event("CALL_ESTABLISHED", 5)
        sub = await calls.subscribe_to_tone.post(context_body(v, "subscribe", "tones"))
        assert ev(sub.status) == "completed"
        for key in ALL_KEYS:
            await bs.sndcode(key)
        tones = await receiver.wait_for(
            lambda n: "toneInfo" in n["resourceData"], count=16, timeout=10
        )
        await asyncio.sleep(0.5)  # a key reported twice would show up here
        tones = [n for n in receiver.notes if "toneInfo" in n["resourceData"]]
        assert [t["resourceData"]["toneInfo"]["tone"] for t in tones] == [
            dtmf_body(v, k).tones[0].value for k in ALL_KEYS
        ]
        assert [t["resourceData"]["toneInfo"]["sequenceId"] for t in tones] == list(range(1, 17))
        assert all(t["changeType"] == "updated" for t in tones)
        got = await calls.get()
        assert got.tone_info.sequence_id == 16 and ev(got.tone_info.tone) == "d"
        await bs.hangup()
        [end] = await receiver.wait_for(
            lambda n: n["changeType"] == "deleted" and n["resourceUrl"] == call_url(cid)
        )
        assert code(end) == (200, 4097)


async def test_a_strangers_rtp_never_becomes_a_tone_and_is_counted(
    tmp_path: Path, svc: SipService, receiver: Receiver
) -> None:
    """Strict RTP through the Graph surface: while baresip presses 1 and 2 on an answered and
    subscribed call, a third party sends RFC 4733 9s to the call's RTP port. Only baresip's
    keys become toneInfo notifications, and /metrics counts the stranger's packets."""
    async with Baresip(tmp_path / "bs", answer=False) as bs:
        await bs.dial(svc.media.uri)  # type: ignore[attr-defined]
        created, calls = await wait_incoming(svc, receiver)
        await answer_incoming(calls, receiver)
        await receiver.wait_for(is_call_state(created["resourceData"]["id"], "established"))
        await bs.wait_event("CALL_ESTABLISHED", 5)
        await calls.subscribe_to_tone.post(context_body("v1.0", "subscribe", "tones"))
        phone = svc.media.phone  # type: ignore[attr-defined]
        (call,) = phone.calls
        stranger = await RtpSession.open(
            phone.pacer, remote=call.session.local_address, receive=False
        )
        attack = asyncio.create_task(stranger.send_dtmf("99", method="rfc4733"))
        for key in "12":
            await bs.sndcode(key)
        await attack
        await receiver.wait_for(lambda n: "toneInfo" in n["resourceData"], count=2, timeout=10)
        await asyncio.sleep(0.5)  # the 9s, were they let in, would show up here
        tones = [
            n["resourceData"]["toneInfo"]["tone"]
            for n in receiver.notes
            if "toneInfo" in n["resourceData"]
        ]
        assert tones == ["tone1", "tone2"]
        await stranger.close()
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"{svc.base}/metrics")).text
        [line] = [
            x for x in text.splitlines() if x.startswith("dtmfgraph_rtp_foreign_dropped_total")
        ]
        assert float(line.rsplit(" ", 1)[1]) == phone.rtp_foreign_dropped >= 20
        await bs.hangup()


async def test_baresip_calls_in_we_reject(
    tmp_path: Path, svc: SipService, receiver: Receiver
) -> None:
    async with Baresip(tmp_path / "bs", answer=False) as bs:
        await bs.dial(svc.media.uri)  # type: ignore[attr-defined]
        _, calls = await wait_incoming(svc, receiver)
        reject_cls = sdk_mod(
            "v1.0", "communications.calls.item.reject.reject_post_request_body"
        ).RejectPostRequestBody
        reason = sdk_mod("v1.0", "models.reject_reason").RejectReason
        await calls.reject.post(reject_cls(reason=reason.Busy))
        closed = await bs.wait_event("CALL_CLOSED", 5)
        assert "486" in closed.param, closed
        got = await calls.get()
        assert ev(got.state) == "terminated"
        assert (got.result_info.code, got.result_info.subcode) == (200, 7000)
    assert bs.of_type("CALL_ESTABLISHED") == []


async def test_nobody_answers_is_408(tmp_path: Path, receiver: Receiver) -> None:
    require_baresip()
    service, server, task = await start_sip_service(tmp_path / "svc", receiver, dial_timeout_s=1.5)
    try:
        async with Baresip(tmp_path / "bs", answer=False) as bs:
            client = service.sdk("v1.0")
            call = await client.communications.calls.post(new_call("v1.0", receiver.url, bs.uri))
            await bs.wait_event("CALL_INCOMING", 5)
            [end] = await receiver.wait_for(
                lambda n: n["changeType"] == "deleted" and n["resourceUrl"] == call_url(call.id),
                timeout=6,
            )
            assert code(end) == (408, 10057)
            await bs.wait_event("CALL_CLOSED", 5)  # we CANCELled the INVITE
    finally:
        await stop(server, task)


@pytest.mark.parametrize(
    ("status", "reason", "want"),
    [
        (486, "Busy Here", (480, 10076)),
        (603, "Decline", (480, 10076)),
        (480, "Temporarily Unavailable", (480, 10076)),
        (404, "Not Found", (480, 10037)),
    ],
)
async def test_sip_refusal_maps_to_result_info(
    tmp_path: Path,
    svc: SipService,
    receiver: Receiver,
    status: int,
    reason: str,
    want: tuple[int, int],
) -> None:
    scenario = uas_reject_scenario(status, reason)
    async with sipp_uas(tmp_path, scenario, timeout_s=10) as (port, sipp):
        client = svc.sdk("v1.0")
        target = f"sip:bob@127.0.0.1:{port}"
        call = await client.communications.calls.post(new_call("v1.0", receiver.url, target))
        [end] = await receiver.wait_for(
            lambda n: n["changeType"] == "deleted" and n["resourceUrl"] == call_url(call.id),
            timeout=8,
        )
        assert code(end) == want
        message = end["resourceData"]["resultInfo"]["message"]
        if want[1] == 10076:
            assert f"SIP {status}" in message, message
        got = await client.communications.calls.by_call_id(call.id).get()
        assert ev(got.state) == "terminated"
        _, err = await asyncio.wait_for(sipp.communicate(), 10)
        assert sipp.returncode == 0, err.decode(errors="replace")


async def test_far_end_without_media_ends_410_301005(tmp_path: Path, receiver: Receiver) -> None:
    """sipp's built-in UAS answers and then sends no RTP at all: after the media timeout the
    service hangs up (sipp gets our BYE and exits 0) and the call ends 410/301005."""
    service, server, task = await start_sip_service(tmp_path / "svc", receiver, media_timeout_s=1.0)
    try:
        async with sipp_uas(tmp_path / "sipp") as (port, sipp):
            client = service.sdk("v1.0")
            target = f"sip:bob@127.0.0.1:{port}"
            call = await client.communications.calls.post(new_call("v1.0", receiver.url, target))
            await receiver.wait_for(is_call_state(call.id, "established"), timeout=8)
            [end] = await receiver.wait_for(
                lambda n: n["changeType"] == "deleted" and n["resourceUrl"] == call_url(call.id),
                timeout=8,
            )
            assert code(end) == (410, 301005)
            assert end["resourceData"]["state"] == "terminated"
            got = await client.communications.calls.by_call_id(call.id).get()
            assert ev(got.state) == "terminated"
            assert got.result_info.code == 410 and got.result_info.subcode == 301005
            _, err = await asyncio.wait_for(sipp.communicate(), 10)
            assert sipp.returncode == 0, err.decode(errors="replace")
    finally:
        await stop(server, task)


async def test_unroutable_target_is_480_10134(svc: SipService, receiver: Receiver) -> None:
    client = svc.sdk("v1.0")
    target = "sip:bob@pbx.example.invalid"  # a host name that does not resolve
    call = await client.communications.calls.post(new_call("v1.0", receiver.url, target))
    [end] = await receiver.wait_for(
        lambda n: n["changeType"] == "deleted" and n["resourceUrl"] == call_url(call.id)
    )
    assert code(end) == (480, 10134)
    assert "cannot resolve 'pbx.example.invalid'" in end["resourceData"]["resultInfo"]["message"]


async def test_host_name_target_reaches_baresip(
    tmp_path: Path, svc: SipService, receiver: Receiver
) -> None:
    async with Baresip(tmp_path / "bs") as bs:
        target = bs.uri.replace("@127.0.0.1:", "@localhost:")
        client, call = await place_call(svc, receiver, "v1.0", target)
        await bs.wait_event("CALL_ESTABLISHED", 5)
        await client.communications.calls.by_call_id(call.id).delete()
        await bs.wait_event("CALL_CLOSED", 5)


async def test_e164_target_without_trunk_is_refused(svc: SipService, receiver: Receiver) -> None:
    client = svc.sdk("v1.0")
    with pytest.raises(APIError) as info:
        await client.communications.calls.post(new_call("v1.0", receiver.url, "+14255550100"))
    assert info.value.response_status_code == 400
    assert "--sip-trunk" in str(info.value.error.message)


async def test_e164_target_goes_out_through_the_trunk(tmp_path: Path, receiver: Receiver) -> None:
    require_baresip()
    # baresip answers only its own user (anything else: 404), so the account is the number
    bs = Baresip(tmp_path / "bs", user="+14255550100", sip_port=free_udp_port())
    service, server, task = await start_sip_service(
        tmp_path / "svc", receiver, sip_trunk_uri=f"127.0.0.1:{bs.sip_port}"
    )
    try:
        async with bs:
            await keys_reach_baresip_then_hang_up(
                service, receiver, bs, "+14255550100", "159#", "rfc4733"
            )
    finally:
        await stop(server, task)


async def keys_reach_baresip_then_hang_up(
    svc: SipService, receiver: Receiver, bs: Baresip, target: str, keys: str, method: str
) -> Any:
    """Call ``target`` with the SDK, send ``keys`` by ``method`` (``rfc4733`` or ``sipinfo``),
    wait until baresip reports them, then DELETE and wait until baresip closes the call."""
    client, call = await place_call(svc, receiver, "v1.0", target)
    calls = client.communications.calls.by_call_id(call.id)
    op = await calls.send_dtmf_tones.post(dtmf_body("v1.0", keys, dtmfMethod=method))
    await receiver.wait_for(is_op_end(op.id))
    heard = Baresip.rfc4733_keys if method == "rfc4733" else Baresip.info_keys
    await bs.wait_for(lambda b: heard(b) == keys, 5, f"keys {keys} by {method}")
    await calls.delete()
    await bs.wait_event("CALL_CLOSED", 5)
    return call


async def test_caller_gives_up_before_the_answer(
    tmp_path: Path, svc: SipService, receiver: Receiver
) -> None:
    async with Baresip(tmp_path / "bs", answer=False) as bs:
        await bs.dial(svc.media.uri)  # type: ignore[attr-defined]
        [created] = await receiver.wait_for(lambda n: n["changeType"] == "created")
        cid = created["resourceData"]["id"]
        await bs.hangup()  # CANCEL
        [end] = await receiver.wait_for(
            lambda n: n["changeType"] == "deleted" and n["resourceUrl"] == call_url(cid)
        )
        assert end["resourceData"]["state"] == "terminated"
        assert code(end) == (200, 4097)
        calls = svc.incoming_sdk("v1.0").communications.calls.by_call_id(cid)
        with pytest.raises(APIError) as info:
            await calls.answer.post(
                sdk_mod(
                    "v1.0", "communications.calls.item.answer.answer_post_request_body"
                ).AnswerPostRequestBody(callback_uri=receiver.url)
            )
        assert info.value.response_status_code == 400


async def test_unknown_user_at_baresip_is_404(
    tmp_path: Path, svc: SipService, receiver: Receiver
) -> None:
    async with Baresip(tmp_path / "bs") as bs:
        target = bs.uri.replace("sip:alice@", "sip:nobody@")  # baresip: 404 Not Found
        client = svc.sdk("beta")
        call = await client.communications.calls.post(new_call("beta", receiver.url, target))
        [end] = await receiver.wait_for(
            lambda n: n["changeType"] == "deleted" and n["resourceUrl"] == call_url(call.id)
        )
        assert code(end) == (480, 10037)
        got = await client.communications.calls.by_call_id(call.id).get()
        assert ev(got.state) == "terminated" and got.result_info.subcode == 10037


async def test_callers_outside_sip_allow_from_get_403_and_are_counted(
    tmp_path: Path, receiver: Receiver
) -> None:
    """``sip_allow_from`` through the service: baresip (127.0.0.1) calling in gets 403 when
    only 192.0.2.0/24 may, no incoming call is announced, and /metrics counts the refusal."""
    require_baresip()
    svc, server, task = await start_sip_service(
        tmp_path / "svc", receiver, sip_allow_from=["192.0.2.0/24"]
    )
    try:
        async with Baresip(tmp_path / "bs", answer=False) as bs:
            await bs.dial(svc.media.uri)  # type: ignore[attr-defined]
            closed = await bs.wait_event("CALL_CLOSED", 5)
        assert "403" in closed.param
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"{svc.base}/metrics")).text
        [line] = [
            x for x in text.splitlines() if x.startswith("dtmfgraph_sip_requests_forbidden_total")
        ]
        assert float(line.rsplit(" ", 1)[1]) == 1.0
        assert not receiver.notes  # no incoming call was announced
    finally:
        await stop(server, task)


async def test_calls_in_must_answer_the_services_digest_challenge(
    tmp_path: Path, receiver: Receiver
) -> None:
    """``sip_inbound_auth_user`` / password through the service: baresip with a wrong
    password gets 403 and nothing is announced; with the right one its call is announced."""
    require_baresip()
    svc, server, task = await start_sip_service(
        tmp_path / "svc",
        receiver,
        sip_inbound_auth_user="alice",
        sip_inbound_auth_password="s3cret",
    )
    try:
        async with Baresip(tmp_path / "wrong", answer=False, password="guess") as bs:
            await bs.dial(svc.media.uri)  # type: ignore[attr-defined]
            closed = await bs.wait_event("CALL_CLOSED", 5)
        assert "403" in closed.param and not receiver.notes
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"{svc.base}/metrics")).text
        [line] = [
            x
            for x in text.splitlines()
            if x.startswith("dtmfgraph_sip_calls_unauthenticated_total")
        ]
        assert float(line.rsplit(" ", 1)[1]) == 2.0  # the first INVITE (401), its answer (403)
        async with Baresip(tmp_path / "right", answer=False, password="s3cret") as bs:
            await bs.dial(svc.media.uri)  # type: ignore[attr-defined]
            created, calls = await wait_incoming(svc, receiver)
            assert created["resourceData"]["state"] == "incoming" and calls is not None
            await bs.hangup()
    finally:
        await stop(server, task)


async def test_sip_inbound_auth_sha256_offers_both_algorithms(
    tmp_path: Path, receiver: Receiver
) -> None:
    """``sip_inbound_auth_sha256``: the service's 401 to an INVITE names SHA-256 first, then
    MD5, on one nonce (RFC 8760)."""
    svc, server, task = await start_sip_service(
        tmp_path / "svc",
        receiver,
        sip_inbound_auth_user="alice",
        sip_inbound_auth_password="s3cret",
        sip_inbound_auth_sha256=True,
    )
    try:
        phone = svc.media.phone  # type: ignore[attr-defined]

        def invite(port: int) -> str:
            return (
                f"INVITE sip:bot@127.0.0.1:{phone.sip_address[1]} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKsha;rport\r\n"
                "Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=1\r\n"
                "To: <sip:bot@127.0.0.1>\r\nCall-ID: sha256-probe\r\nCSeq: 1 INVITE\r\n"
                f"Contact: <sip:alice@127.0.0.1:{port}>\r\nContent-Length: 0\r\n\r\n"
            )

        response = await final_response(invite, phone.sip_address)
        assert response.startswith("SIP/2.0 401"), response
        challenges = [
            line for line in response.split("\r\n") if line.startswith("WWW-Authenticate:")
        ]
        assert len(challenges) == 2, challenges
        assert "algorithm=SHA-256" in challenges[0] and "algorithm=MD5" in challenges[1]
        nonces = {c.split("nonce=")[1].split(",")[0] for c in challenges}
        assert len(nonces) == 1
    finally:
        await stop(server, task)


def _metric(text: str, name: str) -> float:
    [line] = [x for x in text.splitlines() if x.startswith(name)]
    return float(line.rsplit(" ", 1)[1])


async def test_rtcp_of_a_graph_call_is_counted(tmp_path: Path, receiver: Receiver) -> None:
    """``rtcp_interval_s`` through the service: a call the SDK places to baresip sends RTCP
    reports on that schedule (offering rtcp-mux, ``rtcp_mux_offer``), gets baresip's (its first
    after ~5 s), and /metrics counts both;
    once the call ends, its round trip is in ``dtmfgraph_rtcp_rtt_seconds``."""
    require_baresip()
    svc, server, task = await start_sip_service(
        tmp_path / "svc", receiver, rtcp_interval_s=0.5, rtcp_mux_offer=True
    )
    try:
        async with Baresip(tmp_path / "bs") as bs:
            await place_call(svc, receiver, "v1.0", bs.uri)
            phone = svc.media.phone  # type: ignore[attr-defined]
            (call,) = phone.calls
            assert phone.rtcp_interval == 0.5
            assert b"a=rtcp-mux" in bytes(call.sip.local_sdp)  # offered; baresip may decline
            assert call.session.rtcp_mux == bool(call.media.rtcp_mux)
            for _ in range(100):
                if call.rtcp.rtt is not None:
                    break
                await asyncio.sleep(0.1)
            assert call.rtcp.rtt is not None and call.rtcp.peer_lost == 0
            async with httpx.AsyncClient() as http:
                text = (await http.get(f"{svc.base}/metrics")).text
            sent = _metric(text, 'dtmfgraph_rtcp_packets_total{direction="sent"}')
            received = _metric(text, 'dtmfgraph_rtcp_packets_total{direction="received"}')
            assert sent >= 8  # ~5 s at 0.5 s (randomised)
            assert received >= 1
            assert _metric(text, 'dtmfgraph_rtcp_dropped_total{reason="malformed"}') == 0
            await bs.hangup()
            await call.wait_ended(5)
            count = 0.0
            for _ in range(30):  # the call's media closes just after its end
                await asyncio.sleep(0.1)
                async with httpx.AsyncClient() as http:
                    text = (await http.get(f"{svc.base}/metrics")).text
                count = _metric(text, "dtmfgraph_rtcp_rtt_seconds_count")
                if count:
                    break
            assert count == 1.0  # its last round trip (how long it took is for bench/, not here)
            assert _metric(text, 'dtmfgraph_rtcp_rtt_seconds_bucket{le="+Inf"}') == 1.0
            assert 0.0 <= _metric(text, "dtmfgraph_rtcp_rtt_seconds_sum") < 5.0  # 0 on loopback
    finally:
        await stop(server, task)


async def test_the_far_end_holding_the_call_makes_its_audio_inactive(
    tmp_path: Path, svc: SipService, receiver: Receiver
) -> None:
    """baresip puts the call the SDK placed on hold (a re-INVITE with ``sendonly``), then
    resumes it: the bot is told ``mediaState.audio`` ``inactive`` then ``active``, and GET
    agrees each time."""
    async with Baresip(tmp_path / "bs") as bs:
        client, call = await place_call(svc, receiver, "v1.0", bs.uri)
        await bs.wait_event("CALL_ESTABLISHED", 5)
        for command, audio in (("hold", "inactive"), ("resume", "active")):
            assert (await bs.command(command))["ok"]
            await receiver.wait_for(
                lambda n, audio=audio: (
                    n["resourceUrl"] == call_url(call.id)
                    and n["changeType"] == "updated"
                    and n["resourceData"].get("mediaState", {}).get("audio") == audio
                    and n["resourceData"]["state"] == "established"
                ),
                count=2 if audio == "active" else 1,  # the established one, then this one
            )
            back = await client.communications.calls.by_call_id(call.id).get()
            assert back is not None and back.media_state is not None
            assert ev(back.media_state.audio) == audio
        await bs.hangup()
