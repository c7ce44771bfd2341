"""The calls a node carries live in its memory; their changes reach the store in order, retried.

Each change of a call the node carries (a state transition, an operation's end, the
notification it causes) is made on a :class:`CallRecord` through a :class:`LiveUnit`, which
reads the record and writes down what the store must get as one :class:`Batch`. The
:class:`WriteBehind` writes a call's batches in the order they were made: at once while the
store answers (so a change is in the store before the request that made it is answered, as
without it); while the store is away (read-only, full, stopped), the batches wait in memory
and are retried with exponential backoff, and land in order when it is back. A change is never
dropped because a write failed, and no worker of the call waits for the store.

Group commit: the batches submitted while a transaction is being written (by any calls) go
together in the next one, in the order they were submitted (so each call's stay in order), up
to :data:`GROUP_MAX` per transaction. Nobody waits for a group to fill: an idle store takes a
change at once, a busy one takes every change that queued meanwhile in one transaction (and
one commit) instead of one each. Each submitter still returns only once its change committed.
If the store refuses one change of a group (a statement error, not the store being away), the
group is written again one change per transaction, so only that change fails. A store that
takes several writers at once (PostgreSQL: ``repo.writers``) gets that many groups in flight,
no call in two of them (a call's later changes wait for the group holding its earlier one);
SQLite takes one writer, so one group.

Bounded: what a call can make while the store is away is bounded by what it has (requests that
would add work answer 503 meanwhile, see ``CallService``); only ``tone`` notifications, which
the far end can send without end, are dropped past :attr:`WriteBehind.max_droppable` waiting
for one call (counted in :attr:`WriteBehind.dropped`; the call's state still lands).
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

from .errors import StoreUnavailableError
from .model import Call, Event, Operation
from .outage import StoreHealth
from .recordings import Recording
from .repository import Repository, UnitOfWork

log = logging.getLogger(__name__)

GROUP_MAX = 256
"""Most batches written in one transaction (the rest go in the next)."""

Step = Callable[[UnitOfWork], Awaitable[None]]


@dataclass(slots=True)
class CallRecord:
    """A call this node carries (or carried, while its last changes wait for the store), and
    every operation of it, in the order they were made."""

    call: Call
    ops: dict[str, Operation] = field(default_factory=dict)
    live: bool = True
    """The node still carries the call (when not, the record goes once its writes landed)."""


@dataclass(slots=True)
class Batch:
    """One transaction of one call: its steps and what to do once it committed."""

    call_id: str
    steps: list[Step]
    after: Callable[[], None]
    droppable: bool = False


_Submitted = tuple[Batch, CallRecord, "asyncio.Future[None]"]
"""A batch submitted for the next group, and what its submitter awaits."""


class LiveUnit:
    """A :class:`~dtmfgraph.service.repository.UnitOfWork` on a :class:`CallRecord`: reads
    come from memory, writes are staged, then applied to the record by :meth:`commit` and
    recorded as :attr:`steps` for the store. Hands out copies, so a change made and then
    abandoned (the body raised) leaves the record as it was; a unit made with
    ``copies=False`` only reads, and hands out the record's own objects (never changed in
    place: a commit replaces them), which saves the copying on the read path."""

    def __init__(self, record: CallRecord, *, copies: bool = True) -> None:
        self._rec = record
        self._copy: Callable[[Any], Any] = copy.deepcopy if copies else _same
        self._call: Call | None = None
        self._ops: dict[str, Operation] = {}
        self.steps: list[Step] = []

    def commit(self) -> None:
        if self._call is not None:
            self._rec.call = self._call
        self._rec.ops.update(self._ops)

    # -- reads -----------------------------------------------------------------------------------
    async def get_call(self, call_id: str) -> Call | None:
        if call_id != self._rec.call.id:
            return None
        return self._copy(self._call or self._rec.call)  # type: ignore[no-any-return]

    def _op(self, op_id: str) -> Operation | None:
        return self._ops.get(op_id) or self._rec.ops.get(op_id)

    async def get_operation(self, call_id: str, op_id: str) -> Operation | None:
        op = self._op(op_id) if call_id == self._rec.call.id else None
        return self._copy(op)  # type: ignore[no-any-return]

    async def list_operations(self, call_id: str) -> list[Operation]:
        if call_id != self._rec.call.id:
            return []
        ids = list(self._rec.ops) + [i for i in self._ops if i not in self._rec.ops]
        return [self._copy(op) for i in ids if (op := self._op(i)) is not None]

    async def find_repeat(self, call_id: str, repeat_key: str) -> Operation | None:
        for op in await self.list_operations(call_id):
            if op.repeat_key == repeat_key:
                return op
        return None

    # -- writes ----------------------------------------------------------------------------------
    async def insert_call(self, call: Call) -> None:
        self._call = c = copy.deepcopy(call)
        # the store's save_call takes a retry after a commit that did land (it updates)
        self.steps.append(lambda uow: uow.save_call(c))

    async def save_call(self, call: Call) -> None:
        await self.insert_call(call)

    async def update_call(self, call: Call) -> None:
        self._call = c = copy.deepcopy(call)
        self.steps.append(lambda uow: uow.update_call(c))

    async def insert_operation(self, op: Operation) -> None:
        self._ops[op.id] = o = copy.deepcopy(op)
        # the store's insert_operation takes a retry after a commit that did land (it updates)
        self.steps.append(lambda uow: uow.insert_operation(o))

    async def update_operation(self, op: Operation) -> None:
        self._ops[op.id] = o = copy.deepcopy(op)
        self.steps.append(lambda uow: uow.update_operation(o))

    async def add_event(self, event: Event, *, callback_uri: str, app_id: str) -> None:
        self.steps.append(
            lambda uow: uow.add_event(event, callback_uri=callback_uri, app_id=app_id)
        )

    async def insert_recording(self, rec: Recording) -> None:
        async def step(uow: UnitOfWork) -> None:
            if await uow.get_recording(rec.op_id) is None:
                await uow.insert_recording(rec)

        self.steps.append(step)

    async def get_recording(self, op_id: str) -> Recording | None:
        raise _not_here("recordings")

    # -- what is not one call's: never asked of a call's unit ------------------------------------
    async def delete_expired_recordings(self, now: float) -> int:
        raise _not_here("recordings")

    async def unfinished_calls(self) -> list[Call]:
        raise _not_here("calls")

    async def node_alive(self, node_id: str, now: float, *, started: bool = False) -> None:
        raise _not_here("nodes")

    async def orphaned_calls(self, me: str, dead_before: float, *, own: bool) -> list[Call]:
        raise _not_here("calls")

    async def release_claims(self, me: str, dead_before: float, *, own: bool) -> int:
        raise _not_here("the outbox")

    async def first_node_alive(self, me: str, dead_before: float) -> bool:
        raise _not_here("nodes")

    async def node_stopped(self, node_id: str) -> None:
        raise _not_here("nodes")

    async def calls_of_node(self, node_id: str) -> list[Call]:
        raise _not_here("calls")


def _settle(done: asyncio.Future[None]) -> None:
    if not done.done():  # its submitter may have been cancelled meanwhile
        done.set_result(None)


def _after(batch: Batch) -> None:
    try:
        batch.after()
    except Exception:
        log.exception("call %s: what follows a change's commit failed", batch.call_id)


def _same(thing: object) -> object:
    return thing


def _not_here(what: str) -> NotImplementedError:
    return NotImplementedError(f"a call's unit does not hold {what}: use the store's")


class WriteBehind:
    """Writes each call's batches in order; keeps and retries them while the store is away
    (see the module docstring). One task retries for every call, with exponential backoff
    from ``backoff_initial_s`` to ``backoff_max_s``; while the store is down and nothing waits,
    it writes ``probe`` so that :attr:`health` learns the outage ended."""

    def __init__(
        self,
        repo: Repository,
        health: StoreHealth,
        *,
        backoff_initial_s: float = 0.05,
        backoff_max_s: float = 1.0,
        max_droppable: int = 200,
        drained: Callable[[str], None] = lambda _call_id: None,
        probe: Step | None = None,
    ) -> None:
        self._repo = repo
        self.health = health
        self._b0 = backoff_initial_s
        self._bmax = backoff_max_s
        self.max_droppable = max_droppable
        self._drained = drained
        self._probe = probe
        """A write that shows the store is back when nothing else waits (a heartbeat)."""
        self._queues: dict[str, deque[tuple[Batch, CallRecord]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._group: list[_Submitted] = []
        """Submitted, for the next transaction, in the order submitted."""
        self._committers: set[asyncio.Task[None]] = set()
        self._writers = max(1, int(getattr(repo, "writers", 1)))
        """Groups written at once (what the store takes: 1 for SQLite)."""
        self._busy: set[str] = set()
        """The calls with changes in a group being written."""
        self.group_sizes: deque[int] = deque(maxlen=1000)
        """How many batches each of the last transactions wrote (for tests and the bench)."""
        self.dropped = 0
        """``tone`` notifications dropped because too many waited for their call."""
        self.delay_s = backoff_initial_s
        """The current retry interval (what a 503 asks clients to wait, rounded up)."""
        health.on_down = self.kick

    @property
    def pending(self) -> int:
        """Batches waiting for the store."""
        return sum(len(q) for q in self._queues.values())

    def backlog(self, call_id: str) -> bool:
        """Whether changes of ``call_id`` wait for the store."""
        return call_id in self._queues

    def accepting(self, call_id: str) -> None:
        """Raise :class:`StoreUnavailableError` if new work for ``call_id`` must wait: the
        store is away, or the call's earlier changes have not reached it yet."""
        if self.health.down or self.backlog(call_id):
            raise StoreUnavailableError(
                "the store is unavailable for now; this call goes on, retry the request later",
                retry_after_s=max(1, round(self.delay_s + 0.5)),
            )

    async def submit(self, batch: Batch, record: CallRecord) -> None:
        """Write ``batch`` with the next group if nothing of its call waits, and return once
        it committed (or, if the store is away, once it waits for the retry task behind the
        call's earlier batches). What the store refuses (not being away) is raised."""
        if not batch.steps:
            batch.after()
            return
        if batch.call_id in self._queues:
            self._wait(batch, record)
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._group.append((batch, record, done))
        if len(self._committers) < self._writers:
            task = asyncio.ensure_future(self._commit_groups())
            self._committers.add(task)
            task.add_done_callback(self._committers.discard)
        await done

    def _wait(self, batch: Batch, record: CallRecord) -> None:
        """Keep ``batch`` behind its call's earlier batches for the retry task."""
        queue = self._queues.setdefault(batch.call_id, deque())
        if batch.droppable and len(queue) >= self.max_droppable:
            self.dropped += 1
            return
        queue.append((batch, record))
        self.kick()

    async def _commit_groups(self) -> None:
        """Write what was submitted, a group per transaction, until nothing is left."""
        group: list[_Submitted] = []
        try:
            while group := self._take():
                ready: list[_Submitted] = []
                for batch, record, done in group:
                    if batch.call_id in self._queues:  # an earlier change of it waits: behind
                        self._wait(batch, record)
                        _settle(done)
                    else:
                        ready.append((batch, record, done))
                try:
                    if ready:
                        await self._commit(ready)
                finally:
                    self._busy.difference_update(b.call_id for b, _, _ in group)
                group = []
        finally:
            # gone from the writers now, not at its done-callback: a change submitted
            # meanwhile starts a writer of its own
            self._committers.discard(asyncio.current_task())
            for _, _, done in group:  # cancelled (a stop that could not wait): nobody
                if not done.done():  # waits for it forever
                    done.cancel()

    def _take(self) -> list[_Submitted]:
        """The next group: the oldest submitted changes, up to :data:`GROUP_MAX`, of calls
        with nothing in a group being written (a call's later changes stay behind its
        earlier ones)."""
        if not self._busy and len(self._group) <= GROUP_MAX:
            group, self._group = self._group, []
        else:
            group, left, blocked = [], [], set(self._busy)
            for item in self._group:
                call_id = item[0].call_id
                if len(group) < GROUP_MAX and call_id not in blocked:
                    group.append(item)
                else:
                    left.append(item)
                    blocked.add(call_id)
            self._group = left
        self._busy.update(b.call_id for b, _, _ in group)
        return group

    def _unit(self) -> AbstractAsyncContextManager[UnitOfWork]:
        """The store's transaction for a group (its writes batched where it can)."""
        batched = getattr(self._repo, "batched_unit", None)
        return batched() if batched is not None else self._repo.unit()

    async def _commit(self, ready: list[_Submitted]) -> None:
        try:
            async with self._unit() as uow:
                for batch, _, _ in ready:
                    for step in batch.steps:
                        await step(uow)
        except StoreUnavailableError:
            for batch, record, done in ready:
                self._wait(batch, record)
                _settle(done)
            return
        except Exception:  # one change the store refuses: only that one fails
            await self._one_by_one(ready)
            return
        self.group_sizes.append(len(ready))
        for batch, _, done in ready:
            _after(batch)
            _settle(done)

    async def _one_by_one(self, ready: list[_Submitted]) -> None:
        for batch, record, done in ready:
            if batch.call_id in self._queues:
                self._wait(batch, record)
                _settle(done)
                continue
            try:
                await self._land(batch)
            except StoreUnavailableError:
                self._wait(batch, record)
                _settle(done)
            except Exception as exc:
                if not done.done():
                    done.set_exception(exc)
            else:
                self.group_sizes.append(1)
                _settle(done)

    def kick(self) -> None:
        """Start the retry task if it is not running."""
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._retry())

    async def flush(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for every waiting batch to land; whether they all did."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while (self._queues or self._group or self._committers) and loop.time() < deadline:
            self.kick()
            await asyncio.sleep(0.02)
        return not self._queues and not self._group and not self._committers

    async def close(self) -> None:
        committers = set(self._committers)
        if committers:  # not cut off mid-transaction unless it hangs
            await asyncio.wait(committers, timeout=5.0)
            for task in committers:
                task.cancel()
            await asyncio.gather(*committers, return_exceptions=True)
        for _, _, done in self._group:  # nobody waits for what will not be written now
            if not done.done():
                done.cancel()
        self._group.clear()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _land(self, batch: Batch) -> None:
        async with self._unit() as uow:
            for step in batch.steps:
                await step(uow)
        _after(batch)

    async def _retry(self) -> None:
        self.delay_s = self._b0
        while self._queues or (self.health.down and self._probe is not None):
            await asyncio.sleep(self.delay_s)
            try:
                if not self._queues and self._probe is not None:
                    async with self._repo.unit() as uow:  # is the store back?
                        await self._probe(uow)
                for call_id in list(self._queues):
                    await self._drain(call_id)
            except StoreUnavailableError:
                self.delay_s = min(self.delay_s * 2, self._bmax)
            else:
                self.delay_s = self._b0

    async def _drain(self, call_id: str) -> None:
        queue = self._queues[call_id]
        while queue:
            batch, _ = queue[0]
            try:
                await self._land(batch)
            except StoreUnavailableError:
                raise
            except Exception:  # not the store being away: retrying cannot help
                log.exception("call %s: a change could not be written; dropped", call_id)
            queue.popleft()
        del self._queues[call_id]
        self._drained(call_id)


__all__ = ["Batch", "CallRecord", "LiveUnit", "WriteBehind"]
