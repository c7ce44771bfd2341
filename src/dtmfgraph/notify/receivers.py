"""Per-receiver delivery state (sans-I/O): who a callback goes to, its backoff, its slots.

A *receiver* is a callback origin (``scheme://host:port``): every call whose callbackUri
names it shares its backoff and its concurrency, and nothing else. A receiver that fails
backs off as a whole (one timer for all of its notifications, not one per row); the first
POST it answers again resets that timer, so its backlog goes out at once. Time comes in as
``now``; nothing here reads a clock or touches a socket.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlsplit

MAX_URIS = 256
"""Callback URIs remembered per receiver (to wake its backlog when it answers again)."""

_NAMESPACE = uuid.UUID("5b0e7c9e-4f0c-4d52-9a53-1f7c3c0b2d11")


def receiver_of(uri: str) -> str:
    """The receiver key of a callback URI: its origin, or the URI itself if it has none."""
    try:
        parts = urlsplit(uri)
        host = (parts.hostname or "").lower()
        port = parts.port
    except ValueError:
        return uri
    if not parts.scheme or not host:
        return uri
    return f"{parts.scheme.lower()}://{host}" + (f":{port}" if port is not None else "")


def delivery_id(call_id: str, row_id: int) -> str:
    """The notification's stable id (the same on every retry, every node and every restart):
    listed in the ``Notification-Id`` header of the POST that carries it (and the JWT ``jti``
    when tokens are not reused)."""
    return str(uuid.uuid5(_NAMESPACE, f"{call_id}/{row_id}"))


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retry by time: a notification is retried until ``retry_for_s`` after its window began
    (its creation, or its last redelivery), then kept as dead."""

    retry_for_s: float = 86_400.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 60.0

    def backoff(self, failures: int) -> float:
        base = min(self.backoff_max_s, self.backoff_initial_s * 2.0 ** max(failures - 1, 0))
        return base * (1 + random.random() * 0.1)  # jitter, not crypto

    def deadline(self, window_start: float) -> float:
        return window_start + self.retry_for_s


@dataclass(slots=True)
class Receiver:
    """One callback origin: its backoff and the notifications of it this node holds."""

    key: str
    failures: int = 0
    """Failed POSTs in a row (0: healthy)."""
    retry_at: float = 0.0
    """No POST before this (backing off)."""
    failed_at: float = 0.0
    last_error: str = ""
    in_flight: int = 0
    uris: set[str] = field(default_factory=set)

    def seen(self, uri: str) -> None:
        if len(self.uris) < MAX_URIS:
            self.uris.add(uri)

    def backing_off(self, now: float) -> bool:
        return self.retry_at > now

    def failed(self, began: float, now: float, error: str, policy: RetryPolicy) -> float:
        """A POST that began at ``began`` failed at ``now``: back off (once for POSTs that
        were in flight together) and return when to try again."""
        if self.failed_at <= began:  # not already counted by a POST in flight beside it
            self.failures += 1
            self.retry_at = now + policy.backoff(self.failures)
            self.failed_at = now
        self.last_error = error
        return max(self.retry_at, now)

    def answered(self) -> bool:
        """A POST got a 2xx: healthy again; True if it was failing (its backlog may be
        waiting for a timer that no longer applies)."""
        was = self.failures > 0
        self.failures, self.retry_at, self.last_error = 0, 0.0, ""
        return was


__all__ = ["MAX_URIS", "Receiver", "RetryPolicy", "delivery_id", "receiver_of"]
