"""The domain service: calls, operations, the per-call media queue, tones, keep-alive.

Works with its own dataclasses and enums (``model``); wire models stay in ``dtmfgraph.graph``.
The media is pluggable (``media.MediaBackend``); ``loopback.LoopbackMedia`` simulates a far end.
"""

from .calls import (
    ROLE_INITIATE,
    ROLE_MEDIA,
    CallService,
    DtmfRequest,
    Limits,
    NewCall,
    NullObserver,
    Observer,
    Principal,
    PromptRequest,
    RecordRequest,
    ServiceConfig,
    check_callback_uri,
)
from .errors import (
    AccessDeniedError,
    InvalidRequestError,
    NotAllowedError,
    NotFoundError,
    NotSupportedError,
    ServiceError,
    ServiceUnavailableError,
)
from .loopback import LoopbackCall, LoopbackIncoming, LoopbackMedia
from .media import MediaBackend, MediaCall
from .model import Call, CallState, DtmfMethod, Event, EventKind, Operation, OpKind, OpStatus
from .repository import Repository, UnitOfWork

__all__ = [
    "ROLE_INITIATE",
    "ROLE_MEDIA",
    "AccessDeniedError",
    "Call",
    "CallService",
    "CallState",
    "DtmfMethod",
    "DtmfRequest",
    "Event",
    "EventKind",
    "InvalidRequestError",
    "Limits",
    "LoopbackCall",
    "LoopbackIncoming",
    "LoopbackMedia",
    "MediaBackend",
    "MediaCall",
    "NewCall",
    "NotAllowedError",
    "NotFoundError",
    "NotSupportedError",
    "NullObserver",
    "Observer",
    "OpKind",
    "OpStatus",
    "Operation",
    "Principal",
    "PromptRequest",
    "RecordRequest",
    "Repository",
    "ServiceConfig",
    "ServiceError",
    "ServiceUnavailableError",
    "UnitOfWork",
    "check_callback_uri",
]
