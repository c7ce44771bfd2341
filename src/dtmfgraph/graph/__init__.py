"""Graph wire models: request bodies, enums and the error envelope (camelCase on the wire)."""

from .media_models import PlayPromptBody, RecordResponseBody
from .models import (
    AnswerBody,
    CancelMediaProcessingBody,
    CreateCallBody,
    DtmfMethodName,
    RejectBody,
    SendDtmfTonesBody,
    SubscribeToToneBody,
    ToneName,
    WireModel,
)
from .render import error_envelope, odata_type, validation_message

__all__ = [
    "AnswerBody",
    "CancelMediaProcessingBody",
    "CreateCallBody",
    "DtmfMethodName",
    "PlayPromptBody",
    "RecordResponseBody",
    "RejectBody",
    "SendDtmfTonesBody",
    "SubscribeToToneBody",
    "ToneName",
    "WireModel",
    "error_envelope",
    "odata_type",
    "validation_message",
]
