"""Fixtures for the end-to-end tests: our Phone on a free loopback port, real peers beside it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from dtmfgraph.media.phone import Phone


@pytest.fixture
async def phone() -> AsyncIterator[Phone]:
    """A started Phone on 127.0.0.1 (free SIP port; RTP from the default range)."""
    p = await Phone.start("127.0.0.1", 0)
    try:
        yield p
    finally:
        await p.close()
