"""Domain errors; the API maps each to a Graph error code and HTTP status."""

from __future__ import annotations


class ServiceError(Exception):
    """Base of the service errors."""


class NotFoundError(ServiceError):
    """Unknown call or operation, or one that belongs to another tenant/app (never revealed)."""


class InvalidRequestError(ServiceError):
    """The request is well-formed JSON but asks for something invalid."""


class NotAllowedError(ServiceError):
    """The call's state does not allow the action (e.g. answer on an outgoing call)."""


class NotSupportedError(ServiceError):
    """The action is valid but not possible on this call (e.g. rfc4733 not negotiated)."""


class AccessDeniedError(ServiceError):
    """The caller lacks the role the action requires."""


class ServiceUnavailableError(ServiceError):
    """A resource the request needs is exhausted or down for now (RTP ports, the store, the calls
    limit): the API answers 503 ``serviceNotAvailable`` with ``Retry-After`` (SDK retries)."""

    def __init__(self, message: str, *, retry_after_s: int = 5) -> None:
        super().__init__(message)
        self.retry_after_s = max(1, int(retry_after_s))


class StoreUnavailableError(ServiceUnavailableError):
    """The store (SQLite file, PostgreSQL server) cannot be read or written right now: read-only,
    full, stopped, unreachable. Transient by nature: what needs it is retried or answered 503."""

    def __init__(
        self, message: str = "the store is unavailable", *, retry_after_s: int = 2
    ) -> None:
        super().__init__(message, retry_after_s=retry_after_s)
