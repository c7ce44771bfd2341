"""playPrompt, recordResponse and the media queue through both official SDKs, on the loopback
far end (a real HTTP prompt server, a real webhook receiver; SQLite). Real SIP is in
``tests/e2e/test_graph_prompts.py``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import sqlalchemy as sa

from dtmfgraph.service import LoopbackMedia
from dtmfgraph.store.tables import recordings
from dtmfgraph.tones.resample import prepare
from dtmfgraph.tones.wav import encode_wav, parse_wav

from .audio import (
    PromptServer,
    best_lag,
    espeak_wav,
    play_prompt_body,
    record_body,
    tone,
    wav_samples,
)
from .harness import Receiver, Service, free_port, make_settings, running_service
from .sdkhelp import context_body, dtmf_body, new_call, sdk_mod

VERSIONS = ["v1.0", "beta"]
Note = dict[str, Any]


def ev(enum: object) -> str:
    value = str(enum.value)  # type: ignore[attr-defined]
    return value[:1].lower() + value[1:]


def op_end(op_id: str) -> Callable[[Note], bool]:
    return lambda n: n["changeType"] == "deleted" and n["resourceData"].get("id") == op_id


def outcome(note: Note) -> tuple[str, str, int, int]:
    d = note["resourceData"]
    return d["status"], d["completionReason"], d["resultInfo"]["code"], d["resultInfo"]["subcode"]


@pytest.fixture
async def prompts(tmp_path: Path) -> AsyncIterator[PromptServer]:
    server = PromptServer()
    speech = espeak_wav("Press one for sales, two for support.", tmp_path / "menu.wav")
    server.files["menu.wav"] = speech
    server.files["beep.wav"] = encode_wav(tone(440, 0.3), 16000)
    server.files["text.txt"] = b"this is not a wav file"
    async with server.running():
        yield server


@pytest.fixture
async def svc(tmp_path: Path, receiver: Receiver) -> AsyncIterator[Service]:
    settings = make_settings(
        tmp_path,
        f"sqlite+aiosqlite:///{tmp_path / 'graph.sqlite3'}",
        free_port(),
        loopback_speed=0.05,
        record_media_timeout_s=1.0,
        incoming_callback_uri=receiver.url,
        prompt_dir=tmp_path / "prompts",
        node_heartbeat_s=0.2,
    )
    (tmp_path / "prompts").mkdir()
    async with running_service(settings, LoopbackMedia(speed=0.05)) as s:
        yield s


async def place(svc: Service, receiver: Receiver, version: str) -> tuple[Any, Any, Any]:
    client = svc.sdk(version)
    call = await client.communications.calls.post(new_call(version, receiver.url))
    await receiver.wait_for(
        lambda n: (
            n["resourceUrl"] == f"/communications/calls/{call.id}"
            and n["resourceData"]["state"] == "established"
        )
    )
    far = svc.media.calls[-1]
    return call, client.communications.calls.by_call_id(call.id), far


@pytest.mark.parametrize("version", VERSIONS)
async def test_play_prompt_then_queued_keys_then_cancel(
    svc: Service, receiver: Receiver, prompts: PromptServer, version: str
) -> None:
    _, calls, far = await place(svc, receiver, version)
    op = await calls.play_prompt.post(
        play_prompt_body(version, prompts.url("menu.wav"), client_context="menu")
    )
    op_cls = sdk_mod(version, "models.play_prompt_operation").PlayPromptOperation
    assert isinstance(op, op_cls) and ev(op.status) == "running" and op.client_context == "menu"
    keys = await calls.send_dtmf_tones.post(dtmf_body(version, "12"))
    assert ev(keys.status) == "notStarted"  # queued behind the prompt
    [note] = await receiver.wait_for(op_end(op.id))
    assert note["resourceData"]["@odata.type"] == "#microsoft.graph.playPromptOperation"
    assert outcome(note) == ("completed", "completedSuccessfully", 200, 0)
    [keys_note] = await receiver.wait_for(op_end(keys.id))
    assert receiver.notes.index(note) < receiver.notes.index(keys_note)
    assert far.heard_keys == "12"
    # what the far end heard is the prompt, resampled to 8 kHz
    want = prepare(parse_wav(prompts.files["menu.wav"]), 8000)
    assert np.array_equal(far.played_audio, want)
    back = await calls.operations.by_comms_operation_id(op.id).get()
    assert isinstance(back, op_cls) and ev(back.status) == "completed"

    # a looping prompt never ends by itself; cancel ends it and the keys queued behind it
    loop_body = play_prompt_body(version, prompts.url("beep.wav"))
    loop_body.additional_data = {"loop": True}
    looping = await calls.play_prompt.post(loop_body)
    queued = await calls.send_dtmf_tones.post(dtmf_body(version, "9"))
    await asyncio.sleep(0.3)
    assert not [n for n in receiver.notes if op_end(looping.id)(n)]
    assert len(far.played) > 2  # several rounds
    cancel = await calls.cancel_media_processing.post(context_body(version, "cancel"))
    assert ev(cancel.status) == "completed"
    for o in (looping, queued):
        [n] = await receiver.wait_for(op_end(o.id))
        assert outcome(n) == ("completed", "mediaOperationCanceled", 400, 8508)
    assert far.heard_keys == "12"


async def test_loopback_play_and_fetch_what_the_bot_played(
    svc: Service, receiver: Receiver, prompts: PromptServer
) -> None:
    _, calls, _ = await place(svc, receiver, "v1.0")
    op = await calls.play_prompt.post(play_prompt_body("v1.0", prompts.url("menu.wav")))
    await receiver.wait_for(op_end(op.id))
    async with httpx.AsyncClient(base_url=svc.base) as http:
        r = await http.get("/_loopback/calls/0/played")
        assert r.status_code == 200
        heard = wav_samples(r.content)
        _, corr = best_lag(heard, prepare(parse_wav(prompts.files["menu.wav"]), 8000))
        assert corr > 0.99
        r = await http.post("/_loopback/calls/0/play", content=b"not a wav")
        assert r.status_code == 400 and "not a WAV" in r.json()["error"]["message"]


@pytest.mark.parametrize("version", VERSIONS)
async def test_record_a_spoken_answer_ended_by_pound(
    svc: Service, receiver: Receiver, prompts: PromptServer, version: str, tmp_path: Path
) -> None:
    _, calls, far = await place(svc, receiver, version)
    body = record_body(
        version,
        prompts.url("beep.wav"),
        max_record_duration_in_seconds=30,
        max_silence_timeout_in_seconds=10,
        stop_tones=["#"],
        play_beep=True,
        client_context="msg",
    )
    op = await calls.record_response.post(body)
    rec_cls = sdk_mod(version, "models.record_operation").RecordOperation
    assert isinstance(op, rec_cls) and ev(op.status) == "running"
    assert op.recording_location is None
    while len(far.played) < 2:  # the prompt, then the beep: recording starts now
        await asyncio.sleep(0.01)
    said = prepare(parse_wav(espeak_wav("I would like a call back.", tmp_path / "s.wav")), 8000)
    far.speak(said)
    await asyncio.sleep(len(said) / 8000 * 0.05 + 0.2)
    far.press("#")
    [note] = await receiver.wait_for(op_end(op.id))
    d = note["resourceData"]
    assert d["@odata.type"] == "#microsoft.graph.recordOperation" and d["clientContext"] == "msg"
    assert outcome(note) == ("completed", "stopToneDetected", 200, 0)
    assert d["recordingLocation"] == f"{svc.base}/recordings/{op.id}"
    back = await calls.operations.by_comms_operation_id(op.id).get()
    assert isinstance(back, rec_cls)
    assert back.recording_location == d["recordingLocation"]
    assert back.recording_access_token == d["recordingAccessToken"]
    if version == "beta":
        assert ev(back.completion_reason) == "stopToneDetected"
    async with httpx.AsyncClient() as http:
        r = await http.get(
            back.recording_location,
            headers={"Authorization": f"Bearer {back.recording_access_token}"},
        )
        assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
        recorded = wav_samples(r.content)
        _, corr = best_lag(recorded, said)
        assert corr > 0.95
        for header, status in [
            ({}, 401),
            ({"Authorization": "Bearer " + back.recording_access_token[:-2] + "xx"}, 401),
            ({"Authorization": "Basic abc"}, 401),
        ]:
            bad = await http.get(back.recording_location, headers=header)
            assert bad.status_code == status
            assert bad.json()["error"]["code"] == "unauthenticated"
        r = await http.get(
            f"{svc.base}/recordings/00000000-0000-0000-0000-000000000000",
            headers={"Authorization": f"Bearer {back.recording_access_token}"},
        )
        assert r.status_code == 404 and r.json()["error"]["code"] == "itemNotFound"


async def _record(svc: Service, receiver: Receiver, calls: Any, **fields: Any) -> tuple[Any, Note]:
    fields.setdefault("play_beep", False)
    op = await calls.record_response.post(record_body("beta", **fields))
    [note] = await receiver.wait_for(op_end(op.id), timeout=15)
    return op, note


SPEECH = tone(300, 2.0, rate=8000, dbfs=-15)


@pytest.mark.parametrize(
    "case", ["initialSilence", "maxDuration", "maxSilence", "mediaReceive", "promptFailed"]
)
async def test_each_recorder_outcome(svc: Service, receiver: Receiver, case: str) -> None:
    _, calls, far = await place(svc, receiver, "beta")
    if case == "initialSilence":  # nothing said: fails, no recording
        _, note = await _record(svc, receiver, calls, initial_silence_timeout_in_seconds=2)
        assert outcome(note) == ("failed", "initialSilenceTimeout", 408, 0)
        assert note["resourceData"]["recordingLocation"] == ""
    elif case == "maxDuration":  # talking all along: exactly that much audio
        far.speak(np.tile(SPEECH, 3))
        _, note = await _record(svc, receiver, calls, max_record_duration_in_seconds=3)
        assert outcome(note) == ("completed", "maxRecordDurationReached", 200, 8515)
        assert note["resourceData"]["resultInfo"]["message"] == (
            "Action completed, max record duration reached."
        )
        d = note["resourceData"]
        async with httpx.AsyncClient() as http:
            r = await http.get(
                d["recordingLocation"],
                headers={"Authorization": f"Bearer {d['recordingAccessToken']}"},
            )
        assert len(wav_samples(r.content)) == 3 * 8000
    elif case == "maxSilence":  # speech, then quiet
        far.speak(SPEECH[:8000])
        _, note = await _record(
            svc,
            receiver,
            calls,
            max_silence_timeout_in_seconds=2,
            max_record_duration_in_seconds=60,
        )
        assert outcome(note) == ("completed", "maxSilenceTimeout", 200, 0)
        assert note["resourceData"]["recordingLocation"].endswith(
            "/recordings/" + note["resourceData"]["id"]
        )
    elif case == "mediaReceive":  # no audio at all for record_media_timeout_s (1 s)
        far.stop_media(True)
        _, note = await _record(svc, receiver, calls, initial_silence_timeout_in_seconds=60)
        assert outcome(note) == ("failed", "mediaReceiveTimeout", 410, 0)
    else:  # the prompt cannot be had
        _, note = await _record(svc, receiver, calls, prompt="http://127.0.0.1:1/none.wav")
        assert outcome(note) == ("failed", "playPromptFailed", 400, 0)
        assert "127.0.0.1:1/none.wav" in note["resourceData"]["resultInfo"]["message"]


async def test_cancel_ends_a_recording_operation_canceled(svc: Service, receiver: Receiver) -> None:
    _, calls, _ = await place(svc, receiver, "beta")
    # a running recordResponse fails operationCanceled with empty location and token
    rec = await calls.record_response.post(
        record_body("beta", play_beep=False, initial_silence_timeout_in_seconds=60)
    )
    await asyncio.sleep(0.2)
    await calls.cancel_media_processing.post(context_body("beta", "cancel"))
    [note] = await receiver.wait_for(op_end(rec.id))
    assert outcome(note) == ("failed", "operationCanceled", 400, 8508)
    d = note["resourceData"]
    assert (d["recordingLocation"], d["recordingAccessToken"]) == ("", "")


async def test_barge_in(svc: Service, receiver: Receiver, prompts: PromptServer) -> None:
    _, calls, _ = await place(svc, receiver, "beta")
    # a prompt playing, a recording and keys queued; a bargeInAllowed recording
    # cancels the prompt and the queued recording, runs at once, and the keys wait behind it
    long_prompt = play_prompt_body("beta", prompts.url("menu.wav"))
    long_prompt.additional_data = {"loop": True}
    playing = await calls.play_prompt.post(long_prompt)
    queued_rec = await calls.record_response.post(record_body("beta", play_beep=False))
    keys = await calls.send_dtmf_tones.post(dtmf_body("beta", "7"))
    barge = await calls.record_response.post(
        record_body(
            "beta", play_beep=False, barge_in_allowed=True, initial_silence_timeout_in_seconds=1
        )
    )
    assert ev(barge.status) == "running"
    for o, want in [
        (playing, ("completed", "mediaOperationCanceled", 400, 8508)),
        (queued_rec, ("failed", "operationCanceled", 400, 8508)),
        (barge, ("failed", "initialSilenceTimeout", 408, 0)),
        (keys, ("completed", "completedSuccessfully", 200, 0)),
    ]:
        [n] = await receiver.wait_for(op_end(o.id), timeout=15)
        assert outcome(n) == want, o
    order = [n["resourceData"]["id"] for n in receiver.notes if n["changeType"] == "deleted"]
    assert order[-4:] == [playing.id, queued_rec.id, barge.id, keys.id]


async def test_the_call_ends_while_recording_and_while_queued(
    svc: Service, receiver: Receiver
) -> None:
    _, calls, far = await place(svc, receiver, "beta")
    # the call ends while recording (1 s or more recorded: kept) and with one queued
    far.speak(tone(300, 2.0, rate=8000, dbfs=-15))
    running = await calls.record_response.post(
        record_body(
            "beta",
            play_beep=False,
            max_record_duration_in_seconds=60,
            max_silence_timeout_in_seconds=60,
        )
    )
    waiting = await calls.record_response.post(record_body("beta", play_beep=False))
    await asyncio.sleep(0.4)  # ~8 s of far-end audio at speed 0.05
    far.remote_hangup()
    [n1] = await receiver.wait_for(op_end(running.id))
    [n2] = await receiver.wait_for(op_end(waiting.id))
    assert outcome(n1) == ("failed", "unspecifiedError", 200, 4097)
    assert n1["resourceData"]["recordingLocation"].endswith(f"/recordings/{running.id}")
    assert outcome(n2) == ("failed", "unspecifiedError", 200, 4097)
    assert n2["resourceData"]["recordingLocation"] == ""
    [end] = await receiver.wait_for(lambda n: n["resourceData"].get("state") == "terminated")
    assert receiver.notes.index(n2) < receiver.notes.index(end)


HOSTILE = [
    ("https://169.254.169.254/latest/meta-data.wav", "169.254.169.254 is a cloud metadata"),
    ("file:///etc/passwd", "outside the prompt directory"),
    ("{base}/huge", "10737418240 bytes; prompts are at most 10485760 bytes"),
    ("{base}/endless", "prompts are at most"),
    ("{base}/slow", "took more than 2 s"),
    ("{base}/loop", "too many redirects (more than 5)"),
    ("{base}/p/text.txt", "not a WAV file we can read"),
    ("{base}/status/404", "HTTP 404 Not Found"),
]


async def test_hostile_prompts_fail_with_the_cause_and_never_block_other_calls(
    tmp_path: Path, receiver: Receiver, prompts: PromptServer
) -> None:
    settings = make_settings(
        tmp_path,
        f"sqlite+aiosqlite:///{tmp_path / 'h.sqlite3'}",
        free_port(),
        loopback_speed=0.05,
        prompt_timeout_s=2.0,
        prompt_dir=tmp_path,
        incoming_callback_uri=receiver.url,
    )
    async with running_service(settings, LoopbackMedia(speed=0.05)) as svc:
        _, calls, _ = await place(svc, receiver, "v1.0")
        _, other, other_far = await place(svc, receiver, "v1.0")
        ops = []
        for uri, _ in HOSTILE:
            body = play_prompt_body("v1.0", uri.format(base=prompts.base))
            ops.append(await calls.play_prompt.post(body))
        # meanwhile another call's keys go out at once
        keys = await other.send_dtmf_tones.post(dtmf_body("v1.0", "123"))
        await receiver.wait_for(op_end(keys.id), timeout=5)
        assert other_far.heard_keys == "123"
        for op, (uri, why) in zip(ops, HOSTILE, strict=True):
            [note] = await receiver.wait_for(op_end(op.id), timeout=20)
            assert outcome(note) == ("failed", "unknown", 400, 0), uri
            message = note["resourceData"]["resultInfo"]["message"]
            assert why in message and uri.format(base=prompts.base) in message, message


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({}, "prompts: is required"),
        ({"prompts": []}, "prompts: List should have at least 1 item"),
        (
            {"prompts": [{"@odata.type": "#microsoft.graph.mediaPrompt", "mediaInfo": {}}]},
            "prompts[0].mediaInfo.uri: is required",
        ),
        (
            {"prompts": [{"@odata.type": "#microsoft.graph.other", "mediaInfo": {"uri": "x"}}]},
            "prompts[0].@odata.type",
        ),
        (
            {"prompts": [{"mediaInfo": {"uri": "http://cdn.example.com/a.wav"}}]},
            "must be an https URL",
        ),
        ({"prompts": [{"mediaInfo": {"uri": "ftp://a/b.wav"}}]}, "is not an absolute https URL"),
        ({"prompts": [{"mediaInfo": {"uri": "https://a/b.wav"}}] * 21}, "at most 20 items"),
    ],
)
async def test_bad_play_prompt_bodies(
    svc: Service, receiver: Receiver, body: dict[str, Any], why: str
) -> None:
    call, _, _ = await place(svc, receiver, "v1.0")
    async with httpx.AsyncClient(
        base_url=svc.base, headers={"Authorization": f"Bearer {svc.token()}"}
    ) as http:
        r = await http.post(f"/v1.0/communications/calls/{call.id}/playPrompt", json=body)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalidRequest"
    assert why in r.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"maxRecordDurationInSeconds": 121}, "maxRecordDurationInSeconds"),
        ({"initialSilenceTimeoutInSeconds": 0}, "initialSilenceTimeoutInSeconds"),
        ({"stopTones": ["#", "x"]}, "stopTones[1]: 'x' is not a key"),
        ({"prompts": [{"mediaInfo": {"uri": "https://a/b.wav"}}] * 2}, "at most 1 item"),
    ],
)
async def test_bad_record_bodies(
    svc: Service, receiver: Receiver, body: dict[str, Any], why: str
) -> None:
    call, _, _ = await place(svc, receiver, "beta")
    async with httpx.AsyncClient(
        base_url=svc.base, headers={"Authorization": f"Bearer {svc.token()}"}
    ) as http:
        for action in ("recordResponse", "record"):
            r = await http.post(f"/beta/communications/calls/{call.id}/{action}", json=body)
            assert r.status_code == 400 and why in r.json()["error"]["message"], r.json()
        r = await http.post(
            f"/beta/communications/calls/{call.id}/record", json={"stopTones": ["Pound", "1"]}
        )
        assert r.status_code == 200
        assert r.json()["@odata.type"] == "#microsoft.graph.recordOperation"
        weak = svc.token(roles=("Calls.Initiate.All",))
        r = await http.post(
            f"/v1.0/communications/calls/{call.id}/recordResponse",
            json={},
            headers={"Authorization": f"Bearer {weak}"},
        )
        assert r.status_code == 403 and r.json()["error"]["code"] == "accessDenied"


async def test_recordings_expire_then_are_deleted(svc: Service, receiver: Receiver) -> None:
    _, calls, far = await place(svc, receiver, "beta")
    far.speak(tone(300, 3.0, rate=8000, dbfs=-15))
    _, note = await _record(svc, receiver, calls, max_record_duration_in_seconds=1)
    d = note["resourceData"]
    auth = {"Authorization": f"Bearer {d['recordingAccessToken']}"}
    engine = svc.app.state.repo.engine
    async with httpx.AsyncClient() as http:
        assert (await http.get(d["recordingLocation"], headers=auth)).status_code == 200
        async with engine.begin() as conn:  # kept 10 minutes: make those minutes pass
            row = (await conn.execute(sa.select(recordings.c.expires_at))).one()
            assert 590 < row.expires_at - time.time() <= 600
            await conn.execute(recordings.update().values(expires_at=time.time() - 1))
        r = await http.get(d["recordingLocation"], headers=auth)
        assert r.status_code == 404 and r.json()["error"]["code"] == "itemNotFound"
    for _ in range(100):  # and the node's sweep (at its heartbeat) deletes it
        async with engine.begin() as conn:
            left = (await conn.execute(sa.select(sa.func.count()).select_from(recordings))).scalar()
        if left == 0:
            break
        await asyncio.sleep(0.1)
    assert left == 0
