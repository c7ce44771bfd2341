"""The settings ``serve`` runs with, from four places, and ``dtmfgraph config show``.

Each setting comes from the first of: a ``serve`` flag, a ``DTMFGRAPH_<NAME>`` environment
variable, the TOML settings file (``--config FILE`` or ``DTMFGRAPH_CONFIG``), the default. The
file's keys are the settings' names (``sip_trunk_uri = "192.0.2.10"``), at the top level or in
tables named as one likes (``[sip]``: the table names are only for reading); an unknown key is
an error, and relative paths in the file are relative to the file's directory.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from ..settings import Settings

ENV_PREFIX = "DTMFGRAPH_"
CONFIG_ENV = "DTMFGRAPH_CONFIG"
SECRET = re.compile(r"(secret|password|private_key|token)$")
"""Settings whose value is a secret (``config show`` masks them; the files holding one,
``*_file``, are only paths)."""

ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config",
        envvar=CONFIG_ENV,
        help="TOML settings file (keys are the settings' names; flags and DTMFGRAPH_* "
        "variables override it).",
        show_default=False,
    ),
]


class ConfigError(ValueError):
    """The settings file cannot be used: it names the file and the key."""


@dataclass
class Loaded:
    """The effective settings and where each explicitly given one came from."""

    settings: Settings
    sources: dict[str, str] = field(default_factory=dict)
    """Setting name -> ``flag``, ``env DTMFGRAPH_NAME`` or ``file PATH``; absent: default."""

    def source(self, name: str) -> str:
        return self.sources.get(name, "default")


def _has_path(annotation: Any) -> bool:
    if annotation is Path:
        return True
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _has_path(typing.get_args(annotation)[0])
    if origin in (list, typing.Union, types.UnionType):
        return any(_has_path(arg) for arg in typing.get_args(annotation))
    return False


def _flatten(table: dict[str, Any], path: Path, names: set[str]) -> dict[str, Any]:
    """The settings of a parsed file: top-level keys and those of its tables (one level)."""
    values: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict) and key not in names:
            for inner, inner_value in value.items():
                if isinstance(inner_value, dict):
                    raise ConfigError(f"{path}: [{key}.{inner}]: tables go one level deep")
                values[inner] = inner_value
        else:
            values[key] = value
    return values


def read_file(path: Path) -> dict[str, Any]:
    """The settings a TOML file gives, checked by name (not yet by value)."""
    from ..settings import Settings  # noqa: PLC0415

    try:
        table = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not TOML: {exc}") from None
    fields = Settings.model_fields
    values = _flatten(table, path, set(fields))
    for key, value in values.items():
        if key not in fields:
            near = difflib.get_close_matches(key, list(fields), n=1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            raise ConfigError(f"{path}: unknown setting {key!r}{hint}")
        if _has_path(fields[key].annotation):
            values[key] = _relative_to(value, path.parent)
    return values


def _relative_to(value: Any, base: Path) -> Any:
    if isinstance(value, list):
        return [_relative_to(v, base) for v in value]
    if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
        return str(base / value)
    if isinstance(value, str):
        return str(Path(value).expanduser())
    return value


def _env_names() -> dict[str, str]:
    """Setting name -> the variable that sets it, for the DTMFGRAPH_* variables present
    (names compared without case, as the settings read them)."""
    return {
        key[len(ENV_PREFIX) :].lower(): key
        for key in os.environ
        if key.upper().startswith(ENV_PREFIX) and key.upper() != CONFIG_ENV
    }


REPLACED = {"notify_max_attempts": "notify_retry_for_s"}
"""Settings that are gone, and the one that took each one's place."""


def unknown_variables(names: typing.Iterable[str]) -> list[str]:
    """One warning for each ``DTMFGRAPH_*`` variable that looks like a setting but is not one
    (a setting that was replaced, or a near miss of a setting's name): such a variable is
    ignored, which a typo should not make silent. Variables like no setting at all (a test
    harness's ``DTMFGRAPH_TEST_PG``) pass without a word."""
    from ..settings import Settings  # noqa: PLC0415

    fields = list(Settings.model_fields)
    warnings = []
    for name in sorted(names):
        if name in Settings.model_fields:
            continue
        variable = ENV_PREFIX + name.upper()
        if name in REPLACED:
            better = ENV_PREFIX + REPLACED[name].upper()
            warnings.append(f"{variable} is no longer a setting (ignored): use {better}")
            continue
        near = difflib.get_close_matches(name, fields, n=1, cutoff=0.8)
        if near:
            better = ENV_PREFIX + near[0].upper()
            warnings.append(f"{variable} is not a setting (ignored): did you mean {better}?")
    return warnings


def load(
    flags: dict[str, object],
    config: Path | None = None,
    option_of: Callable[[str], str] = lambda name: name,
) -> Loaded:
    """The settings from ``flags`` (setting name -> value given on the command line), the
    environment, the file ``config`` and the defaults, in that order of precedence. Raises
    :class:`ConfigError` for an unusable file or a bad value, naming where that value came
    from: the flag (``option_of(name)``), the variable, or the file and its key."""
    from pydantic import ValidationError  # noqa: PLC0415

    from ..settings import Settings  # noqa: PLC0415

    sources: dict[str, str] = {}
    given: dict[str, object] = {}
    env = _env_names()
    for warning in unknown_variables(env):
        typer.echo(f"warning: {warning}", err=True)
    if config is not None:
        for key, value in read_file(config).items():
            if key not in env:
                given[key] = value
                sources[key] = f"file {config}"
    for key, variable in env.items():
        if key in Settings.model_fields:
            sources[key] = f"env {variable}"
    for key, value in flags.items():
        given[key] = value
        sources[key] = "flag"
    try:
        settings = Settings(**given)  # type: ignore[arg-type]
    except ValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][0]) if error["loc"] else "settings"
        source = sources.get(name, "default")
        if source.startswith("env "):
            where = source[4:]
        elif source.startswith("file "):
            where = f"{source[5:]}: {name}"
        else:
            where = option_of(name)
        raise ConfigError(f"{where}: {error['msg']}") from None
    return Loaded(settings, sources)


MASK = "********"


def masked(name: str, value: Any) -> Any:
    """A setting's value (JSON-ready) as ``config show`` prints it: a secret that is set as
    :data:`MASK`."""
    if value is not None and SECRET.search(name):
        return MASK
    return value


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "-"
    return str(value)


def show(
    config: ConfigFile = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """Print the settings serve would run with, secrets masked, and where each came from.

    Sources: a DTMFGRAPH_* variable, the --config file, or the default."""
    try:
        loaded = load({}, config)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    values = loaded.settings.model_dump(mode="json")
    rows = [(name, masked(name, value), loaded.source(name)) for name, value in values.items()]
    if as_json:
        typer.echo(json.dumps({n: {"value": v, "source": s} for n, v, s in rows}, indent=2))
        return
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    table = Table(title="dtmfgraph settings", title_justify="left")
    table.add_column("setting", no_wrap=True)
    table.add_column("value", overflow="fold")
    table.add_column("from", overflow="fold")
    for name, value, source in rows:
        table.add_row(name, _text(value), source, style=None if source == "default" else "bold")
    Console().print(table)


def register(app: typer.Typer) -> None:
    config_app = typer.Typer(
        name="config",
        help="The settings serve runs with: `config show` prints them.",
        no_args_is_help=True,
    )
    config_app.command("show")(show)
    app.add_typer(config_app)
