"""A progress bar on stderr for long runs (``answer --count``, the benchmarks), shown only where
stderr is an interactive terminal (or rich is told it is: ``TTY_INTERACTIVE=1``)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

Advance = Callable[..., None]
"""``advance(steps=1, description=None)``: move the bar (and retitle it)."""


@contextlib.contextmanager
def progress(description: str, total: int | None) -> Iterator[Advance]:
    """A bar of ``total`` steps (``None``: open-ended) titled ``description``; lines printed to
    stdout meanwhile show above it. Does nothing off a terminal."""
    from rich.console import Console  # noqa: PLC0415 (only for the commands that show one)

    console = Console(stderr=True)
    if not console.is_interactive:
        yield lambda steps=1, description=None: None
        return
    from rich.progress import (  # noqa: PLC0415
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    # stdout on the same terminal: its lines printed above the bar; elsewhere left alone
    with Progress(*columns, console=console, redirect_stdout=sys.stdout.isatty()) as bar:
        task = bar.add_task(description, total=total)

        def advance(steps: int = 1, description: str | None = None) -> None:
            fields: dict[str, Any] = {} if description is None else {"description": description}
            bar.update(task, advance=steps, **fields)

        yield advance
