"""The outbox dispatcher: POSTs stored notifications in order per call, at least once.

Each call's notifications go one at a time (the next only after the previous was delivered);
different calls go concurrently, and each receiver (callback origin) on its own: a bounded
number of POSTs in flight per receiver and in total, each POST bounded by ``timeout_s`` from
start to answer. A receiver that hangs or fails uses its own slots and backs off on its own;
nobody else waits for it (no delivery "rounds"). A failed POST is retried, with the
receiver's exponential backoff, until ``retry_for_s`` after the notification was written (or
redelivered); then the row is kept as ``dead``, with the call's later rows held behind it, so
nothing of a call goes out after a notification of it that was not delivered. The first 2xx
from a receiver makes its whole backlog due at once. Every notification has a stable id
(:func:`~.receivers.delivery_id`), sent on each retry as ``Notification-Id`` and the JWT ``jti``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import ssl
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

import httpx

from ..service.errors import StoreUnavailableError
from ..store import OutboxItem, SqlRepository
from .coalesce import Coalescer
from .receivers import Receiver, RetryPolicy, delivery_id, receiver_of
from .render import notification_batch
from .signer import CallbackSigner
from .tokens import TokenCache

log = logging.getLogger(__name__)

Outcome = Literal["delivered", "retried", "dead"]
ID_HEADER = "Notification-Id"
"""The header carrying a notification's stable id (also the JWT ``jti``)."""
BATCH = 100
"""Rows claimed per database query."""
MAX_RECEIVERS = 10_000
"""Receivers remembered while idle and failing (idle healthy ones are forgotten at once)."""
TOKEN_REUSE_S = 300.0
"""How long one callback token is reused for a call's notifications to one app (0: a token
per notification); see :mod:`.tokens`."""


class DeliveryObserver(Protocol):
    """Told about each delivery attempt (``dtmfgraph.api.metrics`` implements it)."""

    def attempt(self, outcome: Outcome, seconds: float | None) -> None:
        """One POST ended: delivered, failed and to be retried, or failed for good (dead);
        ``seconds`` is how long the POST took (to its answer, error or timeout), ``None`` for a
        notification whose window closed while it waited for its receiver (dead, no POST)."""


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
    delivery_id: str = ""
    """The notification's stable id (``Notification-Id``, JWT ``jti``)."""


DeliveryTap = Callable[[DeliveryAttempt], None]


