"""``dtmfgraph notifications list | redeliver``: the outbox's dead letters, seen and sent again."""

from __future__ import annotations

import asyncio
import datetime
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

if TYPE_CHECKING:
    from ..store import SqlRepository

T = TypeVar("T")

notifications_app = typer.Typer(
    name="notifications",
    help="The notification outbox: list what was not delivered, send dead ones again.",
    no_args_is_help=True,
)

DataDir = Annotated[
    Path | None,
    typer.Option(help="The service's data directory (its SQLite file); default as serve's."),
]
DatabaseUrl = Annotated[
    str | None,
    typer.Option(help="The service's database URL (default: the SQLite file in the data dir)."),
]


def _url(data_dir: Path | None, database_url: str | None) -> str:
    from ..settings import Settings  # noqa: PLC0415 (light imports for the CLI)

    over: dict[str, Any] = {}
    if data_dir is not None:
        over["data_dir"] = data_dir
    if database_url is not None:
        over["database_url"] = database_url
    settings = Settings(**over)
    url = settings.effective_database_url()
    sqlite_file = settings.data_dir / "dtmfgraph.sqlite3"
    if not settings.database_url and not sqlite_file.exists():
        typer.echo(f"error: no database in {settings.data_dir} (give --data-dir)", err=True)
        raise typer.Exit(2)
    return url


def _run(url: str, work: Callable[[SqlRepository], Awaitable[T]]) -> T:
    from sqlalchemy.exc import SQLAlchemyError  # noqa: PLC0415

    from ..service.errors import StoreUnavailableError  # noqa: PLC0415
    from ..store import SqlRepository  # noqa: PLC0415

    async def go() -> T:
        repo = SqlRepository(url)
        try:
            return await work(repo)
        finally:
            await repo.close()

    try:
        return asyncio.run(go())
    except (SQLAlchemyError, OSError, StoreUnavailableError) as exc:
        cause = exc.__cause__ if isinstance(exc, StoreUnavailableError) else exc
        first = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
        typer.echo(
            f"error: the database did not answer as expected ({first}); is the URL right, and "
            "has `dtmfgraph serve` run once since the upgrade (it updates the schema)?",
            err=True,
        )
        raise typer.Exit(2) from None


def _when(t: float | None) -> str:
    if t is None:
        return "-"
    return datetime.datetime.fromtimestamp(t, datetime.UTC).isoformat(timespec="seconds")


@notifications_app.command("list")
def list_(
    dead: Annotated[
        bool, typer.Option("--dead/--pending", help="Dead letters (default), or those pending.")
    ] = True,
    call: Annotated[str | None, typer.Option(help="Only this call's notifications.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many (oldest first).")] = 1000,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """List the notifications not delivered: one line each (id, call, attempts, written,
    callback URI, last error), oldest first."""
    url = _url(data_dir, database_url)
    rows = _run(url, lambda repo: repo.undelivered(dead=dead, call_id=call, limit=limit))
    for r in rows:
        if as_json:
            keep = ("id", "call_id", "state", "attempts", "created_at", "callback_uri")
            out = {k: r[k] for k in keep} | {"last_error": r["last_error"]}
            typer.echo(json.dumps(out, separators=(",", ":")))
        else:
            typer.echo(
                f"{r['id']}\t{r['call_id']}\t{r['state']}\t{r['attempts']} attempt(s)\t"
                f"{_when(r['created_at'])}\t{r['callback_uri']}\t{r['last_error'] or '-'}"
            )
    if not as_json:
        typer.echo(f"{len(rows)} {'dead' if dead else 'pending'} notification(s)", err=True)


@notifications_app.command("redeliver")
def redeliver(
    ids: Annotated[
        list[int] | None, typer.Argument(help="Dead notifications to send again (ids).")
    ] = None,
    call: Annotated[str | None, typer.Option(help="All dead notifications of this call.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every dead notification.")] = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Queue dead notifications again, due now, with a new retry window: the given ones (and
    the dead ones of their calls after them, which waited behind them), a call's, or all. A
    running `dtmfgraph serve` sends them within a second, in order per call."""
    if not ids and call is None and not all_:
        typer.echo("error: name notification ids, --call CALL_ID or --all", err=True)
        raise typer.Exit(2)
    import time  # noqa: PLC0415

    url = _url(data_dir, database_url)
    n = _run(url, lambda repo: repo.redeliver(ids=ids or None, call_id=call, now=time.time()))
    typer.echo(f"{n} notification(s) queued again")


def register(app: typer.Typer) -> None:
    app.add_typer(notifications_app)
