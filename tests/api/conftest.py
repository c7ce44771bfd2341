from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from dtmfgraph.service import LoopbackMedia

from .harness import (
    Receiver,
    Service,
    free_port,
    make_settings,
    running_service,
)

PG_DSN = os.environ.get("DTMFGRAPH_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


async def _fresh_pg_db() -> str:
    name = f"dtmfgraph_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(PG_DSN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name


async def _drop_pg_db(name: str) -> None:
    conn = await asyncpg.connect(PG_DSN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'graph.sqlite3'}"
        return
    name = await _fresh_pg_db()
    base = PG_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        yield f"{base}/{name}"
    finally:
        await _drop_pg_db(name)


ServiceFactory = Callable[..., AbstractAsyncContextManager[Service]]


@pytest.fixture
def service_factory(db_url: str, tmp_path: Path, receiver: Receiver) -> ServiceFactory:
    def factory(speed: float = 0.05, **over: Any) -> AbstractAsyncContextManager[Service]:
        over.setdefault("incoming_callback_uri", receiver.url)
        settings = make_settings(tmp_path, db_url, free_port(), loopback_speed=speed, **over)
        return running_service(settings, LoopbackMedia(speed=speed))

    return factory


@pytest.fixture
async def svc(service_factory: ServiceFactory) -> AsyncIterator[Service]:
    async with service_factory() as s:
        yield s
