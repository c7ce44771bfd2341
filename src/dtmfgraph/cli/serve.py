"""``dtmfgraph serve`` (the Graph API) and ``dtmfgraph token`` (a development bearer token)."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import secrets
from collections.abc import Callable
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
    media: Annotated[
        str | None,
        typer.Option(help="Media backend: sip (real SIP calls, the default) or loopback (demo)."),
    ] = None,
    sip_host: Annotated[
        str | None, typer.Option(help="Address for SIP and RTP (default 127.0.0.1).")
    ] = None,
    sip_port: Annotated[
        int | None, typer.Option(help="SIP UDP port (default 5060; 0 = any free port).")
    ] = None,
    rtp_ports: Annotated[
        str | None, typer.Option(help="RTP port range FIRST-LAST (default 20000-29999).")
    ] = None,
    sip_public_host: Annotated[
        str | None,
        typer.Option(help="Address written into SDP and Contact (needed with --sip-host 0.0.0.0)."),
    ] = None,
    sip_trunk: Annotated[
        str | None,
        typer.Option(
            help="Where E.164 targets go: HOST[:PORT] (sip:+E164@HOST[:PORT]) or a URI "
            "template with {number}."
        ),
    ] = None,
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
    """Run the Graph calls API (uvicorn) on real SIP calls (or the loopback simulation)."""
    updates: dict[str, object] = {}
    for key, value in {
        "host": host,
        "port": port,
        "data_dir": data_dir,
        "database_url": database_url,
        "media": media,
        "sip_host": sip_host,
        "sip_port": sip_port,
        "rtp_ports": rtp_ports,
        "sip_public_host": sip_public_host,
        "sip_trunk_uri": sip_trunk,
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
    if settings.media not in ("sip", "loopback"):
        typer.echo(
            f"error: unknown media backend {settings.media!r} (use sip or loopback)", err=True
        )
        raise typer.Exit(2)
    if not settings.auth_enabled and not _is_loopback(settings.host):
        typer.echo("error: --no-auth is allowed only on a loopback address", err=True)
        raise typer.Exit(2)
    settings = _ensure_secret(settings)
    asyncio.run(_serve(settings))


async def _serve(settings: Settings) -> None:
    # imported here so that other dtmfgraph commands do not pay for the web stack
    import uvicorn  # noqa: PLC0415

    from ..api import build_media, create_app, mint_token  # noqa: PLC0415
    from ..service.sip_media import SipMedia  # noqa: PLC0415

    try:
        media = build_media(settings)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        if isinstance(media, SipMedia):
            try:
                await media.open()
            except (OSError, ValueError) as exc:
                typer.echo(
                    f"error: cannot start SIP on {settings.sip_host}:{settings.sip_port}: {exc}",
                    err=True,
                )
                raise typer.Exit(2) from None
            sip_host, sip_port = media.sip_address
            typer.echo(f"dtmfgraph: SIP on {media.uri} (UDP {sip_host}:{sip_port})", err=True)
            trunk = settings.sip_trunk_template()
            typer.echo(
                f"dtmfgraph: E.164 targets go to {trunk}"
                if trunk
                else "dtmfgraph: no --sip-trunk: targets must be sip: URIs",
                err=True,
            )
        else:
            typer.echo("dtmfgraph: media is the LOOPBACK simulation (no real calls)", err=True)
        _print_banner(settings, mint_token, real_sip=isinstance(media, SipMedia))
        app = create_app(settings, media)
        config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning")
        await uvicorn.Server(config).serve()
    finally:
        await media.close()


def _print_banner(settings: Settings, mint: Callable[[Settings], str], *, real_sip: bool) -> None:
    base = settings.effective_base_url()
    if settings.auth_enabled:
        token = mint(settings)
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
    if real_sip and settings.sip_trunk_template() is None:
        target = '{"user":{"id":"sip:alice@127.0.0.1:5070"}}'
    else:
        target = '{"phone":{"id":"+14255550100"}}'
    typer.echo(
        "example:\n"
        f"  curl -s {auth_header}-H 'Content-Type: application/json' "
        f"{base}/v1.0/communications/calls "
        '-d \'{"callbackUri":"http://127.0.0.1:9000/cb","requestedModalities":["audio"],'
        f'"targets":[{{"identity":{target}}}]}}\'\n',
        err=True,
    )


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
