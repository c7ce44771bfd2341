"""The event loop a long-running command runs on: asyncio's own, or uvloop when installed.

``auto`` takes uvloop when it can be imported (``pip install 'dtmfgraph[fast]'``, which also
brings httptools, uvicorn's faster HTTP parser), asyncio's otherwise; ``asyncio`` and
``uvloop`` ask for one (``uvloop`` without it installed is an error). The tests run on asyncio.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

LoopName = Literal["auto", "asyncio", "uvloop"]
T = TypeVar("T")


class LoopError(ValueError):
    """The loop asked for cannot be had."""


def installed(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it)."""
    return importlib.util.find_spec(module) is not None


def resolve(name: str) -> Literal["asyncio", "uvloop"]:
    """The loop ``name`` gives here: ``auto`` is uvloop where it is installed."""
    if name == "asyncio":
        return "asyncio"
    if name == "uvloop":
        if not installed("uvloop"):
            raise LoopError("uvloop is not installed (pip install 'dtmfgraph[fast]')")
        return "uvloop"
    if name == "auto":
        return "uvloop" if installed("uvloop") else "asyncio"
    raise LoopError(f"unknown event loop {name!r} (auto, asyncio or uvloop)")


def factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """A new-loop factory for :class:`asyncio.Runner` (``None``: asyncio's default)."""
    if resolve(name) == "uvloop":
        new_loop: Callable[[], asyncio.AbstractEventLoop] = importlib.import_module(
            "uvloop"
        ).new_event_loop
        return new_loop
    return None


def run(main: Coroutine[Any, Any, T], name: str = "auto") -> T:
    """``asyncio.run(main)`` on the loop ``name`` gives."""
    with asyncio.Runner(loop_factory=factory(name)) as runner:
        return runner.run(main)
