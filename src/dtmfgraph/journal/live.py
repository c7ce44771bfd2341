"""Live updates for watchers (the console's server-sent events): publish once, each watcher
gets what its filter lets through, in order, from a bounded queue.

A watcher that falls behind by more than its queue loses the oldest messages and is sent a
``resync`` (its page reloads what it shows); the number of watchers is capped."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

MAX_WATCHERS: Final = 64
QUEUE: Final = 256

Message = dict[str, Any]
Filter = Callable[[Message], bool]


class TooManyWatchersError(Exception):
    """Every watcher slot is taken."""


@dataclass(eq=False)
class Watcher:
    accepts: Filter
    queue: asyncio.Queue[Message | None] = field(default_factory=lambda: asyncio.Queue(QUEUE))
    overflowed: bool = False

    def offer(self, message: Message) -> None:
        if not self.accepts(message):
            return
        if self.queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
            if not self.overflowed:
                self.overflowed = True
                message = {"type": "resync"}
        self.queue.put_nowait(message)

    async def next(self, timeout: float) -> Message | None:
        """The next message; ``{"type": "ping"}`` after ``timeout`` idle; ``None``: closed."""
        try:
            message = await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return {"type": "ping"}
        if message is not None and message.get("type") == "resync":
            self.overflowed = False
        return message


class Hub:
    def __init__(self, max_watchers: int = MAX_WATCHERS) -> None:
        self.max_watchers = max_watchers
        self._watchers: set[Watcher] = set()
        self.closed = False

    def watch(self, accepts: Filter) -> Watcher:
        if self.closed or len(self._watchers) >= self.max_watchers:
            raise TooManyWatchersError(f"at most {self.max_watchers} live watchers")
        watcher = Watcher(accepts)
        self._watchers.add(watcher)
        return watcher

    def leave(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)

    @property
    def watchers(self) -> int:
        return len(self._watchers)

    def publish(self, message: Message) -> None:
        for watcher in list(self._watchers):
            watcher.offer(message)

    def close(self) -> None:
        """End every watcher's stream (the server is stopping)."""
        self.closed = True
        for watcher in self._watchers:
            with contextlib.suppress(asyncio.QueueFull):
                watcher.queue.put_nowait(None)
            if watcher.queue.full():
                watcher.queue.get_nowait()
                watcher.queue.put_nowait(None)
        self._watchers.clear()
