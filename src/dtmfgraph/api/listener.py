"""``Listener``: one PostgreSQL connection ``LISTEN``ing on a channel, kept open.

The connection can go: the server is restarted, an operator terminates the session, the network
drops it. asyncpg says so when the server closes it (a termination listener); a ping every
``ping_every_s`` catches one that died without a word. Either way: one log line, the connection
is dropped and opened again with exponential backoff (``backoff_initial_s`` doubling up to
``backoff_max_s``) and the channel listened to again, one log line when it is back (with how long
it was away). Meanwhile :attr:`Listener.up` is false, :meth:`Listener.send` raises
:class:`ListenerDownError` at once (with the seconds until the next attempt), and ``on_lost``
is told: what was waiting for a notification on the channel will not get it.

The connection is named after the channel (``application_name``), so that the other nodes see
in ``pg_stat_activity`` whether this one listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Notify = Callable[[Any, int, str, str], None]
"""asyncpg's listener callback: ``(connection, pid, channel, payload)``."""


class ListenerDownError(Exception):
    """The connection is away (being opened again); try again in :attr:`retry_after_s`."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Listener:
    """See the module docstring. ``what`` names the connection in the log lines."""

    def __init__(
        self,
        dsn: str,
        channel: str,
        on_notify: Notify,
        *,
        on_lost: Callable[[], None] = lambda: None,
        what: str = "listening connection",
        meanwhile: str = "",
        ping_every_s: float = 5.0,
        backoff_initial_s: float = 0.1,
        backoff_max_s: float = 5.0,
        connect_timeout_s: float = 10.0,
    ) -> None:
        self._dsn = dsn
        self.channel = channel
        self._on_notify = on_notify
        self._on_lost = on_lost
        self.what = what
        self._meanwhile = meanwhile
        self._ping_every = ping_every_s
        self._backoff = (backoff_initial_s, backoff_max_s)
        self._connect_timeout = connect_timeout_s
        self._conn: Any = None  # an asyncpg connection; None while away
        self._lock = asyncio.Lock()  # one operation at a time on a connection
        self._gone = asyncio.Event()
        self._next_try = 0.0
        self._task: asyncio.Task[None] | None = None
        self.losses = 0
        """Times the connection was lost (and opened again, or being opened)."""

    @property
    def up(self) -> bool:
        return self._conn is not None

    def retry_after_s(self) -> int:
        """Whole seconds (at least 1) until the next attempt to open the connection again."""
        return max(1, math.ceil(self._next_try - time.monotonic()))

    async def start(self) -> None:
        """Open the connection (raises if the server cannot be reached), then keep it open."""
        self._conn = await self._connect()
        self._task = asyncio.create_task(self._keep(), name=f"{self.what} keeper")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(timeout=2), 3)

    async def send(self, channel: str, payload: str) -> None:
        """``NOTIFY channel, payload`` over the connection (:class:`ListenerDownError` if away)."""
        async with self._lock:
            conn = self._conn
            if conn is None:
                raise self._down()
            try:
                await conn.execute("SELECT pg_notify($1, $2)", channel, payload, timeout=10)
            except Exception as exc:  # the connection broke under us: open it again
                self._lost(conn, exc)
                raise self._down() from exc

    def _down(self) -> ListenerDownError:
        return ListenerDownError(
            f"the {self.what} to the database is being reopened", self.retry_after_s()
        )

    async def _connect(self) -> Any:
        import asyncpg  # type: ignore[import-untyped]  # noqa: PLC0415 (PostgreSQL only)

        conn = await asyncpg.connect(
            self._dsn,
            timeout=self._connect_timeout,
            server_settings={"application_name": self.channel},
        )
        try:
            conn.add_termination_listener(self._terminated)
            await conn.add_listener(self.channel, self._on_notify)
        except BaseException:
            conn.terminate()
            raise
        return conn

    def _terminated(self, conn: Any) -> None:
        if conn is self._conn:
            self._gone.set()

    def _lost(self, conn: Any, why: object) -> None:
        """``conn`` is lost (once: a later call about the same connection does nothing)."""
        if conn is not self._conn:
            return
        self._conn = None
        self._gone.set()
        self.losses += 1
        self._next_try = time.monotonic()
        conn.terminate()
        log.warning(  # the store outage, if this is one, logs the error
            "%s to the database lost (%s): reopening it%s",
            self.what,
            str(why).strip().splitlines()[0][:300] if str(why).strip() else type(why).__name__,
            f"; meanwhile {self._meanwhile}" if self._meanwhile else "",
        )
        self._on_lost()

    async def _keep(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._gone.wait(), self._ping_every)
            conn = self._conn
            if conn is not None and not self._gone.is_set():
                if await self._alive(conn):
                    continue
            elif conn is not None:
                self._lost(conn, "the server closed it")
            await self._reopen()

    async def _alive(self, conn: Any) -> bool:
        async with self._lock:
            try:
                await conn.execute("SELECT 1", timeout=self._ping_every)
            except Exception as exc:
                self._lost(conn, exc)
                return False
        return True

    async def _reopen(self) -> None:
        lost_at = time.monotonic()
        delay = self._backoff[0]
        while True:
            self._next_try = time.monotonic() + delay
            try:
                conn = await self._connect()
                break
            except Exception as exc:
                log.debug("%s: not reopened yet (%s); next try in %.1f s", self.what, exc, delay)
                await asyncio.sleep(max(0.0, self._next_try - time.monotonic()))
                delay = min(self._backoff[1], delay * 2)
        self._gone.clear()
        self._conn = conn
        log.info("%s to the database back after %.1f s", self.what, time.monotonic() - lost_at)


__all__ = ["Listener", "ListenerDownError"]
