"""Domain snapshots -> Graph JSON: call and operation resources, ``commsNotifications``."""

from __future__ import annotations

from typing import Any

from ..graph import odata_type
from ..service.model import (
    Call,
    Event,
    EventKind,
    Operation,
    bot_participant_id,
    snapshot_call,
    snapshot_operation,
)
from .participants import participants_json

_WITH_REASON = frozenset({"sendDtmfTonesOperation", "playPromptOperation", "recordOperation"})
"""Operations with a ``completionReason`` (beta-only for the last two; emitted on v1.0 too,
where the SDK keeps it in ``additional_data``)."""


def _result(d: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if d is None else {"@odata.type": odata_type("resultInfo"), **d}


def operation_json(snap: dict[str, Any]) -> dict[str, Any]:
    """A ``commsOperation`` (subtype by kind) from ``snapshot_operation``."""
    out: dict[str, Any] = {
        "@odata.type": odata_type(snap["kind"]),
        "id": snap["id"],
        "status": snap["status"],
        "clientContext": snap["clientContext"],
        "resultInfo": _result(snap["resultInfo"]),
    }
    if snap["kind"] in _WITH_REASON:
        out["completionReason"] = snap["completionReason"]
    if snap["kind"] == "recordOperation":
        out["recordingLocation"] = snap.get("recordingLocation")
        out["recordingAccessToken"] = snap.get("recordingAccessToken")
    return out


def call_json(snap: dict[str, Any], *, full: bool = True) -> dict[str, Any]:
    """A ``call`` from ``snapshot_call``; ``full=False`` gives the short notification form."""
    out: dict[str, Any] = {}
    if full:
        out.update({k: v for k, v in snap["properties"].items() if not k.startswith("@odata")})
        out.update(
            {
                "direction": snap["direction"],
                "callbackUri": snap["callbackUri"],
                "tenantId": snap["tenantId"],
                "myParticipantId": bot_participant_id(snap["id"]),
            }
        )
    out["@odata.type"] = odata_type("call")
    out["id"] = snap["id"]
    out["state"] = snap["state"]
    out["resultInfo"] = _result(snap["resultInfo"])
    transfer = (snap.get("control") or {}).get("transfer") or {}
    if snap["state"] == "terminated" and transfer.get("replacesCallId"):
        result = snap["resultInfo"] or {}
        if (result.get("code"), result.get("subcode")) == (0, 7015):
            out["terminationReason"] = "AppTransferred"  # a consultative transfer completed
    if snap["state"] == "established":  # a call is audio only here
        audio = "inactive" if snap.get("audioHeld") else "active"  # older snapshots: active
        out["mediaState"] = {"@odata.type": odata_type("callMediaState"), "audio": audio}
    if snap["lastTone"] is not None:
        out["toneInfo"] = {
            "@odata.type": odata_type("toneInfo"),
            "sequenceId": snap["toneSeq"],
            "tone": snap["lastTone"],
        }
    return out


def call_resource(call: Call) -> dict[str, Any]:
    return call_json(snapshot_call(call))


def operation_resource(op: Operation) -> dict[str, Any]:
    return operation_json(snapshot_operation(op))


def notification_json(event: Event) -> dict[str, Any]:
    """The ``commsNotification`` of one event: one item of a ``commsNotifications`` body's
    ``value``."""
    call_url = f"/communications/calls/{event.call_id}"
    data: Any
    if event.kind is EventKind.ROSTER:
        change, url = "updated", f"{call_url}/participants"
        data = participants_json(event.call)
    elif event.kind is EventKind.OPERATION_DELETED:
        assert event.operation is not None
        change, url = "deleted", f"{call_url}/operations/{event.operation['id']}"
        data = operation_json(event.operation)
    else:
        change = {
            EventKind.CALL_CREATED: "created",
            EventKind.CALL_DELETED: "deleted",
        }.get(event.kind, "updated")
        url = call_url
        data = call_json(event.call, full=event.kind is EventKind.CALL_CREATED)
        if event.kind is not EventKind.TONE:
            data.pop("toneInfo", None)
    return {
        "@odata.type": odata_type("commsNotification"),
        "changeType": change,
        "resourceUrl": url,
        "resourceData": data,
    }


BODY_HEAD = '{"@odata.type":"' + odata_type("commsNotifications") + '","value":['
BODY_TAIL = "]}"
"""A ``commsNotifications`` body is ``BODY_HEAD`` + its items' JSON, comma-separated, +
``BODY_TAIL`` (compact JSON, as :func:`notifications_body` writes it)."""


def notifications_body(items: list[str]) -> str:
    """The ``commsNotifications`` body (compact JSON text) of several notifications, each
    already JSON text (of :func:`notification_json`), in order."""
    return BODY_HEAD + ",".join(items) + BODY_TAIL


def notification_batch(event: Event) -> dict[str, Any]:
    """The ``commsNotifications`` body for one event alone."""
    return {
        "@odata.type": odata_type("commsNotifications"),
        "value": [notification_json(event)],
    }
