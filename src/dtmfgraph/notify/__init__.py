"""Notifications: rendering to Graph JSON, signing, and the outbox dispatcher."""

from .outbox import DeliveryObserver, Dispatcher
from .render import (
    call_json,
    call_resource,
    notification_batch,
    operation_json,
    operation_resource,
)
from .signer import CallbackSigner

__all__ = [
    "CallbackSigner",
    "DeliveryObserver",
    "Dispatcher",
    "call_json",
    "call_resource",
    "notification_batch",
    "operation_json",
    "operation_resource",
]
