"""The SQLite store's connection: WAL, one pooled connection, and a pool that stays busy past
its timeout answering 503 (``StoreUnavailableError`` with ``Retry-After``), not an outage."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from dtmfgraph.service.errors import StoreUnavailableError
from dtmfgraph.store import SqlRepository, upgrade


async def test_sqlite_runs_in_wal_mode_with_normal_sync(tmp_path: Path) -> None:
    repo = SqlRepository(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}")
    try:
        await upgrade(repo.engine)
        async with repo.engine.connect() as conn:
            mode = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
            sync = (await conn.exec_driver_sql("PRAGMA synchronous")).scalar()
        assert (mode, sync) == ("wal", 1)  # 1: NORMAL
        assert (tmp_path / "db.sqlite3-wal").exists()
    finally:
        await repo.close()


async def test_an_exhausted_pool_is_a_503_not_an_outage(tmp_path: Path) -> None:
    repo = SqlRepository(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}", pool_timeout_s=0.2)
    try:
        await upgrade(repo.engine)
        async with repo.engine.connect():  # the pool's only connection, held
            with pytest.raises(StoreUnavailableError) as caught:
                async with repo.unit() as uow:
                    await uow.get_call("some-call")
            assert caught.value.retry_after_s == 1
            assert "busy" in str(caught.value)
        assert not repo.health.down  # overload, not an outage
        async with repo.unit() as uow:  # the connection is free again: served
            assert await uow.get_call("some-call") is None
    finally:
        await repo.close()


async def test_postgresql_pool_is_bounded_and_an_exhausted_one_is_a_503(pg: str) -> None:
    """PostgreSQL's pool (10 connections, 10 more at peaks) never grows past its bound: with
    every connection held, a transaction waits ``pool_timeout_s`` and is a 503 (retry later),
    not an outage and not a dead task; once one is back it is served."""
    repo = SqlRepository(pg, pool_timeout_s=0.2)
    try:
        await upgrade(repo.engine)
        async with contextlib.AsyncExitStack() as held:
            for _ in range(20):
                await held.enter_async_context(repo.engine.connect())
            with pytest.raises(StoreUnavailableError) as caught:
                async with repo.unit() as uow:
                    await uow.get_call("some-call")
            assert caught.value.retry_after_s == 1 and "busy" in str(caught.value)
        assert not repo.health.down
        async with repo.unit() as uow:
            assert await uow.get_call("some-call") is None
    finally:
        await repo.close()


async def test_the_heartbeat_beats_while_requests_hold_every_pooled_connection(pg: str) -> None:
    """PostgreSQL: a burst that holds the whole request pool past the lease must not make this
    node look dead to the others: the heartbeat has a connection of its own."""
    repo = SqlRepository(pg, pool_timeout_s=0.2)
    try:
        await upgrade(repo.engine)
        held = [await repo.engine.connect() for _ in range(20)]  # pool_size 10 + overflow 10
        try:
            with pytest.raises(StoreUnavailableError):  # a request: the pool is exhausted
                async with repo.unit() as uow:
                    await uow.get_call("some-call")
            async with repo.beat_unit() as uow:  # the heartbeat: still beats
                await uow.node_alive("node-a", 1000.0)
            async with repo.beat_unit() as uow:
                assert await uow.first_node_alive("node-b", dead_before=999.0) is False
        finally:
            for conn in held:
                await conn.close()
    finally:
        await repo.close()
