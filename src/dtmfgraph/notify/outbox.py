"""The outbox dispatcher: POSTs stored notifications in order per call, at least once.

Each call's notifications go one at a time (the next only after the previous was delivered or
given up); different calls go concurrently. A failed or timed-out POST is retried with
exponential backoff; after ``max_attempts`` the row is kept as ``dead`` with its last error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal, Protocol

import httpx

from ..service.errors import StoreUnavailableError
from ..store import OutboxItem, SqlRepository
from .render import notification_batch
from .signer import CallbackSigner

log = logging.getLogger(__name__)

Outcome = Literal["delivered", "retried", "dead"]


class DeliveryObserver(Protocol):
    """Told about each delivery attempt (``dtmfgraph.api.metrics`` implements it)."""

    def attempt(self, outcome: Outcome, seconds: float) -> None:
        """One POST ended: delivered, failed and to be retried, or failed for good (dead);
        ``seconds`` is how long the POST took (to its answer, error or timeout)."""


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    """One POST of a notification, as a delivery tap sees it (a console's timeline)."""

    notification_id: int
    call_id: str
    app_id: str
    callback_uri: str
    body: str
    attempt: int
    """1 for the first POST of this notification."""
    status: int | None
    """The receiver's HTTP status (``None``: no answer: refused, timed out, TLS error)."""
    error: str | None
    seconds: float
    outcome: Outcome
    at: float
    """When the POST began (wall clock)."""


DeliveryTap = Callable[[DeliveryAttempt], None]


class Dispatcher:
    def __init__(
        self,
        repo: SqlRepository,
        signer: CallbackSigner,
        *,
        timeout_s: float = 5.0,
        max_attempts: int = 10,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 60.0,
        observer: DeliveryObserver | None = None,
        verify: ssl.SSLContext | bool = True,
        node: str = "",
    ) -> None:
        self._repo = repo
        self._node = node
        self._lease = 2.0 * timeout_s + 5.0  # a claim outlives its POST
        self._signer = signer
        self._timeout = timeout_s
        self._max_attempts = max_attempts
        self._b0 = backoff_initial_s
        self._bmax = backoff_max_s
        self._observer = observer
        self._wake = asyncio.Event()
        self._stopping = False
        self._client = httpx.AsyncClient(timeout=timeout_s, follow_redirects=False, verify=verify)
        self.tap: DeliveryTap | None = None
        """Told of every delivery attempt (cheap; its errors are logged and dropped)."""

    def wake(self) -> None:
        """Something was committed to the outbox: look now."""
        self._wake.set()

    def backoff(self, attempts: int) -> float:
        base = min(self._bmax, self._b0 * 2.0 ** max(attempts - 1, 0))
        return base * (1 + random.random() * 0.1)  # jitter, not crypto

    async def run(self) -> None:
        """Deliver what is due, forever; a failing database or receiver is logged and
        retried, never the end of the loop."""
        while not self._stopping:
            self._wake.clear()
            wait = 1.0
            try:
                items = await self._repo.due_notifications(
                    time.time(), node=self._node, lease_s=self._lease
                )
                if items:
                    await asyncio.gather(*(self._deliver(i) for i in items))
                    continue
                nxt = await self._repo.next_notification_at()
                if nxt is not None:
                    wait = min(max(nxt - time.time(), 0.005), 1.0)
            except StoreUnavailableError:
                pass  # logged once per outage by the store's health; retried
            except Exception:
                log.exception("outbox: a delivery round failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)

    async def stop(self, runner: asyncio.Task[None], seconds: float) -> int:
        """A graceful stop of :meth:`run` (running as ``runner``): let its round in flight
        finish, then deliver what is due now, round after round (a call's next notification is
        due once the one before is delivered), until nothing is due or ``seconds`` have passed;
        return how many POSTs this made. A failed POST is not waited for (its retry is left to
        the next start, or another node), and one cut off by the deadline keeps its claim until
        the lease ends: nothing is lost."""
        deadline = time.monotonic() + seconds
        self._stopping = True
        self._wake.set()
        posts = 0
        if seconds <= 0:
            runner.cancel()
            return posts
        try:
            await asyncio.wait_for(asyncio.shield(runner), seconds)
            while (left := deadline - time.monotonic()) > 0:
                claim = self._repo.due_notifications(
                    time.time(), node=self._node, lease_s=self._lease
                )
                items = await asyncio.wait_for(claim, left)
                if not items:
                    if posts:
                        log.info("outbox: %d notification(s) sent at stop", posts)
                    return posts
                posts += len(items)
                round_ = asyncio.gather(*(self._deliver(i) for i in items))
                await asyncio.wait_for(round_, deadline - time.monotonic())
        except TimeoutError:
            pass
        finally:
            runner.cancel()
        log.warning(
            "outbox: delivery at stop cut off after %g s; the rest goes out at the next start",
            seconds,
        )
        return posts

    async def _deliver(self, item: OutboxItem) -> None:
        body = json.dumps(notification_batch(item.event), separators=(",", ":"))
        token = self._signer.token(
            audience=item.app_id,
            call_id=item.call_id,
            tenant_id=item.event.call.get("tenantId"),
        )
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        error: str | None = None
        status: int | None = None
        began = time.time()
        started = time.perf_counter()
        try:
            resp = await self._client.post(item.callback_uri, content=body, headers=headers)
            status = resp.status_code
            if not 200 <= resp.status_code < 300:
                error = f"HTTP {resp.status_code}"
        except Exception as exc:  # any failure (InvalidURL too) is a failed attempt
            while isinstance(exc, ExceptionGroup) and exc.exceptions:
                exc = exc.exceptions[0]  # what anyio's task group wrapped
            error = f"{type(exc).__name__}: {exc}"
        took = time.perf_counter() - started
        attempt = DeliveryAttempt(
            item.id, item.call_id, item.app_id, item.callback_uri, body, item.attempts + 1,
            status, error, took, "delivered", began,
        )  # fmt: skip
        if error is None:
            await self._repo.mark_delivered(item.id)
            self._observe("delivered", took)
            self._tell(attempt)
            return
        attempts = item.attempts + 1
        retry_at = None if attempts >= self._max_attempts else time.time() + self.backoff(attempts)
        if retry_at is None:
            log.warning("outbox: giving up on notification %s: %s", item.id, error)
        await self._repo.mark_failed_attempt(item.id, error=error, retry_at=retry_at)
        self._observe("retried" if retry_at is not None else "dead", took)
        self._tell(replace(attempt, outcome="retried" if retry_at is not None else "dead"))

    def _tell(self, attempt: DeliveryAttempt) -> None:
        if self.tap is not None:
            try:
                self.tap(attempt)
            except Exception:
                log.exception("outbox: the delivery tap failed")

    def _observe(self, outcome: Outcome, seconds: float) -> None:
        if self._observer is not None:
            try:
                self._observer.attempt(outcome, seconds)
            except Exception:
                log.exception("outbox: the delivery observer failed")

    async def close(self) -> None:
        await self._client.aclose()
