"""Real storage faults for the outage tests: a read-only data directory, a full disk (a small
tmpfs filled up), a private PostgreSQL server stopped and started again."""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from ..judges.ports import free_port

NOBODY = 65534


@contextlib.contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """``directory`` (and what is in it) cannot be written: mode 0555; a root test process
    also takes the effective uid of ``nobody`` meanwhile (root ignores modes)."""
    mode = directory.stat().st_mode & 0o777
    directory.chmod(0o555)
    root = os.geteuid() == 0
    if root:
        os.seteuid(NOBODY)
    try:
        yield
    finally:
        if root:
            os.seteuid(0)
        directory.chmod(mode)


@contextlib.asynccontextmanager
async def read_only_store(directory: Path, engine: AsyncEngine) -> AsyncIterator[None]:
    """:func:`read_only` for the SQLite store in ``directory``: in WAL mode a connection already
    open keeps its files open for writing (a directory made read-only stops nothing), so the
    store's connections are closed and it opens them afresh, as after a restart or an error,
    and finds them read-only."""
    with read_only(directory):
        await engine.dispose()
        yield


def _privileged(*cmd: str) -> None:
    """Run ``cmd`` as root (directly, or through ``sudo -n``)."""
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    subprocess.run([*prefix, *cmd], check=True, capture_output=True, timeout=30)


@contextlib.contextmanager
def small_tmpfs(size: str = "4m") -> Iterator[Path]:
    """A fresh tmpfs of ``size`` mounted on a temporary directory (needs root or sudo)."""
    where = Path(tempfile.mkdtemp(prefix="dtmfgraph-full-"))
    _privileged("mount", "-t", "tmpfs", "-o", f"size={size},mode=0777", "tmpfs", str(where))
    try:
        yield where
    finally:
        _privileged("umount", "-l", str(where))
        where.rmdir()


@contextlib.contextmanager
def disk_full(directory: Path) -> Iterator[None]:
    """Fill the file system of ``directory`` until it has no space left (ENOSPC), then free it."""
    filler = directory / "filler"
    chunk = b"\0" * 65536
    with filler.open("wb") as f:
        try:
            while True:
                f.write(chunk)
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    try:
        yield
    finally:
        filler.unlink()


def _pg_bin(name: str) -> str:
    """A PostgreSQL server program: on PATH, or in Debian's versioned directory."""
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
    )
    assert found, f"{name} not found: install the PostgreSQL server (Debian: postgresql)"
    return found


class PrivateServer:
    """A PostgreSQL server of its own (initdb into a temporary directory, a free port), so a
    test can stop and start it without touching anyone else's. Run as ``postgres`` when the
    test runs as root (the server refuses root)."""

    def __init__(self) -> None:
        self.port = free_port(socket.SOCK_STREAM)
        self.dir = Path(tempfile.mkdtemp(prefix="dtmfgraph-pg-"))
        self.data = self.dir / "data"
        self._user = "postgres" if os.geteuid() == 0 else None
        if self._user is not None:
            shutil.chown(self.dir, self._user)

    def _run(self, *cmd: str) -> None:
        done = subprocess.run(
            list(cmd), user=self._user, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, (cmd, done.stdout, done.stderr)

    def init(self) -> None:
        self._run(
            _pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync"
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -F"
        log = str(self.dir / "log")
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-o", options, "-l", log, "-w", "start")

    def stop(self) -> None:
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    async def create_database(self, name: str = "dtmfgraph") -> str:
        """A database on the server; its SQLAlchemy URL."""
        conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres")
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{name}"

    def remove(self) -> None:
        with contextlib.suppress(AssertionError):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivateServer]:
    server = PrivateServer()
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.remove()


@contextlib.contextmanager
def stopped(server: PrivateServer) -> Iterator[None]:
    server.stop()
    try:
        yield
    finally:
        server.start()
