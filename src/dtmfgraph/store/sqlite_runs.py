"""A group's held writes on SQLite in one round trip to aiosqlite's thread.

Through SQLAlchemy each ``executemany`` is three round trips between the event loop and
aiosqlite's thread (open a cursor, execute, close it), and each waits for the loop's next turn:
on a loop busy setting up calls and pacing media, a group's commit costs its round trips times
that turn. Here the statements are compiled on the loop (SQLAlchemy's own compiler and bind
processors, so a row is written exactly as ``execute`` would write it) and every run is executed
by one function in aiosqlite's thread, inside the transaction the connection already holds.
What SQLite raises comes back as SQLAlchemy's exception for it (``OperationalError`` for a
read-only or full store, ``IntegrityError``...), so the store's outage handling sees the same
errors as before.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

Run = tuple[sa.Executable, list[dict[str, Any]]]
"""One statement and the rows it writes, in order."""


def _plan(stmt: sa.Executable, rows: list[dict[str, Any]], dialect: Any) -> tuple[str, list[Any]]:
    """The SQL text of ``stmt`` and each row's positional parameters, bind-processed."""
    compiled: Any = stmt.compile(dialect=dialect, column_keys=list(rows[0]))  # type: ignore[attr-defined]
    names = compiled.positiontup
    processors = compiled._bind_processors
    seq = []
    for row in rows:
        params = compiled.construct_params(row)
        seq.append(tuple(processors[n](params[n]) if n in processors else params[n] for n in names))
    return compiled.string, seq


async def write_runs(conn: AsyncConnection, runs: list[Run]) -> bool:
    """Execute ``runs`` in one round trip, in order, in ``conn``'s transaction; ``False`` (and
    nothing written) when ``conn`` is not an aiosqlite connection with qmark parameters: the
    caller then executes them itself."""
    if conn.dialect.name != "sqlite" or conn.dialect.paramstyle != "qmark":
        return False
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection
    db = getattr(driver, "_conn", None)
    if not isinstance(db, sqlite3.Connection) or not hasattr(driver, "_execute"):
        return False
    plan = [_plan(stmt, rows, conn.dialect) for stmt, rows in runs]

    def write(db: sqlite3.Connection) -> None:
        for text, seq in plan:
            db.executemany(text, seq)

    try:
        await driver._execute(write, db)
    except sqlite3.Error as exc:
        raise sa.exc.DBAPIError.instance(
            plan[0][0], None, exc, sqlite3.Error, dialect=conn.dialect
        ) from exc
    return True


__all__ = ["Run", "write_runs"]
