"""Fixtures shared by the layers' tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from dtmfgraph.media.phone import Phone

from .api.harness import Receiver, serve_in_task, stop


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A real HTTP webhook receiver on 127.0.0.1 (the service's callbackUri target)."""
    r = Receiver()
    server, task = await serve_in_task(r.app(), r.port)
    try:
        yield r
    finally:
        await stop(server, task)


@pytest.fixture
async def phone() -> AsyncIterator[Phone]:
    """A started Phone on 127.0.0.1 (free SIP port; RTP from the default range)."""
    p = await Phone.start("127.0.0.1", 0)
    try:
        yield p
    finally:
        await p.close()
