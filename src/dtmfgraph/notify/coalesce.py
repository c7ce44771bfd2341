"""Writes that coalesce: what is submitted while one write runs goes in the next, together.

Used for the outbox's "delivered" marks: each delivered notification would otherwise cost a
transaction of its own. Nobody waits for a batch to fill (an idle store takes a mark at once);
each submitter returns once the write holding its item committed, or gets its exception.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Coalescer(Generic[T]):
    """Calls ``write`` with the items submitted since its last call, at most ``max_items`` at a
    time, one call at a time."""

    def __init__(self, write: Callable[[list[T]], Awaitable[None]], max_items: int = 100) -> None:
        self._write = write
        self._max = max(1, max_items)
        self._pending: list[tuple[T, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self.sizes: list[int] = []
        """How many items each write took (the last 100; for tests and the bench)."""

    async def submit(self, item: T) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((item, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._run())
        await done

    async def submit_many(self, items: list[T]) -> None:
        """Submit several items (written together unless past ``max_items``); returns once
        every one is written, or raises the first write's exception."""
        loop = asyncio.get_running_loop()
        waits: list[asyncio.Future[None]] = []
        for item in items:
            done: asyncio.Future[None] = loop.create_future()
            self._pending.append((item, done))
            waits.append(done)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._run())
        await asyncio.gather(*waits)

    async def _run(self) -> None:
        batch: list[tuple[T, asyncio.Future[None]]] = []
        try:
            while self._pending:
                batch = self._pending[: self._max]
                del self._pending[: self._max]
                try:
                    await self._write([item for item, _ in batch])
                except Exception as exc:
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                else:
                    self.sizes = [*self.sizes[-99:], len(batch)]
                    for _, done in batch:
                        if not done.done():
                            done.set_result(None)
                batch = []
        finally:  # cancelled: nobody waits for it forever
            for _, done in batch + self._pending:
                if not done.done():
                    done.cancel()

    async def close(self, seconds: float = 5.0) -> None:
        """Let the write in progress end (up to ``seconds``), then stop."""
        if self._writer is not None:
            await asyncio.wait({self._writer}, timeout=seconds)
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)


__all__ = ["Coalescer"]
