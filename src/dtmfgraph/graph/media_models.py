"""Request bodies of playPrompt and recordResponse (camelCase on the wire, open types).

``mediaPrompt`` elements carry ``@odata.type`` (the SDK sets it; ``mediaInfo`` may have one or
not); anything but ``mediaPrompt`` there is refused. Graph's limits: at most 20 prompts for
playPrompt, at most 1 for recordResponse; the recordResponse seconds are 1..120.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from .models import WireModel, _WithClientContext

MAX_PROMPTS = 20
SECONDS_MIN, SECONDS_MAX = 1, 120
_MEDIA_PROMPT = ("mediaPrompt", "microsoft.graph.mediaPrompt", "#microsoft.graph.mediaPrompt")


class MediaInfoModel(WireModel):
    """``mediaInfo``: ``uri`` of a WAV file, ``resourceId`` its cache key."""

    uri: str = Field(min_length=1, max_length=2048)
    resource_id: str | None = Field(default=None, max_length=256)


class MediaPromptModel(WireModel):
    """``#microsoft.graph.mediaPrompt``."""

    odata_type: str | None = Field(default=None, alias="@odata.type")
    media_info: MediaInfoModel

    @field_validator("odata_type")
    @classmethod
    def _is_media_prompt(cls, value: str | None) -> str | None:
        if value is not None and value not in _MEDIA_PROMPT:
            raise ValueError(f"must be #microsoft.graph.mediaPrompt, got {value!r}")
        return value


class PlayPromptBody(_WithClientContext):
    """``POST .../playPrompt``; ``loop`` is beta's (accepted on v1.0 too)."""

    prompts: list[MediaPromptModel] = Field(min_length=1, max_length=MAX_PROMPTS)
    loop: bool = Field(default=False, description="Play the prompts again and again.")


def _seconds(description: str) -> int | None:
    return Field(default=None, ge=SECONDS_MIN, le=SECONDS_MAX, description=description)


class RecordResponseBody(_WithClientContext):
    """``POST .../recordResponse`` (beta also ``.../record``)."""

    prompts: list[MediaPromptModel] = Field(default_factory=list, max_length=1)
    barge_in_allowed: bool = False
    initial_silence_timeout_in_seconds: int | None = _seconds("Default 5.")
    max_silence_timeout_in_seconds: int | None = _seconds("Default 5.")
    max_record_duration_in_seconds: int | None = _seconds("Default 5.")
    play_beep: bool = Field(default=True, description="Graph's default; the SDK sends false.")
    stop_tones: list[str] | None = Field(default=None, max_length=16)
    stream_while_recording: bool | None = None


__all__ = ["MediaInfoModel", "MediaPromptModel", "PlayPromptBody", "RecordResponseBody"]
