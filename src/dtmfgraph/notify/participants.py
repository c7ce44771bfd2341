"""Call snapshots -> Graph ``participant`` resources (the roster of a 1:1 SIP call).

A call has two participants: the bot (``myParticipantId``; identity = the application) and
the far end (identity = the call's target when we placed it, its caller when it called us,
or whoever the far end transferred the call to). Ids are derived from the call id (see
``bot_participant_id`` / ``far_participant_id``), so they are stable without being stored.
"""

from __future__ import annotations

from typing import Any

from ..graph import odata_type
from ..service.model import bot_participant_id, far_participant_id

_FAR_PRESENT = frozenset({"incoming", "established", "transferring", "transferAccepted"})


def _identity_set(identity: dict[str, Any]) -> dict[str, Any]:
    """An identity set typed as Graph wants it: ``communicationsIdentitySet`` when it has a
    ``phone`` (plain ``identitySet`` has none), each identity typed."""
    out: dict[str, Any] = {}
    for name, value in identity.items():
        if name.startswith("@odata"):
            continue
        out[name] = (
            {"@odata.type": odata_type("identity"), **value} if isinstance(value, dict) else value
        )
    kind = "communicationsIdentitySet" if "phone" in out else "identitySet"
    return {"@odata.type": odata_type(kind), **out}


def far_identity(snap: dict[str, Any]) -> dict[str, Any]:
    """The far end's identity set in a call snapshot."""
    control = snap.get("control") or {}
    if control.get("farIdentity"):
        return _identity_set(control["farIdentity"])
    props = snap.get("properties") or {}
    ident: Any = None
    if snap.get("direction") == "incoming":
        ident = (props.get("source") or {}).get("identity")
    else:
        targets = props.get("targets") or []
        if targets and isinstance(targets[0], dict):
            ident = targets[0].get("identity")
    return _identity_set(ident if isinstance(ident, dict) else {})


def _stream(source_id: str, direction: str, muted: bool) -> dict[str, Any]:
    return {
        "@odata.type": odata_type("mediaStream"),
        "mediaType": "audio",
        "sourceId": source_id,
        "direction": direction,
        "serverMuted": muted,
    }


def bot_participant(snap: dict[str, Any]) -> dict[str, Any]:
    control = snap.get("control") or {}
    pid = bot_participant_id(snap["id"])
    muted = bool(control.get("muted"))
    app = {"@odata.type": odata_type("identity"), "id": snap.get("appId")}
    out: dict[str, Any] = {
        "@odata.type": odata_type("participant"),
        "id": pid,
        "info": {
            "@odata.type": odata_type("participantInfo"),
            "identity": {"@odata.type": odata_type("identitySet"), "application": app},
            "endpointType": "default",
            "participantId": pid,
        },
        "isMuted": muted,
        "isInLobby": False,
        "mediaStreams": [_stream("1", "sendReceive", muted)],
        "rosterSequenceNumber": int(control.get("rosterSeq", 0)),
    }
    if control.get("recordingStatus"):
        out["recordingInfo"] = {
            "@odata.type": odata_type("recordingInfo"),
            "recordingStatus": control["recordingStatus"],
            "initiator": {"@odata.type": odata_type("identitySet"), "application": app},
        }
    return out


def far_participant(snap: dict[str, Any]) -> dict[str, Any]:
    control = snap.get("control") or {}
    pid = far_participant_id(snap["id"], int(control.get("farLeg", 0)))
    return {
        "@odata.type": odata_type("participant"),
        "id": pid,
        "info": {
            "@odata.type": odata_type("participantInfo"),
            "identity": far_identity(snap),
            "endpointType": "default",
            "participantId": pid,
        },
        "isMuted": False,
        "isInLobby": False,
        "mediaStreams": [_stream("2", str(control.get("farDirection") or "sendReceive"), False)],
        "rosterSequenceNumber": int(control.get("rosterSeq", 0)),
    }


def participants_json(snap: dict[str, Any]) -> list[dict[str, Any]]:
    """The current roster of a call snapshot: the bot while the call is not over, the far end
    while it is on the call (ringing us, or connected)."""
    state = snap.get("state")
    if state == "terminated":
        return []
    out = [bot_participant(snap)]
    if state in _FAR_PRESENT:
        out.append(far_participant(snap))
    return out


__all__ = ["bot_participant", "far_identity", "far_participant", "participants_json"]
