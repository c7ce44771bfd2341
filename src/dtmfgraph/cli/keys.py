"""``dtmfgraph callback-key roll``: a new callback signing key, taking over later."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

keys_app = typer.Typer(
    name="callback-key",
    help="The RSA keys that sign callbacks (kept in the data directory).",
    no_args_is_help=True,
)


@keys_app.command("roll")
def roll(
    data_dir: Annotated[
        Path, typer.Option(help="The data directory of the service (where the keys are).")
    ] = Path("dtmfgraph-data"),
    after: Annotated[
        float,
        typer.Option(
            min=0,
            help="Seconds from now when the new key starts signing (publish it well before: "
            "restart the nodes now; receivers cache the metadata for hours).",
        ),
    ] = 86_400.0,
    grace: Annotated[
        float,
        typer.Option(min=0, help="Keys retired for longer than this are deleted."),
    ] = 86_400.0,
) -> None:
    """Make a new callback key that takes over in AFTER seconds. Until then the old key signs
    and both are published; after, the new one signs and the old one stays published for the
    grace period (DTMFGRAPH_CALLBACK_KEY_GRACE_S)."""
    from ..notify.keystore import roll as roll_key  # noqa: PLC0415

    try:
        path = roll_key(data_dir, after, grace_s=grace)
    except (OSError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"new callback key {path} (restart the service to publish it)")


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app)
