"""What ``dtmfgraph serve`` checks before it starts, so that a bad start is one line.

Each check raises :class:`StartError` whose message names the problem and what to do about it;
``serve`` prints it (``error: ...``) and exits 2, instead of a traceback from deep inside the
web server's start-up: a data directory it cannot write, a database it cannot reach or use,
an HTTP port already taken. (SIP ports and certificate files are checked where the SIP
transport opens them; :func:`bind_hint` words the advice for a port.)
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket

from ..settings import Settings

DATABASE_TIMEOUT_S = 10.0
"""How long the database may take to answer the first connection."""
_URL_HELP = "use postgresql+asyncpg://USER:PASSWORD@HOST:PORT/DATABASE or sqlite+aiosqlite:///PATH"


class StartError(Exception):
    """``serve`` cannot start; the message says why and what to do."""


def data_dir_uses(settings: Settings) -> list[str]:
    """What the service keeps in ``data_dir`` with these settings (empty: it writes nothing
    there)."""
    uses = []
    if settings.database_url is None:
        uses.append("the SQLite database")
    if not (settings.jwt_hs256_secret or settings.rs256_public_key_pem()):
        uses.append("the development token secret")
    if settings.callback_algorithm == "RS256" and not settings.callback_private_key_pem():
        uses.append("the callbacks' signing keys")
    return uses


def check_data_dir(settings: Settings) -> None:
    """The data directory exists (made now if not) and a file can be written in it, when the
    service keeps anything there."""
    uses = data_dir_uses(settings)
    if not uses:
        return
    path = settings.data_dir
    probe = path / f".dtmfgraph-write-test-{os.getpid()}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"x")
        finally:
            os.close(fd)
        probe.unlink()
    except OSError as exc:
        with contextlib.suppress(OSError):
            probe.unlink()
        reason = exc.strerror or str(exc)
        raise StartError(
            f"the data directory {str(path)!r} cannot be written ({reason}); it keeps "
            f"{_and(uses)}. Give a directory this user can write with --data-dir "
            "(or DTMFGRAPH_DATA_DIR), or make this one writable"
        ) from None


def shown_url(url: str) -> str:
    """``url`` with its password masked, for a message."""
    try:
        from sqlalchemy.engine import make_url  # noqa: PLC0415

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL at all: show it as given, it holds no password we know
        return url


async def check_database(url: str, timeout_s: float = DATABASE_TIMEOUT_S) -> None:
    """The database at ``url`` can be reached, and a first connection is accepted."""
    import sqlalchemy as sa  # noqa: PLC0415
    from sqlalchemy.ext.asyncio import create_async_engine  # noqa: PLC0415

    shown = shown_url(url)
    try:
        engine = create_async_engine(url)
    except (ImportError, sa.exc.ArgumentError, ValueError) as exc:
        raise StartError(
            f"--database-url {shown!r} is not a database dtmfgraph can use ({_one_line(exc)}): "
            f"{_URL_HELP}"
        ) from None
    if not engine.url.drivername.startswith(("postgresql", "sqlite")):
        await engine.dispose()
        raise StartError(
            f"--database-url {shown!r}: dtmfgraph runs on PostgreSQL or SQLite only: {_URL_HELP}"
        )
    try:
        async with asyncio.timeout(timeout_s), engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
    except (OSError, TimeoutError) as exc:
        why = "no answer" if isinstance(exc, TimeoutError) else _one_line(exc)
        raise StartError(
            f"cannot reach the database at {shown!r} ({why}): check that the server runs and "
            "that the URL's host and port are right (--database-url)"
        ) from None
    except Exception as exc:  # the server answered but refused: user, password, database...
        exc = getattr(exc, "orig", None) or exc  # the driver's own words
        if engine.url.drivername.startswith("sqlite"):
            raise StartError(
                f"cannot open the SQLite database {engine.url.database!r} ({_one_line(exc)}): "
                "check that its directory exists and that this user can write there "
                "(--database-url, or --data-dir for the default file)"
            ) from None
        raise StartError(
            f"the database at {shown!r} refused the connection ({_one_line(exc)}): check the "
            "URL's user, password and database name, and that the database exists "
            "(--database-url)"
        ) from None
    finally:
        await engine.dispose()


def bind_http(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """The listening socket of the API (handed to the web server), bound now so that a taken
    port is a clear error rather than a log line after start-up; ``reuse_port``: shared with
    the other workers (``SO_REUSEPORT``: the kernel spreads the connections)."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET  # as uvicorn chooses
        sock = socket.create_server(
            (host, port), family=family, backlog=2048, reuse_port=reuse_port
        )
    except OSError as exc:
        raise StartError(
            f"cannot listen for HTTP on {host}:{port} ({_strerror(exc)}): "
            f"{bind_hint(exc, '--port', '--host')}"
        ) from None
    sock.set_inheritable(True)
    return sock


def bind_hint(exc: OSError, port_option: str, host_option: str) -> str:
    """What to do when binding a port failed with ``exc``."""
    if exc.errno == errno.EADDRINUSE:
        return f"another process uses that port: stop it, or choose another with {port_option}"
    if exc.errno == errno.EACCES:
        return f"ports below 1024 need privileges: choose a higher one with {port_option}"
    unknown = (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT, socket.EAI_NONAME)
    if exc.errno in unknown or isinstance(exc, socket.gaierror):
        return f"no such address on this machine: check {host_option}"
    return f"check {host_option} and {port_option}"


def _strerror(exc: OSError) -> str:
    if exc.errno and exc.errno > 0:  # (a name that does not resolve has a negative one)
        return os.strerror(exc.errno)
    return (exc.strerror or _one_line(exc)).split(" (while attempting", 1)[0]


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


__all__ = [
    "StartError",
    "bind_hint",
    "bind_http",
    "check_data_dir",
    "check_database",
    "data_dir_uses",
    "shown_url",
]
