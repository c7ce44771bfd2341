"""Start-up of the command line: each command imports its own layers only (checked in a
subprocess, as a user runs it), and ``dtmfgraph --help`` lists every command as it is."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dtmfgraph.cli import COMMANDS, load_command

PROBE = """
import json, sys
from dtmfgraph.cli import app
try:
    app(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""

SERVICE_LAYERS = (
    "sqlalchemy",
    "alembic",
    "fastapi",
    "uvicorn",
    "msgraph",
    "dtmfgraph.sip",
    "dtmfgraph.rtp",
    "dtmfgraph.media",
    "dtmfgraph.graph",
    "dtmfgraph.service",
    "dtmfgraph.store",
    "dtmfgraph.notify",
    "dtmfgraph.api",
    "dtmfgraph.settings",
)


def modules_after(*args: str, probe: str = PROBE) -> set[str]:
    """The modules loaded once ``dtmfgraph ARGS`` has run (its exit status must be 0), or when
    ``probe`` prints them."""
    done = subprocess.run(
        [sys.executable, "-c", probe, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    last = done.stderr.strip().splitlines()[-1]
    loaded = set(json.loads(last))
    assert "dtmfgraph.cli" in loaded, done.stderr
    return loaded


def _loaded(modules: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in prefixes or m.startswith(prefixes))


def test_help_imports_no_command() -> None:
    modules = modules_after("--help")
    assert _loaded(modules, (*SERVICE_LAYERS, "numpy", "dtmfgraph.tones")) == []
    assert not [m for m in modules if m.startswith("dtmfgraph.cli.")]


@pytest.mark.parametrize("how", ["synth", "detect"])
def test_synth_and_detect_import_no_service_layer(how: str, tmp_path: Path) -> None:
    wav = tmp_path / "keys.wav"
    modules = modules_after("synth", "159#", "-o", str(wav))
    assert wav.stat().st_size > 0
    if how == "detect":
        modules = modules_after("detect", str(wav))
    assert "dtmfgraph.tones" in modules
    assert _loaded(modules, SERVICE_LAYERS) == []


def test_serve_help_imports_no_web_stack_nor_database() -> None:
    modules = modules_after("serve", "--help")
    assert _loaded(modules, ("sqlalchemy", "alembic", "fastapi", "uvicorn", "msgraph")) == []


@pytest.mark.parametrize("name", list(COMMANDS))
def test_listed_help_is_the_commands_own(name: str) -> None:
    module, short_help = COMMANDS[name]
    command = load_command(module, name)
    assert command.name == name
    first = " ".join((command.help or "").split("\n\n")[0].split())
    assert first == short_help


def test_help_lists_every_command_and_runs_them() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dtmfgraph", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    for name in COMMANDS:
        assert f" {name} " in done.stdout
    done = subprocess.run(
        [sys.executable, "-m", "dtmfgraph", "rtp", "send", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "--pt" in done.stdout
    done = subprocess.run(
        [sys.executable, "-m", "dtmfgraph", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and "No such command 'nope'" in done.stderr


LISTEN_PROBE = """
import json, sys
from dtmfgraph.cli import app
from dtmfgraph.cli import starter

async def listening(self):  # the start's first step, run once the server listens
    print(json.dumps(sorted(sys.modules)), file=sys.stderr)
    self.server.should_exit = True

starter.Starter._start = listening
try:
    app(sys.argv[1:])
except SystemExit:
    pass
"""


def test_serve_listens_before_the_service_layers_load(tmp_path: Path) -> None:
    """``serve`` answers its first requests (the start gate) before FastAPI, the store, the
    service and the media stack are imported: they load behind the listening server."""
    args = ["serve", "--no-auth", "--port", "0", "--sip-port", "0", "--data-dir", str(tmp_path)]
    loaded = modules_after(*args, probe=LISTEN_PROBE)
    assert "uvicorn" in loaded and "dtmfgraph.api.starting" in loaded
    heavy = ("numpy", "cryptography", "dns", "httpx", "jwt", "dtmfgraph.console")
    layers = tuple(m for m in SERVICE_LAYERS if m not in ("uvicorn", "dtmfgraph.settings"))
    assert _loaded(loaded, (*layers, *heavy)) == ["dtmfgraph.api", "dtmfgraph.api.paths",
                                                  "dtmfgraph.api.starting"]  # fmt: skip
