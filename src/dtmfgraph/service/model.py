"""The domain: calls, operations, results and the events that become notifications."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class CallState(StrEnum):
    INCOMING = "incoming"
    ESTABLISHING = "establishing"
    ESTABLISHED = "established"
    TRANSFERRING = "transferring"
    TRANSFER_ACCEPTED = "transferAccepted"
    TERMINATING = "terminating"
    TERMINATED = "terminated"


class Direction(StrEnum):
    INCOMING = "incoming"
    OUTGOING = "outgoing"


class OpKind(StrEnum):
    """Operation kinds; the value is the Graph type name."""

    SEND_DTMF = "sendDtmfTonesOperation"
    CANCEL_MEDIA = "cancelMediaProcessingOperation"
    SUBSCRIBE_TONE = "subscribeToToneOperation"
    PLAY_PROMPT = "playPromptOperation"
    RECORD = "recordOperation"
    MUTE = "muteParticipantOperation"
    UNMUTE = "unmuteParticipantOperation"
    UPDATE_RECORDING_STATUS = "updateRecordingStatusOperation"

    @property
    def media(self) -> bool:
        """Runs in the call's media queue."""
        return self in (OpKind.SEND_DTMF, OpKind.PLAY_PROMPT, OpKind.RECORD)


class OpStatus(StrEnum):
    NOT_STARTED = "notStarted"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


class CompletionReason(StrEnum):
    """sendDtmfCompletionReason, playPromptCompletionReason and recordCompletionReason."""

    UNKNOWN = "unknown"
    COMPLETED_SUCCESSFULLY = "completedSuccessfully"
    MEDIA_OPERATION_CANCELED = "mediaOperationCanceled"
    OPERATION_CANCELED = "operationCanceled"
    STOP_TONE_DETECTED = "stopToneDetected"
    MAX_RECORD_DURATION_REACHED = "maxRecordDurationReached"
    INITIAL_SILENCE_TIMEOUT = "initialSilenceTimeout"
    MAX_SILENCE_TIMEOUT = "maxSilenceTimeout"
    PLAY_PROMPT_FAILED = "playPromptFailed"
    PLAY_BEEP_FAILED = "playBeepFailed"
    MEDIA_RECEIVE_TIMEOUT = "mediaReceiveTimeout"
    UNSPECIFIED_ERROR = "unspecifiedError"


class DtmfMethod(StrEnum):
    AUTO = "auto"
    RFC4733 = "rfc4733"
    SIPINFO = "sipinfo"
    INBAND = "inband"


@dataclass(frozen=True, slots=True)
class ResultInfo:
    code: int
    subcode: int
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "subcode": self.subcode, "message": self.message}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> ResultInfo | None:
        if d is None:
            return None
        return cls(int(d["code"]), int(d["subcode"]), str(d["message"]))


class Results:
    """The result codes we emit (Graph's own codes; see docs/api.md for the SIP mapping)."""

    OK = ResultInfo(200, 0, "Action completed successfully.")
    CANCELED = ResultInfo(400, 8508, "Action failed, the operation was cancelled.")
    ENDED_BY_APP = ResultInfo(200, 7000, "The call was ended by the application.")
    ENDED_BY_REMOTE = ResultInfo(200, 4097, "The call was ended by the other participant.")
    CONVERSATION_ENDED = ResultInfo(200, 5001, "The conversation has ended.")
    KEEPALIVE_TIMEOUT = ResultInfo(408, 8537, "The call was ended: no keepAlive for too long.")
    ANSWER_TIMEOUT = ResultInfo(408, 1106, "The incoming call was not answered in time.")
    NO_SIGNALLING = ResultInfo(408, 10057, "No signalling from the callee endpoints.")
    NOT_FOUND = ResultInfo(480, 10037, "No callee endpoints found.")
    UNREACHABLE = ResultInfo(480, 10076, "The callee could not be reached.")
    NO_ROUTE = ResultInfo(480, 10134, "The call cannot be routed.")
    MEDIA_LOST = ResultInfo(410, 301005, "Media connectivity failure.")
    MEDIA_ERROR = ResultInfo(500, 1005, "Server connectivity error with the media.")
    RESTART_LOST = ResultInfo(
        500, 1005, "The call's media was lost when the service restarted; the call was ended."
    )
    SERVICE_STOPPED = ResultInfo(
        500, 1005, "The service was stopped while the call was up; the call was ended."
    )
    NODE_LOST = ResultInfo(
        500, 1005, "The call's media was lost with the node that carried it; the call was ended."
    )
    REJECTED = ResultInfo(200, 7000, "The incoming call was rejected by the application.")
    TRANSFERRED = ResultInfo(0, 7015, "GracefulTransferCompleted")
    REDIRECTED = ResultInfo(200, 7000, "The call was redirected.")
    MAX_DURATION = ResultInfo(200, 8515, "Action completed, max record duration reached.")
    STOP_TONE = ResultInfo(200, 0, "Action completed, a stop tone was detected.")
    MAX_SILENCE = ResultInfo(200, 0, "Action completed, the caller stopped speaking.")
    INITIAL_SILENCE = ResultInfo(408, 0, "Action failed, nothing was said before the timeout.")
    NO_MEDIA = ResultInfo(410, 0, "Action failed, no audio was received from the far end.")


def now() -> float:
    return time.time()


