"""``serve``'s start behind the gate (``dtmfgraph.api.starting``): what it does once the web
server listens.

The web server listens as soon as the command line is read and checked (``serve``), with the
gate as its app; this task then, in the order ``serve`` always had:

1. imports the API, the store, the service and the media stack in a thread (the event loop keeps
   answering the gate's requests meanwhile: ``/health``, ``/ready``, the OpenID metadata);
2. builds the media backend and the app (a configuration it cannot run with: one ``error:``
   line, exit 2);
3. checks the database (unreachable or refusing: one ``error:`` line, exit 2);
4. opens SIP (a port taken, a bad certificate: one ``error:`` line, exit 2) and prints the
   banner;
5. runs the app's lifespan (migrations, recovery of the last run's calls, the outbox), then
   opens the gate: the requests that waited are served, ``/ready`` says 200.

A failure after the listening socket was opened stops the server; requests waiting at the gate
get 503 (``Retry-After``) and ``serve`` exits with :attr:`Starter.exit_code`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import typer

from ..api.starting import Starting
from ..openid import CACHE_HEADERS, METADATA_PATHS, openid_configuration
from ..settings import Settings
from .preflight import StartError, bind_hint, check_database

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ..service import MediaBackend

log = logging.getLogger(__name__)

Announce = Callable[[Settings, "FastAPI", "MediaBackend"], None]
"""What ``serve`` prints once SIP is open, before the app's lifespan runs (the banner)."""


def early_answers(settings: Settings) -> dict[str, tuple[object, dict[str, str]]]:
    """What the gate answers from the settings alone: the OpenID metadata."""
    doc = openid_configuration(settings.effective_callback_issuer(), settings.effective_base_url())
    return dict.fromkeys(METADATA_PATHS, (doc, CACHE_HEADERS))


def import_the_api(settings: Settings) -> None:
    """Import what the start needs (run in a thread while the gate answers): the app with its
    routes, service and media stack, the database driver, the console."""
    names = ["dtmfgraph.api.app", "dtmfgraph.api.auth", "sqlalchemy.ext.asyncio"]
    if settings.effective_database_url().startswith("sqlite"):
        names.append("sqlalchemy.dialects.sqlite.aiosqlite")
    else:
        names.append("sqlalchemy.dialects.postgresql.asyncpg")
    if settings.console_enabled:
        names += ["dtmfgraph.console", "dtmfgraph.journal"]
    for name in names:
        with contextlib.suppress(ImportError):  # (a driver missing is the database check's)
            importlib.import_module(name)


def freeze_start_up_heap() -> None:
    """Put what start-up made (modules, the app) out of the cyclic collector's sight, as the
    pacer's ``settle_heap`` would (it then finds the heap frozen and does nothing), without its
    full collection: right after the imports that walks every object (~80 ms of CPU) and frees
    nothing; the young generations hold what start-up left behind."""
    gc.collect(1)
    gc.freeze()


class Starter:
    """The start task of one ``serve`` (see the module docstring). :attr:`gate` is the app to
    give the web server; :attr:`server` must be set to that server before it runs."""

    def __init__(self, settings: Settings, announce: Announce) -> None:
        self.settings = settings
        self._announce = announce
        self.gate = Starting(early_answers(settings), self._begin, self.end)
        self.server: Any = None
        self.exit_code = 0
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._cancellable = True
        self._media: MediaBackend | None = None

    async def _begin(self) -> None:
        self._task = asyncio.create_task(self._run(), name="serve start")

    async def end(self) -> None:
        """Stop: before the app's lifespan began, the start is cancelled; once it began, it is
        let finish (a half-started store or service is not left behind) and then ended."""
        task = self._task
        if task is None:
            return
        self._stop.set()
        if self._cancellable:
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    def _fail(self, message: str, code: int = 2) -> None:
        typer.echo(message, err=True)
        self.exit_code = code
        self.gate.fail()
        if self.server is not None:
            self.server.should_exit = True

    async def _run(self) -> None:
        try:
            await self._start()
        except Exception:  # a fault, not a configuration: its traceback, exit 3
            if self.gate.ready:
                log.exception("the service failed while stopping")
            else:
                log.exception("the service could not start")
                self._fail("error: the service could not start (see the log above)", 3)
        finally:
            if not self.gate.ready:
                self.gate.fail()
            if self._media is not None:
                await self._media.close()

    async def _start(self) -> None:
        settings = self.settings
        await asyncio.to_thread(import_the_api, settings)
        from ..api import build_media, create_app  # noqa: PLC0415 (imported just above)

        try:
            self._media = media = build_media(settings)
            app = create_app(settings, media)
        except ValueError as exc:
            self._fail(f"error: {exc}")
            return
        freeze_start_up_heap()
        try:
            await check_database(settings.effective_database_url())
        except StartError as exc:
            self._fail(f"error: {exc}")
            return
        if not await self._open_media(media):
            return
        self._announce(settings, app, media)
        self._cancellable = False
        async with app.router.lifespan_context(app):
            self.gate.open(app)
            await self._stop.wait()

    async def _open_media(self, media: MediaBackend) -> bool:
        """Open SIP (a SIP backend); ``False`` when it cannot be (the error is printed)."""
        from ..service.sip_media import SipMedia  # noqa: PLC0415

        if not isinstance(media, SipMedia):
            return True
        settings = self.settings
        try:
            await media.open()
        except (OSError, ValueError) as exc:
            hint = ""
            if isinstance(exc, OSError):
                hint = ": " + bind_hint(exc, "--sip-port or --sip-tls-port", "--sip-host")
            self._fail(
                f"error: cannot start SIP on {settings.sip_host}:{settings.sip_port}: {exc}{hint}"
            )
            return False
        if settings.sip_register:
            try:
                media.check_registration()
            except ValueError as exc:
                self._fail(f"error: --sip-register: {exc}")
                return False
        return True


__all__ = ["Announce", "Starter", "early_answers", "freeze_start_up_heap", "import_the_api"]
