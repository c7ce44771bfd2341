"""The outbox dispatcher: POSTs stored notifications in order per call, at least once.

Each call's notifications go one POST at a time (the next only after the previous was
delivered); what a call queued meanwhile goes together in the next POST, as the ``value``
array of one ``commsNotifications`` body, in order (up to ``batch_max`` notifications and
:data:`MAX_BATCH_BYTES`; real Graph batches the same way). Different calls go concurrently,
and each receiver (callback origin) on its own: a bounded number of POSTs in flight per
receiver and in total, each POST bounded by ``timeout_s`` from start to answer. A receiver
that hangs or fails uses its own slots and backs off on its own; nobody else waits for it (no
delivery "rounds"). A failed POST is retried whole, in order (perhaps with what the call
queued since), with the receiver's exponential backoff, until ``retry_for_s`` after its oldest
notification was written (or redelivered); then its rows are kept as ``dead``, with the call's
later rows held behind them, so nothing of a call goes out after a notification of it that
was not delivered. The first 2xx from a receiver makes its whole backlog due at once. Every
notification has a stable id (:func:`~.receivers.delivery_id`); a POST carries the ids of its
notifications, in ``value`` order, comma-separated, as ``Notification-Id``.

The claiming loop is woken by this process's commits and deliveries and by its own retry
timers; it reads the store on its own only when the next known due time comes (a retry, a
dead node's claim lapsing) or every ``poll_s`` (work another process left: a redelivery from
the CLI, rows of a node that died before claiming them).
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
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import httpx

from ..service.errors import StoreUnavailableError
from ..store import OutboxItem, SqlRepository
from .coalesce import Coalescer
from .receivers import Receiver, RetryPolicy, delivery_id, receiver_of
from .render import BODY_HEAD, BODY_TAIL, notification_json, notifications_body
from .signer import CallbackSigner
from .tokens import TokenCache

log = logging.getLogger(__name__)

Outcome = Literal["delivered", "retried", "dead"]
ID_HEADER = "Notification-Id"
"""The header listing the stable ids of a POST's notifications, in ``value`` order (", ")."""
BATCH = 100
"""Calls whose notifications are claimed per database query."""
BATCH_MAX = 50
"""Notifications of one call in one POST, by default (``notify_batch_max``)."""
MAX_BATCH_BYTES = 128 * 1024
"""A POST's body is at most this long, unless one notification alone is longer (it goes
alone); a call's batch past it goes in several POSTs, one after the other."""
POLL_S = 10.0
"""How often an idle dispatcher reads the store for work no wake-up announces
(``notify_poll_s``)."""
MAX_RECEIVERS = 10_000
"""Receivers remembered while idle and failing (idle healthy ones are forgotten at once)."""
TOKEN_REUSE_S = 300.0
"""How long one callback token is reused for a call's notifications to one app (0: a token
per notification); see :mod:`.tokens`."""


