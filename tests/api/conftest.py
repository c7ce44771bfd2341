from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from dtmfgraph.service import LoopbackMedia

from .harness import (
    Receiver,
    Service,
    free_port,
    make_settings,
    pg_database,
    running_service,
)


@pytest.fixture
async def pg() -> AsyncIterator[str]:
    """A fresh PostgreSQL database (its URL) for a test that needs that database."""
    async with pg_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'graph.sqlite3'}"
        return
    async with pg_database() as url:
        yield url


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
