"""``dtmfgraph serve`` (the Graph API) and ``dtmfgraph token`` (a development bearer token)."""

from __future__ import annotations

import ipaddress
import os
import secrets
from pathlib import Path
from typing import Annotated

import typer

from ..settings import Settings

SECRET_FILE = "jwt-secret"


def _ensure_secret(settings: Settings) -> Settings:
    """Use the configured HS256 secret, or one kept in ``data_dir`` (created on first use)."""
    if settings.jwt_hs256_secret or settings.jwt_rs256_public_key:
        return settings
    path = settings.data_dir / SECRET_FILE
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
    return settings.model_copy(update={"jwt_hs256_secret": path.read_text().strip()})


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


DataDir = Annotated[
    Path | None, typer.Option(help="Where the SQLite file and the dev secret live.")
]


def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port.")] = None,
    data_dir: DataDir = None,
    database_url: Annotated[
        str | None,
        typer.Option(help="e.g. postgresql+asyncpg://user@127.0.0.1/db (default: SQLite file)."),
    ] = None,
    media: Annotated[str, typer.Option(help="Media backend: loopback (sip: coming).")] = "loopback",
    loopback_speed: Annotated[
        float | None, typer.Option(help="Loopback time scale (0.1 = ten times faster).")
    ] = None,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="Accept requests without a token (loopback only).")
    ] = False,
    callback_allow_host: Annotated[
        list[str] | None,
        typer.Option(help="Host allowed as an http:// callbackUri (repeatable)."),
    ] = None,
    incoming_callback_uri: Annotated[
        str | None, typer.Option(help="Where incoming calls are announced.")
    ] = None,
    keepalive_timeout: Annotated[
        float | None, typer.Option(help="Seconds without keepAlive before a call ends.")
    ] = None,
) -> None:
    """Run the Graph calls API (uvicorn)."""
    # imported here so that other dtmfgraph commands do not pay for the web stack
    import uvicorn  # noqa: PLC0415

    from ..api import create_app, mint_token  # noqa: PLC0415

    updates: dict[str, object] = {"media": media}
    for key, value in {
        "host": host,
        "port": port,
        "data_dir": data_dir,
        "database_url": database_url,
        "loopback_speed": loopback_speed,
        "callback_allowed_hosts": callback_allow_host,
        "incoming_callback_uri": incoming_callback_uri,
        "keepalive_timeout_s": keepalive_timeout,
    }.items():
        if value is not None:
            updates[key] = value
    if no_auth:
        updates["auth_enabled"] = False
    settings = Settings().model_copy(update=updates)
    if media != "loopback":
        typer.echo(f"error: media backend {media!r} is not available yet (use loopback)", err=True)
        raise typer.Exit(2)
    if not settings.auth_enabled and not _is_loopback(settings.host):
        typer.echo("error: --no-auth is allowed only on a loopback address", err=True)
        raise typer.Exit(2)
    settings = _ensure_secret(settings)
    base = settings.effective_base_url()
    if settings.auth_enabled:
        token = mint_token(settings)
        typer.echo(f"dtmfgraph: Graph API on {base}/v1.0 and {base}/beta", err=True)
        typer.echo(f"token (24 h, dev app):\n{token}\n", err=True)
        auth_header = f'-H "Authorization: Bearer {token}" '
    else:
        typer.secho(
            "WARNING: AUTHENTICATION IS DISABLED: anyone on this machine can place calls.",
            fg=typer.colors.RED,
            bold=True,
            err=True,
        )
        auth_header = ""
    typer.echo(
        "example:\n"
        f"  curl -s {auth_header}-H 'Content-Type: application/json' "
        f"{base}/v1.0/communications/calls "
        '-d \'{"callbackUri":"http://127.0.0.1:9000/cb","requestedModalities":["audio"],'
        '"targets":[{"identity":{"phone":{"id":"+14255550100"}}}]}\'\n',
        err=True,
    )
    app = create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")


def token(
    tenant: Annotated[
        str, typer.Option(help="tid claim.")
    ] = "00000000-0000-0000-0000-000000000000",
    app_id: Annotated[str, typer.Option("--app", help="appid claim.")] = "dtmfgraph-dev-app",
    role: Annotated[
        list[str] | None, typer.Option(help="roles claim (repeatable; default both roles).")
    ] = None,
    lifetime: Annotated[int, typer.Option(help="Seconds.")] = 24 * 3600,
    data_dir: DataDir = None,
) -> None:
    """Print a development bearer token that ``dtmfgraph serve`` accepts."""
    from ..api import mint_token  # noqa: PLC0415

    settings = Settings()
    if data_dir is not None:
        settings = settings.model_copy(update={"data_dir": data_dir})
    settings = _ensure_secret(settings)
    roles = tuple(role) if role else ("Calls.Initiate.All", "Calls.AccessMedia.All")
    typer.echo(
        mint_token(settings, tenant_id=tenant, app_id=app_id, roles=roles, lifetime_s=lifetime)
    )


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("token")(token)
