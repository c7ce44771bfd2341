"""Request bodies of call control: mute/unmute, updateRecordingStatus, transfer, redirect.

Graph types are open: unknown properties are kept, never rejected (Docs examples put
``endpointType``, ``languageId``, ``region`` in a transfer target; they are ignored).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from .models import WireModel, _WithClientContext


class MuteBody(_WithClientContext):
    """``POST .../mute``, ``.../unmute`` and ``.../participants/{id}/mute``."""


class UpdateRecordingStatusBody(_WithClientContext):
    """``POST .../updateRecordingStatus``: ``status`` is notRecording, recording or failed."""

    status: str = Field(description="notRecording, recording or failed (any case).")


class TransferBody(WireModel):
    """``POST .../transfer``: ``transferTarget`` (invitationParticipantInfo) and, for group
    calls, ``transferee`` (participantInfo)."""

    transfer_target: dict[str, Any]
    transferee: dict[str, Any] | None = None


class RedirectBody(WireModel):
    """``POST .../redirect`` of an incoming call that is still ringing."""

    targets: list[dict[str, Any]] = Field(default_factory=list)
    timeout: int | None = None
    callback_uri: str | None = None


__all__ = ["MuteBody", "RedirectBody", "TransferBody", "UpdateRecordingStatusBody"]
