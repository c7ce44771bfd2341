"""The event loop choice of ``serve --loop``: uvloop where installed (auto), asyncio's own
otherwise and when asked; the tests themselves run on asyncio."""

from __future__ import annotations

import asyncio
import sys
import types
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dtmfgraph.cli import app, loops


def test_auto_takes_uvloop_only_where_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loops, "installed", lambda module: False)
    assert loops.resolve("auto") == "asyncio"
    assert loops.factory("auto") is None
    with pytest.raises(loops.LoopError, match=r"uvloop is not installed .*dtmfgraph\[fast\]"):
        loops.resolve("uvloop")
    monkeypatch.setattr(loops, "installed", lambda module: True)
    assert loops.resolve("auto") == "uvloop"
    assert loops.resolve("asyncio") == "asyncio"
    with pytest.raises(loops.LoopError, match="unknown event loop 'trio'"):
        loops.resolve("trio")


def test_run_uses_the_chosen_loop_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[asyncio.AbstractEventLoop] = []

    def new_event_loop() -> asyncio.AbstractEventLoop:
        loop = asyncio.new_event_loop()
        made.append(loop)
        return loop

    fake = types.ModuleType("uvloop")
    fake.new_event_loop = new_event_loop  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "uvloop", fake)
    monkeypatch.setattr(loops, "installed", lambda module: True)

    async def which() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    assert loops.run(which(), "uvloop") is made[0]
    assert loops.run(which(), "asyncio") not in made
    assert len(made) == 1


def test_serve_refuses_a_loop_it_cannot_have(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(loops, "installed", lambda module: False)
    runner = CliRunner()
    data = ["--data-dir", str(tmp_path), "--media", "loopback"]
    done = runner.invoke(app, ["serve", "--loop", "uvloop", *data])
    assert done.exit_code == 2
    assert "error: --loop: uvloop is not installed" in done.output
    done = runner.invoke(app, ["serve", "--loop", "trio", *data])
    assert done.exit_code == 2 and "error: --loop: Input should be" in done.output
    assert list(tmp_path.iterdir()) == []  # refused before anything was written
