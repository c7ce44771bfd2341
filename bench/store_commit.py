"""A request's commit while the event loop is busy: the write-behind's group on SQLite.

A request that changes a live call (POST /calls, sendDtmfTones) is answered once its change is in
the store, written by the write-behind's group commit. With aiosqlite each statement is a few
round trips between the event loop and SQLite's thread, and each round trip waits for the loop's
next turn: when the loop also sets up SIP calls and paces media, a commit's time is its round
trips times the length of a loop turn. This bench keeps the loop as busy as that (``--busy``
callbacks ready on every turn, each burning ``--burn-ms`` of CPU: 8 x 0.5 ms, a 4 ms turn) and
times, in one process on a SQLite file:

- **32 new calls**: the changes 32 concurrent POST /calls make (a call row and its notification
  each), submitted together: as on main before this pass (a read then an insert per call, one
  statement per row), and batched (each table's rows in one ``executemany``, the call saved
  with one upsert). Time until the last submitter returns, and the loop round trips
  (``call_soon_threadsafe`` from SQLite's thread) it took.
- **a send behind the outbox**: one sendDtmfTones' change while two outbox-like workers keep the
  one connection busy with their own transactions (a claim: a read and two updates), first come
  first served (before) and with the request's change first (``store.turns``); the median of
  9 sends a round.

Rounds alternate before/after; the table holds medians and their ratios (same run, same box).

    .venv/bin/python bench/store_commit.py [--rounds 7] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import machine, markdown_table, write_section
from dtmfgraph.service.errors import StoreUnavailableError
from dtmfgraph.service.model import Call, CallState, Direction, Event, EventKind
from dtmfgraph.service.repository import UnitOfWork
from dtmfgraph.service.write_behind import Batch, CallRecord, LiveUnit, WriteBehind
from dtmfgraph.store import SqlRepository, upgrade
from dtmfgraph.store.tables import outbox

CALLS = 32
SENDS = 9
"""Sends timed per round (their median counts)."""


class Busy:
    """``n`` callbacks ready on every loop turn, each burning ``burn_s`` of CPU."""

    def __init__(self, n: int, burn_s: float) -> None:
        self.n, self.burn_s, self.on = n, burn_s, False

    def _burn(self) -> None:
        end = time.perf_counter() + self.burn_s
        while time.perf_counter() < end:
            pass
        if self.on:
            asyncio.get_running_loop().call_soon(self._burn)

    def start(self) -> None:
        self.on = True
        for _ in range(self.n):
            asyncio.get_running_loop().call_soon(self._burn)

    def stop(self) -> None:
        self.on = False


class Hops:
    """Counts the callbacks other threads hand to the loop (SQLite's thread's round trips)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.count = 0
        original = loop.call_soon_threadsafe

        def counted(*args: Any, **kw: Any) -> Any:
            self.count += 1
            return original(*args, **kw)

        loop.call_soon_threadsafe = counted  # type: ignore[method-assign]


class Unbatched:
    """The store as the write-behind saw it before: ``unit()`` only (no ``batched_unit``)."""

    def __init__(self, repo: SqlRepository) -> None:
        self._repo = repo
        self.health = repo.health

    def unit(self) -> Any:
        return self._repo.unit()


def _call(cid: str) -> Call:
    return Call(cid, "t", "a", Direction.OUTGOING, CallState.ESTABLISHING, "http://x/cb", None)


async def _created(rec: CallRecord, old: bool) -> Batch:
    """The change a POST /calls makes: the call and its 'establishing' notification."""
    uow = LiveUnit(rec)
    await uow.insert_call(rec.call)
    event = Event(EventKind.CALL_UPDATED, rec.call.id, {"state": "establishing"})
    await uow.add_event(event, callback_uri=rec.call.callback_uri, app_id=rec.call.app_id)
    uow.commit()
    steps = uow.steps
    if old:  # main before this pass: read, then insert (a retry finds it and updates)
        c = rec.call

        async def insert(u: UnitOfWork) -> None:
            if await u.get_call(c.id) is None:
                await u.insert_call(c)
            else:
                await u.update_call(c)

        steps = [insert, *steps[1:]]
    return Batch(rec.call.id, steps, lambda: None)


async def new_calls(repo: SqlRepository, old: bool, tag: str, hops: Hops) -> tuple[float, int]:
    """Seconds until 32 new calls' changes are all in the store, and the round trips taken."""
    writes = WriteBehind(Unbatched(repo) if old else repo, repo.health)  # type: ignore[arg-type]
    recs = [CallRecord(_call(f"{tag}-{i}")) for i in range(CALLS)]
    batches = [await _created(r, old) for r in recs]
    h0, t0 = hops.count, time.perf_counter()
    await asyncio.gather(*(writes.submit(b, r) for b, r in zip(batches, recs, strict=True)))
    took, trips = time.perf_counter() - t0, hops.count - h0
    await writes.close()
    return took, trips


