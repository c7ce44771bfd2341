"""Who uses SQLite's one connection next: what a request waits for before what can wait.

A SQLite store has one pooled connection (one writer at a time), which the API's changes (the
write-behind's groups, which a request's answer waits for; reads of calls this node does not
carry) share with the outbox's deliveries (claims, marks, retries), the heartbeat and the
console. The pool hands it out first come, first served: with the media loop busy, each outbox
transaction holds it for many loop turns, and a request's change queued behind a few of them
waited for the connection far longer than it took to write (hundreds of milliseconds at 32
calls sending). :class:`Turns` puts the urgent ones first, but never more than
:data:`URGENT_RUN` in a row while another waits, so the outbox is slowed, never starved.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

URGENT_RUN = 4
"""Urgent turns in a row while a turn that can wait is waiting."""


class TurnTimeoutError(TimeoutError):
    """Nobody gave this turn up within the timeout (as a pool whose connections stay in use)."""


class Turns:
    """One holder at a time; the next is the oldest urgent waiter (at most :data:`URGENT_RUN`
    in a row while one that can wait waits), else the oldest other one."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._busy = False
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._other: deque[asyncio.Future[None]] = deque()
        self._run = 0
        """Urgent turns given in a row while others waited."""

    @property
    def waiting(self) -> int:
        return len(self._urgent) + len(self._other)

    @asynccontextmanager
    async def turn(self, *, urgent: bool) -> AsyncIterator[None]:
        """Hold the turn for the body; :class:`TurnTimeoutError` if it did not come within
        :attr:`timeout_s`."""
        if self._busy:
            queue = self._urgent if urgent else self._other
            given: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            queue.append(given)
            try:
                await asyncio.wait_for(asyncio.shield(given), self.timeout_s)
            except BaseException as exc:
                if given.done() and not given.cancelled():
                    self._next()  # it was handed over as this gave up: pass it on
                else:
                    given.cancel()
                    queue.remove(given)
                if isinstance(exc, asyncio.TimeoutError):
                    raise TurnTimeoutError(
                        f"no turn on the store's connection in {self.timeout_s:g} s"
                    ) from None
                raise
        else:
            self._busy = True
        try:
            yield
        finally:
            self._next()

    def _next(self) -> None:
        """Hand the turn to the next waiter, or free it."""
        while self._urgent or self._other:
            take_urgent = bool(self._urgent) and (not self._other or self._run < URGENT_RUN)
            if take_urgent:
                given = self._urgent.popleft()
                self._run = self._run + 1 if self._other else 0
            else:
                given = self._other.popleft()
                self._run = 0
            if not given.done():
                given.set_result(None)
                return
        self._busy = False


__all__ = ["URGENT_RUN", "TurnTimeoutError", "Turns"]