class Dispatcher:
    def __init__(
        self,
        repo: SqlRepository,
        signer: CallbackSigner,
        *,
        timeout_s: float = 5.0,
        retry_for_s: float = 86_400.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 60.0,
        per_receiver: int = 8,
        concurrency: int = 100,
        observer: DeliveryObserver | None = None,
        verify: ssl.SSLContext | bool = True,
        node: str = "",
        token_reuse_s: float = TOKEN_REUSE_S,
    ) -> None:
        self._repo = repo
        self._node = node
        self._lease = 2.0 * timeout_s + 5.0  # a claim outlives its POST
        self._signer = signer
        self.tokens = TokenCache(signer, token_reuse_s)
        """The callback tokens, each reused for a while (see :mod:`.tokens`)."""
        self.marks = Coalescer(repo.mark_delivered_many, BATCH)
        """The "delivered" marks, several per transaction."""
        self._timeout = timeout_s
        self.policy = RetryPolicy(retry_for_s, backoff_initial_s, backoff_max_s)
        self._per_receiver = max(1, per_receiver)
        self._slots = asyncio.Semaphore(max(1, concurrency))
        self._observer = observer
        self._wake = asyncio.Event()
        self._receivers: dict[str, Receiver] = {}
        self._queues: dict[str, collections.deque[OutboxItem]] = {}
        self._retry_next = float("inf")
        """The earliest time a row this node gave back (failed, postponed) is due again."""
        self._held: dict[int, float] = {}
        """Rows this node holds (queued or in flight) and when it last claimed each."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._posts = 0
        self._closed = False
        self._stopping = False
        self._deadlines: set[asyncio.Timeout] = set()
        """The POSTs in flight (their deadlines: close() brings them forward to now)."""
        # a POST's connection is kept for the next one (to its receiver) as long as the POSTs in
        # flight may need, not closed past 20 and opened again
        slots = max(1, concurrency)
        limits = httpx.Limits(max_connections=slots, max_keepalive_connections=slots)
        self._client = httpx.AsyncClient(
            timeout=timeout_s, follow_redirects=False, verify=verify, limits=limits
        )
        self.tap: DeliveryTap | None = None
        """Told of every delivery attempt (cheap; its errors are logged and dropped)."""

    def wake(self) -> None:
        """Something was committed to the outbox: look now."""
        self._wake.set()

    @property
    def held(self) -> int:
        """Notifications this node holds now (queued for their receiver or in flight)."""
        return len(self._held)

    async def run(self) -> None:
        """Claim what is due and hand it to its receiver, forever; a failing database or
        receiver is logged and retried, never the end of the loop (only :meth:`stop` ends it).
        Never waits for a POST."""
        while not self._stopping:
            self._wake.clear()
            wait = 1.0
            try:
                wait = await self._feed()
            except StoreUnavailableError:
                pass  # logged once per outage by the store's health; retried
            except Exception:
                log.exception("outbox: reading the outbox failed; retrying")
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=wait)

    async def _feed(self) -> float:
        """Claim the due rows, queue those not held yet; return how long to wait."""
        now = time.time()
        if self._retry_next <= now:  # this claim takes what was due by now
            self._retry_next = float("inf")
        items = await self._repo.due_notifications(now, BATCH, node=self._node, lease_s=self._lease)
        fresh = 0
        for item in items:
            if item.id in self._held:  # its claim lapsed while queued here: renewed now
                self._held[item.id] = now
                continue
            fresh += 1
            self._enqueue(item, now)
        if fresh and len(items) >= BATCH:
            return 0.0  # more may be due
        if fresh:
            # what comes next is woken (each delivery, each commit) or set here (a retry):
            # no query for it while notifications flow
            return min(max(self._retry_next - time.time(), 0.005), 1.0)
        self._retry_next = float("inf")
        nxt = await self._repo.next_notification_at()
        return 1.0 if nxt is None else min(max(nxt - time.time(), 0.005), 1.0)

    def _enqueue(self, item: OutboxItem, now: float) -> None:
        key = receiver_of(item.callback_uri)
        receiver = self._receivers.get(key)
        if receiver is None:
            receiver = self._receivers[key] = Receiver(key)
            self._queues[key] = collections.deque()
        receiver.seen(item.callback_uri)
        self._held[item.id] = now
        self._queues[key].append(item)
        self._pump(receiver)

    def _pump(self, receiver: Receiver) -> None:
        """Start what the receiver may take now; while it backs off, give its queue back."""
        queue = self._queues.get(receiver.key)
        if self._closed or queue is None or self._receivers.get(receiver.key) is not receiver:
            return
        if queue and receiver.backing_off(time.time()):
            items = list(queue)
            queue.clear()
            self._spawn(self._postpone(receiver, items))
            return
        while queue and receiver.in_flight < self._per_receiver:
            receiver.in_flight += 1
            self._spawn(self._attempt(receiver, queue.popleft()))
        idle = not queue and not receiver.in_flight
        if idle and (not receiver.failures or len(self._receivers) > MAX_RECEIVERS):
            del (
                self._receivers[receiver.key],
                self._queues[receiver.key],
            )  # keep what failing taught

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _postpone(self, receiver: Receiver, items: list[OutboxItem]) -> None:
        now = time.time()
        expired = [i for i in items if now >= self._deadline(i)]
        later = [i.id for i in items if now < self._deadline(i)]
        try:
            if expired:
                error = f"receiver {receiver.key} kept failing: {receiver.last_error}"
                await self._repo.give_up([i.id for i in expired], error)
                for item in expired:
                    self._log_dead(item, error)
                    self._observe("dead", None)
            await self._repo.postpone(later, receiver.retry_at, node=self._node)
            if later:
                self._retry_at(receiver.retry_at)
        except Exception:
            log.exception("outbox: giving notifications back failed (their claims lapse)")
        finally:
            for item in items:
                self._held.pop(item.id, None)

    def _retry_at(self, when: float) -> None:
        """A row this node gave back is due again at ``when``: look then at the latest."""
        if when < self._retry_next:
            self._retry_next = when
            self.wake()  # the loop's wait is computed again (it finds nothing due before)

    def _deadline(self, item: OutboxItem) -> float:
        start = item.retry_from if item.retry_from is not None else item.created_at
        return self.policy.deadline(start)

    async def _attempt(self, receiver: Receiver, item: OutboxItem) -> None:
        try:
            async with self._slots:
                if self._closed:
                    return  # the claim is released at the next start (or lapses)
                if receiver.backing_off(time.time()):  # it failed while this one waited
                    await self._postpone(receiver, [item])
                    return
                if not await self._still_mine(item):
                    return
                await self._deliver(receiver, item)
        except StoreUnavailableError:
            pass  # logged once per outage; the row keeps its claim until the lease ends
        except Exception:
            log.exception("outbox: delivering notification %s failed; retrying", item.id)
        finally:
            receiver.in_flight -= 1
            self._held.pop(item.id, None)
            self._pump(receiver)

    async def _still_mine(self, item: OutboxItem) -> bool:
        """Renew an old claim before its POST; False if another node took the row."""
        claimed = self._held.get(item.id)
        if claimed is None:
            return False
        now = time.time()
        if now - claimed < self._lease / 2:
            return True
        self._held[item.id] = now
        return await self._repo.renew_claim(item.id, self._node, now + self._lease)

    async def _deliver(self, receiver: Receiver, item: OutboxItem) -> None:
        did = delivery_id(item.call_id, item.id)
        body, error, status = "", None, None
        began = time.time()
        started = time.perf_counter()
        self._posts += 1
        try:
            body = json.dumps(notification_batch(item.event), separators=(",", ":"))
            token = self.tokens.token(
                audience=item.app_id,
                call_id=item.call_id,
                tenant_id=item.event.call.get("tenantId"),
                jti=did,
            )
            headers = {
                "Content-Type": "application/json",
                "Authorization": f"Bearer {token}",
                ID_HEADER: did,
            }
            async with asyncio.timeout(self._timeout) as cutoff:  # the whole POST
                self._deadlines.add(cutoff)
                try:
                    resp = await self._client.post(item.callback_uri, content=body, headers=headers)
                finally:
                    self._deadlines.discard(cutoff)
            status = resp.status_code
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except TimeoutError:
            error = "cut off by a stop" if self._closed else f"no answer within {self._timeout:g} s"
        except Exception as exc:  # any failure is a failed attempt (bad URL, TLS, ...)
            while isinstance(exc, ExceptionGroup) and exc.exceptions:
                exc = exc.exceptions[0]  # what anyio's task group wrapped
            error = f"{type(exc).__name__}: {exc}".rstrip(": ")
        took = time.perf_counter() - started
        attempt = DeliveryAttempt(
            item.id, item.call_id, item.app_id, item.callback_uri, body, item.attempts + 1,
            status, error, took, "delivered", began, did,
        )  # fmt: skip
        if error is None:
            await self._delivered(receiver, item)
            self._observe("delivered", took)
            self._tell(attempt)
            return
        now = time.time()
        backoff_until = receiver.failed(began, now, error, self.policy)
        deadline = self._deadline(item)
        retry_at = None if now >= deadline else min(backoff_until, deadline)
        await self._repo.mark_failed_attempt(item.id, error=error, retry_at=retry_at)
        if retry_at is not None:
            self._retry_at(retry_at)
        if retry_at is None:
            self._log_dead(item, error)
        outcome: Outcome = "retried" if retry_at is not None else "dead"
        self._observe(outcome, took)
        self._tell(replace(attempt, outcome=outcome))

    async def _delivered(self, receiver: Receiver, item: OutboxItem) -> None:
        await self.marks.submit(item.id)
        if receiver.answered() or item.attempts > 0:  # it is back: its backlog is due now
            uris = sorted(receiver.uris | {item.callback_uri})
            n = await self._repo.retry_now(uris, time.time())
            if n:
                log.info("outbox: %s answers again; %d notification(s) due now", receiver.key, n)
        self.wake()  # the call's next notification, and those just made due

    def _log_dead(self, item: OutboxItem, error: str) -> None:
        log.warning(
            "outbox: notification %s of call %s to %s is dead (not delivered within %g s: "
            "%s); the call's later notifications wait behind it; send them again with "
            "`dtmfgraph notifications redeliver %s`",
            item.id, item.call_id, item.callback_uri, self.policy.retry_for_s, error, item.id,
        )  # fmt: skip

    async def stop(self, runner: asyncio.Task[None], seconds: float) -> int:
        """A graceful stop of :meth:`run` (running as ``runner``): keep delivering what is due
        (a call's next notification is due once the one before is delivered) until nothing
        is due or held here, or ``seconds`` have passed; return how many POSTs this made. A
        failed POST is not waited for (its retry is left to the next start, or another node),
        and one cut off by the deadline keeps its claim until the lease ends: nothing is lost."""
        deadline = time.monotonic() + seconds
        posts = self._posts
        done = seconds <= 0
        try:
            while not done and time.monotonic() < deadline:
                if not self._held:
                    nxt = await self._repo.next_notification_at()
                    if nxt is None or nxt > time.time():
                        done = True
                        break
                    self.wake()
                await asyncio.sleep(min(0.02, max(deadline - time.monotonic(), 0)))
        finally:
            await self._end(runner)  # the POSTs in flight are ended by close()
        if seconds > 0 and not done:
            log.warning(
                "outbox: delivery at stop cut off after %g s; the rest goes out at the next start",
                seconds,
            )
        elif self._posts > posts:
            log.info("outbox: %d notification(s) sent at stop", self._posts - posts)
        return self._posts - posts

    async def _end(self, runner: asyncio.Task[None]) -> None:
        """End the claiming loop between two reads (a task cancelled inside a database
        transaction can leave SQLite locked); cancel it only if it does not end soon."""
        self._stopping = True
        self._wake.set()
        await asyncio.wait({runner}, timeout=0.5)
        runner.cancel()

    def _tell(self, attempt: DeliveryAttempt) -> None:
        if self.tap is not None:
            try:
                self.tap(attempt)
            except Exception:
                log.exception("outbox: the delivery tap failed")

    def _observe(self, outcome: Outcome, seconds: float | None) -> None:
        if self._observer is not None:
            try:
                self._observer.attempt(outcome, seconds)
            except Exception:
                log.exception("outbox: the delivery observer failed")

    async def close(self, seconds: float = 5.0) -> None:
        """End the POSTs in flight (each a failed attempt, retried at the next start or by
        another node), let their outcome be written (for up to ``seconds``), and release the
        HTTP client. Tasks are not cancelled inside a database transaction unless that hangs."""
        self._closed = True
        now = asyncio.get_running_loop().time()
        for deadline in list(self._deadlines):
            deadline.reschedule(now)
        tasks = list(self._tasks)
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=seconds)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=1.0)
        await self.marks.close(1.0)
        await self._client.aclose()