@dataclass(slots=True)
class CallControl:
    """The call-control state of a call, stored as one JSON value: the roster's changing
    parts (the bot muted, its recording status, the far end's audio direction and which far
    end it is) and a transfer in flight."""

    muted: bool = False
    recording_status: str | None = None
    roster_seq: int = 0
    far_leg: int = 0
    """How many far ends the call has had before this one (a transfer the far end made)."""
    far_direction: str = "sendReceive"
    """The far end's audio direction (Graph ``mediaDirection``) from its SDP."""
    far_identity: dict[str, Any] | None = None
    """The far end's identity set when it is not the call's own target/source (after the far
    end transferred the call)."""
    transfer: dict[str, Any] | None = None
    """The transfer in flight (target, consultative or not), ``None`` when none."""

    def to_json(self) -> dict[str, Any]:
        return {
            "muted": self.muted,
            "recordingStatus": self.recording_status,
            "rosterSeq": self.roster_seq,
            "farLeg": self.far_leg,
            "farDirection": self.far_direction,
            "farIdentity": self.far_identity,
            "transfer": self.transfer,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any] | None) -> CallControl:
        if not d:
            return cls()
        return cls(
            muted=bool(d.get("muted", False)),
            recording_status=d.get("recordingStatus"),
            roster_seq=int(d.get("rosterSeq", 0)),
            far_leg=int(d.get("farLeg", 0)),
            far_direction=str(d.get("farDirection") or "sendReceive"),
            far_identity=d.get("farIdentity"),
            transfer=d.get("transfer"),
        )


@dataclass(slots=True)
class Call:
    """A call as the service sees it. ``properties`` is the open Graph data kept verbatim."""

    id: str
    tenant_id: str
    app_id: str
    direction: Direction
    state: CallState
    callback_uri: str
    target_uri: str | None
    properties: dict[str, Any] = field(default_factory=dict)
    result_info: ResultInfo | None = None
    tone_subscribed: bool = False
    tone_seq: int = 0
    last_tone: str | None = None
    created_at: float = field(default_factory=now)
    last_keepalive_at: float = field(default_factory=now)
    media_record: dict[str, Any] | None = None
    """What the media backend needs to hang up the far end after a restart of the service
    (for SIP: the dialog); set when the call is established, cleared when it ends."""
    node_id: str | None = None
    """The node (``dtmfgraph serve`` process) whose media carries the call."""
    audio_held: bool = False
    """The far end holds the call (Graph ``mediaState.audio`` ``inactive``)."""
    control: CallControl = field(default_factory=CallControl)
    """Participants, mute, recording status and transfer state (see :class:`CallControl`)."""

    @property
    def ended(self) -> bool:
        return self.state in (CallState.TERMINATING, CallState.TERMINATED)


@dataclass(slots=True)
class Operation:
    """One commsOperation of a call."""

    id: str
    call_id: str
    kind: OpKind
    status: OpStatus
    client_context: str | None = None
    completion_reason: CompletionReason | None = None
    result_info: ResultInfo | None = None
    tones: list[str] = field(default_factory=list)
    delay_ms: int = 0
    tone_ms: int = 0
    method: DtmfMethod | None = None
    repeat_key: str | None = None
    created_at: float = field(default_factory=now)
    params: dict[str, Any] | None = None
    """What a playPrompt or recordResponse asked for (JSON; see ``media_queue``)."""
    recording_location: str | None = None
    recording_access_token: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in (OpStatus.COMPLETED, OpStatus.FAILED)


class EventKind(StrEnum):
    CALL_CREATED = "callCreated"
    CALL_UPDATED = "callUpdated"
    CALL_DELETED = "callDeleted"
    OPERATION_DELETED = "operationDeleted"
    TONE = "tone"
    ROSTER = "roster"
    """The participants changed (``updated`` on ``.../participants``)."""


@dataclass(frozen=True, slots=True)
class Event:
    """Something the application must be told; stored in the outbox with the state change.

    ``call`` and ``operation`` are snapshots in plain-JSON form (see ``snapshot_*``)."""

    kind: EventKind
    call_id: str
    call: dict[str, Any]
    operation: dict[str, Any] | None = None


_PARTICIPANTS = uuid.UUID("6f1c2a4e-9d3b-5e7a-8c21-d0b3f4e5a6c7")


def bot_participant_id(call_id: str) -> str:
    """The bot's participant id in a call (Graph ``myParticipantId``): a UUID derived from the
    call id, so it is stable across restarts and nodes without being stored, and is never the
    call id itself."""
    return str(uuid.uuid5(_PARTICIPANTS, f"{call_id}/bot"))


def far_participant_id(call_id: str, leg: int = 0) -> str:
    """The far end's participant id; ``leg`` counts far ends the call has had (a transfer that
    the far end made gives the call a new far end, and with it a new participant)."""
    return str(uuid.uuid5(_PARTICIPANTS, f"{call_id}/far/{leg}"))


def snapshot_call(call: Call) -> dict[str, Any]:
    return {
        "id": call.id,
        "state": call.state.value,
        "direction": call.direction.value,
        "callbackUri": call.callback_uri,
        "tenantId": call.tenant_id,
        "resultInfo": call.result_info.to_dict() if call.result_info else None,
        "toneSeq": call.tone_seq,
        "lastTone": call.last_tone,
        "audioHeld": call.audio_held,
        "properties": call.properties,
        "appId": call.app_id,
        "control": call.control.to_json(),
    }


def snapshot_operation(op: Operation) -> dict[str, Any]:
    snap = {
        "id": op.id,
        "kind": op.kind.value,
        "status": op.status.value,
        "clientContext": op.client_context,
        "completionReason": op.completion_reason.value if op.completion_reason else None,
        "resultInfo": op.result_info.to_dict() if op.result_info else None,
    }
    if op.kind is OpKind.RECORD:
        snap["recordingLocation"] = op.recording_location
        snap["recordingAccessToken"] = op.recording_access_token
    return snap
