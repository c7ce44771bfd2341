"""Request bodies as pydantic v2 models: camelCase on the wire, snake_case in Python, open types.

Graph types are open: unknown properties are kept (``extra="allow"``) and never rejected.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

CLIENT_CONTEXT_MAX = 256

Modality = Literal["audio", "video", "videoBasedScreenSharing", "data"]
_MODALITIES = {m.lower(): m for m in ("audio", "video", "videoBasedScreenSharing", "data")}


def _audio_only() -> list[Modality]:
    return ["audio"]


def any_case(value: Any, names: dict[str, str]) -> Any:
    """``value`` (a string, or a list of them) spelled as in ``names`` (lower -> canonical):
    Graph's own examples and SDKs mix ``Busy`` and ``busy``, so requests may use any case."""
    if isinstance(value, str):
        return names.get(value.lower(), value)
    if isinstance(value, list):
        return [names.get(v.lower(), v) if isinstance(v, str) else v for v in value]
    return value


class _AnyCaseEnum(StrEnum):
    """A wire enum that takes its values in any case (``Tone1``, ``TONE1``, ``tone1``)."""

    @classmethod
    def _missing_(cls, value: object) -> Any:
        if isinstance(value, str):
            for member in cls:
                if member.value.lower() == value.lower():
                    return member
        return None


class ToneName(_AnyCaseEnum):
    """Graph ``tone`` enum (17 values, RFC 4733 event numbering)."""

    TONE0 = "tone0"
    TONE1 = "tone1"
    TONE2 = "tone2"
    TONE3 = "tone3"
    TONE4 = "tone4"
    TONE5 = "tone5"
    TONE6 = "tone6"
    TONE7 = "tone7"
    TONE8 = "tone8"
    TONE9 = "tone9"
    STAR = "star"
    POUND = "pound"
    A = "a"
    B = "b"
    C = "c"
    D = "d"
    FLASH = "flash"


class DtmfMethodName(_AnyCaseEnum):
    """Extension ``dtmfMethod``: how keys are carried."""

    AUTO = "auto"
    RFC4733 = "rfc4733"
    SIPINFO = "sipinfo"
    INBAND = "inband"


class WireModel(BaseModel):
    """Base of all wire models: camelCase aliases, open (extra properties kept)."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="allow", frozen=True
    )


class _WithClientContext(WireModel):
    client_context: str | None = Field(
        default=None,
        max_length=CLIENT_CONTEXT_MAX,
        description="Echoed in the operation and its notification.",
    )


class SendDtmfTonesBody(_WithClientContext):
    """``POST .../sendDtmfTones``; ``toneDurationMs`` and ``dtmfMethod`` are our extensions."""

    tones: list[ToneName] = Field(min_length=1, description="The keys to press, in order.")
    delay_between_tones_ms: int | None = Field(
        default=None,
        description=(
            "Silence between two tones, in milliseconds; below 40 (the shortest pause ITU-T "
            "Q.24 receivers must take) it is raised to 40."
        ),
    )
    tone_duration_ms: int | None = Field(
        default=None, description="Extension: how long each tone sounds, in milliseconds."
    )
    dtmf_method: DtmfMethodName = Field(
        default=DtmfMethodName.AUTO,
        description=(
            "Extension: how keys are carried. auto: RFC 4733 when negotiated, else in-band."
        ),
    )


class CancelMediaProcessingBody(_WithClientContext):
    """``POST .../cancelMediaProcessing``."""


class SubscribeToToneBody(_WithClientContext):
    """``POST .../subscribeToTone``."""


class CreateCallBody(WireModel):
    """``POST /communications/calls``: validated parts; the whole body is kept as open data."""

    callback_uri: str = Field(min_length=1)
    targets: list[dict[str, Any]] = Field(min_length=1)
    requested_modalities: list[Modality] = Field(default_factory=_audio_only)
    source: dict[str, Any] | None = None
    media_config: dict[str, Any] | None = None
    tenant_id: str | None = None

    @field_validator("requested_modalities", mode="before")
    @classmethod
    def _modality_case(cls, value: Any) -> Any:
        return any_case(value, _MODALITIES)

    @field_validator("requested_modalities")
    @classmethod
    def _audio_required(cls, value: list[Modality]) -> list[Modality]:
        if "audio" not in value:
            raise ValueError("must include 'audio': DTMF needs an audio call")
        return value


class AnswerBody(WireModel):
    """``POST .../answer``: ``mediaConfig`` is required (Docs call-answer: "(Required)"), as
    Graph has it: a bot must not pass here and fail in the cloud."""

    callback_uri: str | None = None
    accepted_modalities: list[Modality] = Field(default_factory=_audio_only)
    media_config: dict[str, Any] = Field(
        description="serviceHostedMediaConfig (preFetchMedia prompts are fetched at once)."
    )
    participant_capacity: int | None = None

    @field_validator("accepted_modalities", mode="before")
    @classmethod
    def _modality_case(cls, value: Any) -> Any:
        return any_case(value, _MODALITIES)


class RejectBody(WireModel):
    """``POST .../reject``."""

    reason: Literal["none", "busy", "forbidden"] = "none"
    callback_uri: str | None = None

    @field_validator("reason", mode="before")
    @classmethod
    def _reason_case(cls, value: Any) -> Any:
        return any_case(value, {"none": "none", "busy": "busy", "forbidden": "forbidden"})
