"""The ``dtmfgraph`` command line.

Each command's module is imported only when that command runs or shows its own help, so a
command pays for its own layers only: ``dtmfgraph --help`` lists the commands from
:data:`COMMANDS` without importing any, ``synth`` and ``detect`` load numpy and the DSP, not
the SIP stack, the web server or the database.

A new command: a module here with ``register(app)``, and its row in :data:`COMMANDS` (a test
checks the row's help against the command's own). Registering one eagerly on :data:`app` works
too, at the price of its imports for every command.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperCommand, TyperGroup

if TYPE_CHECKING:
    from typer import _click as click  # typer carries its own click

COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("tones", "Synthesise KEYS as Q.23 DTMF tones into a 16-bit mono WAV file."),
    "detect": (
        "tones",
        "Detect DTMF keys in a WAV file: prints key, start s, end s, level dBm0 per key.",
    ),
    "demo": ("tones", "Synthesise KEYS to a WAV, detect them back, and show that they match."),
    "serve": (
        "serve",
        "Run the Graph calls API (uvicorn) on real SIP calls (or the loopback simulation).",
    ),
    "config": ("config", "The settings serve runs with: `config show` prints them."),
    "token": ("serve", "Print a development bearer token that ``dtmfgraph serve`` accepts."),
    "call": (
        "sip",
        "Call URI, press KEYS, hang up, and print what happened (exit 1 if the call failed).",
    ),
    "answer": (
        "sip",
        "Answer every call on PORT and print each key heard (rfc4733, sipinfo or inband).",
    ),
    "rtp": (
        "rtp",
        "Send or hear DTMF over RTP (RFC 4733 telephone-events or in-band G.711 tones).",
    ),
    "callback-key": ("keys", "The RSA keys that sign callbacks (kept in the data directory)."),
    "notifications": (
        "notifications",
        "The notification outbox: list what was not delivered, send dead ones again.",
    ),
}
"""Each command: the module of this package that registers it, and its one-line help (the
first paragraph of its docstring; a test keeps the two the same)."""


class LazyGroup(TyperGroup):
    """A command group that imports a command's module when the command is looked up to run,
    and lists the commands in its help from :data:`COMMANDS` alone."""

    _listing = False

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*COMMANDS, *(name for name in self.commands if name not in COMMANDS)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands or cmd_name not in COMMANDS:
            return self.commands.get(cmd_name)
        module_name, short_help = COMMANDS[cmd_name]
        if self._listing:
            return TyperCommand(cmd_name, help=short_help)
        command = load_command(module_name, cmd_name)
        self.commands[cmd_name] = command
        return command

    def format_help(self, ctx: click.Context, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


def load_command(module_name: str, cmd_name: str) -> click.Command:
    """The click command ``cmd_name`` as module ``module_name`` of this package registers it."""
    module = importlib.import_module(f"{__name__}.{module_name}")
    holder = typer.Typer()
    module.register(holder)
    command = typer.main.get_group(holder).commands[cmd_name]
    return command


app = typer.Typer(
    name="dtmfgraph",
    cls=LazyGroup,
    help="Make phone calls press keys: DTMF synthesis and detection, RTP, SIP and the Graph API.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    pass


def main() -> None:
    app()