class DeliveryObserver(Protocol):
    """Told about each delivery attempt (``dtmfgraph.api.metrics`` implements it)."""

    def attempt(self, outcome: Outcome, seconds: float | None, notifications: int = 1) -> None:
        """One POST of ``notifications`` notifications ended: delivered, failed and to be
        retried, or failed for good (dead); ``seconds`` is how long the POST took (to its
        answer, error or timeout), ``None`` for notifications whose window closed while they
        waited for their receiver (dead, no POST)."""


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    """One notification's part in a POST, as a delivery tap sees it (a console's timeline):
    a POST of several notifications is told once for each."""

    notification_id: int
    call_id: str
    app_id: str
    callback_uri: str
    body: str
    """The notification as a one-item ``commsNotifications`` body (the POST's body when it
    went alone; see ``batch``)."""
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
    """The notification's stable id (in ``Notification-Id``)."""
    batch: int = 1
    """How many notifications the POST carried."""
    index: int = 0
    """This one's place in the POST's ``value`` (0: first)."""


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
        batch_max: int = BATCH_MAX,
        poll_s: float = POLL_S,
    ) -> None:
        self._repo = repo
        self._node = node
        self._lease = 2.0 * timeout_s + 5.0  # a claim outlives its POST
        self._signer = signer
        self.tokens = TokenCache(signer, token_reuse_s)
        """The callback tokens, each reused for a while (see :mod:`.tokens`)."""
        # a token per notification (no reuse): its jti is the notification's id, so one a POST
        self._batch_max = max(1, batch_max) if token_reuse_s > 0 else 1
        self._poll = max(0.01, poll_s)
        self.marks = Coalescer(repo.mark_delivered_many, 1000)
        """The "delivered" marks, several POSTs' per transaction."""
        self._timeout = timeout_s
        self.policy = RetryPolicy(retry_for_s, backoff_initial_s, backoff_max_s)
        self._per_receiver = max(1, per_receiver)
        self._slots = asyncio.Semaphore(max(1, concurrency))
        self._observer = observer
        self._wake = asyncio.Event()
        self._receivers: dict[str, Receiver] = {}
        self._queues: dict[str, collections.deque[list[OutboxItem]]] = {}
        """Per receiver: the batches (a call's rows, in order) waiting for a slot."""
        self._retry_next = float("inf")
        """The earliest time a row this node gave back (failed, postponed) is due again."""
        self._held: dict[int, float] = {}
        """Rows this node holds (queued or in flight) and when it last claimed each."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._posts = 0
        self.reads = 0
        """Reads of the outbox by the claiming loop (for tests and the bench)."""
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
        Never waits for a POST. Idle, it sleeps until woken, the next known due time or
        ``poll_s``."""
        while not self._stopping:
            self._wake.clear()
            wait = min(1.0, self._poll)  # after a failure: soon
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
        self.reads += 1
        items = await self._repo.due_notifications(
            now, BATCH, node=self._node, lease_s=self._lease, per_call=self._batch_max
        )
        calls = 0
        fresh = 0
        release: list[int] = []
        for batch in _by_call(items):
            calls += 1
            if batch[0].id in self._held:  # its claim lapsed while queued here: renewed now
                for item in batch:
                    if item.id in self._held:
                        self._held[item.id] = now
                    else:  # queued behind it since: it goes in a later batch
                        release.append(item.id)
                continue
            fresh += 1
            self._enqueue(batch, now)
        if release:
            await self._repo.postpone(release, now, node=self._node)
        if fresh and calls >= BATCH:
            return 0.0  # more may be due
        if fresh:
            # what comes next is woken (each delivery, each commit) or set here (a retry):
            # no query for it while notifications flow
            return min(max(self._retry_next - time.time(), 0.005), self._poll)
        self._retry_next = float("inf")
        self.reads += 1
        nxt = await self._repo.next_notification_at()
        return self._poll if nxt is None else min(max(nxt - time.time(), 0.005), self._poll)

    def _enqueue(self, batch: list[OutboxItem], now: float) -> None:
        head = batch[0]
        key = receiver_of(head.callback_uri)
        receiver = self._receivers.get(key)
        if receiver is None:
            receiver = self._receivers[key] = Receiver(key)
            self._queues[key] = collections.deque()
        receiver.seen(head.callback_uri)
        for item in batch:
            self._held[item.id] = now
        self._queues[key].append(batch)
        self._pump(receiver)

    def _pump(self, receiver: Receiver) -> None:
        """Start what the receiver may take now; while it backs off, give its queue back."""
        queue = self._queues.get(receiver.key)
        if self._closed or queue is None or self._receivers.get(receiver.key) is not receiver:
            return
        if queue and receiver.backing_off(time.time()):
            items = [item for batch in queue for item in batch]
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
                self._observe("dead", None, len(expired))
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

    async def _attempt(self, receiver: Receiver, batch: list[OutboxItem]) -> None:
        try:
            async with self._slots:
                if self._closed:
                    return  # the claims are released at the next start (or lapse)
                if receiver.backing_off(time.time()):  # it failed while this one waited
                    await self._postpone(receiver, batch)
                    return
                if not await self._still_mine(batch):
                    return
                await self._deliver(receiver, batch)
        except StoreUnavailableError:
            pass  # logged once per outage; the rows keep their claim until the lease ends
        except Exception:
            log.exception("outbox: delivering notification %s failed; retrying", batch[0].id)
        finally:
            receiver.in_flight -= 1
            for item in batch:
                self._held.pop(item.id, None)
            self._pump(receiver)

    async def _still_mine(self, batch: list[OutboxItem]) -> bool:
        """Renew an old claim before its POST; False if another node took the rows."""
        claimed = self._held.get(batch[0].id)
        if claimed is None:
            return False
        now = time.time()
        if now - claimed < self._lease / 2:
            return True
        ids = [item.id for item in batch]
        for i in ids:
            self._held[i] = now
        return await self._repo.renew_claims(ids, self._node, now + self._lease) == len(ids)

    async def _deliver(self, receiver: Receiver, batch: list[OutboxItem]) -> None:
        """POST the batch, in as many POSTs as its size needs, one after the other; after a
        failed one, the rest are given back untried, due with its retry."""
        parts = [json.dumps(notification_json(item.event), separators=(",", ":")) for item in batch]
        start = 0
        for end in _chunks(parts, MAX_BATCH_BYTES):
            retry_at = await self._post(receiver, batch[start:end], parts[start:end])
            if retry_at is not None:
                rest = [item.id for item in batch[end:]]
                if rest and retry_at > 0:
                    await self._repo.postpone(rest, retry_at, node=self._node)
                return
            start = end

    async def _post(
        self, receiver: Receiver, items: list[OutboxItem], parts: list[str]
    ) -> float | None:
        """One POST of a call's notifications; ``None`` if delivered, else when they are due
        again (0: dead)."""
        head = items[0]
        dids = [delivery_id(item.call_id, item.id) for item in items]
        body, error, status = notifications_body(parts), None, None
        began = time.time()
        started = time.perf_counter()
        self._posts += 1
        try:
            token = self.tokens.token(
                audience=head.app_id,
                call_id=head.call_id,
                tenant_id=head.event.call.get("tenantId"),
                jti=dids[0],
            )
            headers = {
                "Content-Type": "application/json",
                "Authorization": f"Bearer {token}",
                ID_HEADER: ", ".join(dids),
            }
            async with asyncio.timeout(self._timeout) as cutoff:  # the whole POST
                self._deadlines.add(cutoff)
                try:
                    resp = await self._client.post(head.callback_uri, content=body, headers=headers)
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
        if error is None:
            await self._delivered(receiver, items)
            self._observe("delivered", took, len(items))
            self._tell(items, parts, dids, status, None, took, "delivered", began)
            return None
        now = time.time()
        backoff_until = receiver.failed(began, now, error, self.policy)
        deadline = min(self._deadline(item) for item in items)
        retry_at = None if now >= deadline else min(backoff_until, deadline)
        ids = [item.id for item in items]
        await self._repo.mark_failed_many(ids, error=error, retry_at=retry_at)
        if retry_at is not None:
            self._retry_at(retry_at)
        else:
            self._log_dead(head, error)
        outcome: Outcome = "retried" if retry_at is not None else "dead"
        self._observe(outcome, took, len(items))
        self._tell(items, parts, dids, status, error, took, outcome, began)
        return 0.0 if retry_at is None else retry_at

    async def _delivered(self, receiver: Receiver, items: list[OutboxItem]) -> None:
        await self.marks.submit_many([item.id for item in items])
        if receiver.answered() or any(item.attempts > 0 for item in items):
            # it is back: its backlog is due now
            uris = sorted(receiver.uris | {items[0].callback_uri})
            n = await self._repo.retry_now(uris, time.time())
            if n:
                log.info("outbox: %s answers again; %d notification(s) due now", receiver.key, n)
        self.wake()  # the call's next notifications, and those just made due

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

    def _tell(
        self,
        items: list[OutboxItem],
        parts: list[str],
        dids: list[str],
        status: int | None,
        error: str | None,
        took: float,
        outcome: Outcome,
        began: float,
    ) -> None:
        if self.tap is None:
            return
        for index, (item, part, did) in enumerate(zip(items, parts, dids, strict=True)):
            attempt = DeliveryAttempt(
                item.id, item.call_id, item.app_id, item.callback_uri,
                notifications_body([part]), item.attempts + 1, status, error, took, outcome,
                began, did, len(items), index,
            )  # fmt: skip
            try:
                self.tap(attempt)
            except Exception:
                log.exception("outbox: the delivery tap failed")

    def _observe(self, outcome: Outcome, seconds: float | None, notifications: int) -> None:
        if self._observer is not None:
            try:
                self._observer.attempt(outcome, seconds, notifications)
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


def _by_call(items: list[OutboxItem]) -> list[list[OutboxItem]]:
    """Claimed rows (call by call, each call's in order) as one batch per call."""
    out: list[list[OutboxItem]] = []
    for item in items:
        if out and out[-1][0].call_id == item.call_id:
            out[-1].append(item)
        else:
            out.append([item])
    return out


def _chunks(parts: list[str], max_bytes: int) -> list[int]:
    """Where each POST of these notification texts (compact ASCII JSON) ends (exclusive
    indexes): as many as fit in a body of ``max_bytes``, at least one each, in order."""
    ends: list[int] = []
    frame = len(BODY_HEAD) + len(BODY_TAIL)
    size = count = 0
    for i, part in enumerate(parts):
        if count and frame + size + 1 + len(part) > max_bytes:
            ends.append(i)
            size = count = 0
        size += len(part) + (1 if count else 0)
        count += 1
    ends.append(len(parts))
    return ends