async def send_behind_outbox(repo: SqlRepository, turns: bool, tag: str) -> float:
    """Seconds until one send's change is in the store (the median of :data:`SENDS`) while
    outbox-like workers keep taking the connection for their claims."""
    saved = repo._turns
    if not turns:
        repo._turns = None
    stop = False

    async def claim_forever() -> None:
        q = sa.select(outbox.c.id).where(outbox.c.state == "pending").limit(8)
        while not stop:
            try:
                async with repo.guard(), repo.engine.begin() as conn:
                    ids = [r.id for r in await conn.execute(q)] or [0]
                    touch = sa.update(outbox).where(outbox.c.id.in_(ids))
                    await conn.execute(touch.values(attempts=outbox.c.attempts))
                    await conn.execute(touch.values(next_attempt_at=outbox.c.next_attempt_at))
            except StoreUnavailableError:  # waited past the pool's timeout: as the outbox, on
                await asyncio.sleep(0.01)

    workers = [asyncio.ensure_future(claim_forever()) for _ in range(2)]
    await asyncio.sleep(0.05)
    writes = WriteBehind(repo, repo.health)
    rec = CallRecord(_call(f"{tag}-send"))
    await writes.submit(await _created(rec, False), rec)
    took: list[float] = []
    for _ in range(SENDS):
        uow = LiveUnit(rec)
        event = Event(EventKind.CALL_UPDATED, rec.call.id, {"state": "established"})
        await uow.add_event(event, callback_uri="http://x/cb", app_id="a")
        uow.commit()
        t0 = time.perf_counter()
        await writes.submit(Batch(rec.call.id, uow.steps, lambda: None), rec)
        if writes.pending:  # (its turn timed out: it waits for the retry; until it lands)
            await writes.flush(60)
        took.append(time.perf_counter() - t0)
        await asyncio.sleep(0.01)
    stop = True
    await asyncio.gather(*workers)
    await writes.close()
    repo._turns = saved
    return statistics.median(took)


async def run(args: argparse.Namespace) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        out.setdefault(key, []).append(value)

    with tempfile.TemporaryDirectory(prefix="store-commit-") as tmp:
        repo = SqlRepository(f"sqlite+aiosqlite:///{Path(tmp) / 'db.sqlite3'}")
        await upgrade(repo.engine)
        hops = Hops(asyncio.get_running_loop())
        busy = Busy(args.busy, args.burn_ms / 1000)
        busy.start()
        try:
            for r in range(args.rounds):
                order = (True, False) if r % 2 == 0 else (False, True)
                for old in order:
                    name = "before" if old else "after"
                    took, trips = await new_calls(repo, old, f"r{r}{name}", hops)
                    add(f"calls {name}", took)
                    add(f"calls trips {name}", trips)
                for turns in (False, True) if r % 2 == 0 else (True, False):
                    name = "after" if turns else "before"
                    add(f"send {name}", await send_behind_outbox(repo, turns, f"r{r}{name}"))
        finally:
            busy.stop()
            await repo.close()
    return out


Measure = Callable[[], Awaitable[float]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--busy", type=int, default=8, help="callbacks ready every loop turn")
    parser.add_argument("--burn-ms", type=float, default=0.5, help="CPU each burns per turn")
    parser.add_argument("--no-write", action="store_true", help="print, do not write the doc")
    args = parser.parse_args()
    load0 = " ".join(f"{x:.2f}" for x in os.getloadavg())
    got = asyncio.run(run(args))
    med = {k: statistics.median(v) for k, v in got.items()}
    ms = lambda k: f"{1000 * med[k]:,.1f}"  # noqa: E731
    rows = [
        [
            f"{CALLS} new calls' changes (POST /calls), submitted together",
            ms("calls before"),
            ms("calls after"),
            f"**{med['calls before'] / med['calls after']:.1f}x**",
            f"{med['calls trips before']:.0f} -> {med['calls trips after']:.0f}",
        ],
        [
            "one send's change while 2 outbox workers claim",
            ms("send before"),
            ms("send after"),
            f"**{med['send before'] / med['send after']:.1f}x**",
            "-",
        ],
    ]
    header = ["commit", "before ms", "after ms", "before / after", "loop round trips"]
    table = markdown_table(header, rows)
    load1 = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(table)
    print(f"load average {load0} -> {load1}")
    if args.no_write:
        return
    write_section(
        "store-commit",
        f"""## A request's commit on a busy loop (`bench/store_commit.py`)

Machine: {machine()}. Load average (1/5/15 min) before: {load0}; after: {load1}.
The loop kept busy with {args.busy} callbacks ready every turn, each burning {args.burn_ms:g} ms
of CPU (as SIP set-up and media pacing keep it); SQLite file, WAL; medians of {args.rounds}
alternating rounds.

{table}

Before: each statement of a group on its own (a read then an insert per new call, one insert per
notification), the one connection first come, first served. After: each table's rows in one
`executemany` (the call saved with one upsert), and the write-behind's turn on the connection
before the outbox's (`store/turns.py`). A commit on a busy loop costs its round trips to
SQLite's thread times the loop's turn, not its SQL: the ratio follows the round trips.""",
    )


if __name__ == "__main__":
    main()
