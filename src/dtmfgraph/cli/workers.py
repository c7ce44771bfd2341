"""``dtmfgraph serve --workers N``: one supervisor, N node processes on this machine.

One ``serve`` process runs on one core (its event loop carries the API, the store, the SIP
stack and every call's media). To use every core of a machine, the supervisor starts ``N``
full nodes sharing one PostgreSQL database, as the design already lets nodes on several
machines do (a request about a live call is forwarded to the node that carries it over
``LISTEN``/``NOTIFY``; a node that dies is noticed by its heartbeat and its calls are ended by
the others). Each worker ``i`` gets:

- its node id: the base id (``--node-id``, default ``HOST:PORT``) with ``/wI`` appended;
- the HTTP port, shared: each worker listens on it with ``SO_REUSEPORT``, and the kernel
  spreads new connections over them (the supervisor holds the port bound, not listening, so
  nothing else takes it while a worker restarts);
- its own SIP port: ``--sip-port + i`` (and ``--sip-tls-port + i``; ``0`` stays ``0``), so
  worker 0 takes the configured port, where a registration and calls from a trunk arrive;
- its own slice of ``--rtp-ports`` (split evenly);
- optionally a private loopback port, ``--workers-private-port + i``, serving the same app
  (each worker's own ``/metrics`` to scrape).

The supervisor prepares the database once (migrations) before the workers start, restarts a
worker that dies (after 1, 2, 4 ... 30 s; a worker that ran a minute starts again at once), and
passes SIGTERM and SIGINT on to every worker for a clean stop (each ends its calls), then exits.
A worker refusing its settings on its first start (exit code 2) stops them all with code 2.

The workers run ``python -m dtmfgraph.cli.workers``: the settings, resolved once by the
supervisor (flags, environment, ``--config`` file, the dev secret), arrive as JSON on the
worker's standard input, never on a command line. SQLite is refused with more than one worker
(see :data:`SQLITE_REFUSAL`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import typer

from ..settings import Settings
from .preflight import StartError, bind_hint

SQLITE_REFUSAL = (
    "--workers N>1 needs PostgreSQL (--database-url postgresql+asyncpg://...): on the SQLite "
    "file a request about a call reaches whichever worker the kernel picks, and only "
    "PostgreSQL carries it to the call's worker (LISTEN/NOTIFY) and hands each notification to "
    "one worker; run one worker on SQLite"
)
"""Why ``--workers`` > 1 is refused on SQLite (printed as one ``error:`` line, exit code 2)."""
BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
"""How long a worker that died waits before it is started again, by deaths in a row."""
STEADY_S = 60.0
"""A worker that ran this long before it died is restarted at once (its backoff starts over)."""
STOP_TIMEOUT_S = 45.0
"""How long the workers have to stop after SIGTERM before they are killed."""
_TICK_S = 0.2


class WorkersError(ValueError):
    """``--workers`` cannot be used with these settings; the message says why."""


def count_of(text: str | int) -> int:
    """The number of workers ``--workers`` asks for: a number ≥ 1, or ``auto`` (the CPUs this
    process may run on)."""
    if isinstance(text, int):
        value = text
    elif str(text).strip().lower() == "auto":
        return cpus()
    else:
        try:
            value = int(str(text).strip())
        except ValueError:
            raise WorkersError(f"--workers {text!r}: give a number (1, 2, ...) or auto") from None
    if value < 1:
        raise WorkersError(f"--workers {value}: give at least 1")
    return value


def cpus() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def rtp_slices(text: str, n: int) -> list[str]:
    """``text`` (``FIRST-LAST``) split into ``n`` ranges of even size, one per worker."""
    from ..media.udp import PortRange  # noqa: PLC0415 (the supervisor alone needs it)

    try:
        ports = PortRange.parse(text, even=True)
    except ValueError as exc:
        raise WorkersError(f"--rtp-ports: {exc}") from None
    first, last, evens = ports.first + ports.first % 2, ports.last, len(ports)  # RTP on even ports
    if evens < n:
        raise WorkersError(
            f"--rtp-ports {text}: {evens} RTP port(s) for {n} workers; give a wider range"
        )
    size = evens // n
    return [
        f"{first + 2 * size * i}-{(first + 2 * size * (i + 1) - 1) if i < n - 1 else last}"
        for i in range(n)
    ]


def worker_settings(settings: Settings, n: int, port: int) -> list[Settings]:
    """The settings of each of ``n`` workers (see the module docstring); ``port`` is the HTTP
    port they share (the one the supervisor holds, when ``--port 0`` picked one)."""
    base = settings.model_copy(update={"port": port}).effective_node_id()
    rtp = rtp_slices(settings.rtp_ports, n)
    sip = [settings.sip_port + i if settings.sip_port else 0 for i in range(n)]
    tls = [settings.sip_tls_port + i if settings.sip_tls_port else 0 for i in range(n)]
    if settings.media == "sip" and settings.sip_tls_cert_file is not None:
        clash = set(sip) & set(tls) - {0}
        if clash:
            raise WorkersError(
                f"--workers {n}: SIP ports {sip[0]}-{sip[-1]} and TLS ports {tls[0]}-{tls[-1]} "
                f"overlap ({min(clash)}); give --sip-tls-port at least {sip[-1] + 1}"
            )
    return [
        settings.model_copy(
            update={
                "port": port,
                "node_id": f"{base}/w{i}",
                "sip_port": sip[i],
                "sip_tls_port": tls[i],
                "rtp_ports": rtp[i],
                "console_enabled": False,  # its logins and sessions live in one process
            }
        )
        for i in range(n)
    ]


def reserve_port(host: str, port: int) -> socket.socket:
    """The HTTP port, bound with ``SO_REUSEPORT`` but not listening: it stays ours while a
    worker restarts, connections go only to the workers' listening sockets."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StartError(
            f"cannot listen for HTTP on {host}:{port} ({exc.strerror or exc}): "
            f"{bind_hint(exc, '--port', '--host')}"
        ) from None
    return sock


@dataclass
class Worker:
    """One worker process and its restart bookkeeping."""

    index: int
    settings: Settings
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    starts: int = 0
    deaths: int = 0
    due: float = 0.0
    """When it is to be started again (after a death)."""


class Supervisor:
    """Starts the workers, restarts those that die, stops them all on SIGTERM/SIGINT."""

    def __init__(
        self, workers: list[Worker], event_loop: str, private_port: int = 0, hold: Any = None
    ) -> None:
        self.workers = workers
        self.event_loop = event_loop
        self.private_port = private_port
        self._hold = hold
        self._stop: int | None = None

    def command(self, worker: Worker) -> list[str]:
        return [sys.executable, "-m", "dtmfgraph.cli.workers", "--worker", str(worker.index)]

    def start(self, worker: Worker) -> None:
        payload = {
            "settings": json.loads(worker.settings.model_dump_json()),
            "index": worker.index,
            "loop": self.event_loop,
            "private_port": self.private_port + worker.index if self.private_port else 0,
            "banner": worker.index == 0 and worker.starts == 0,
        }
        proc = subprocess.Popen(  # its own process group: a terminal's ^C reaches us alone
            self.command(worker), stdin=subprocess.PIPE, process_group=0
        )
        assert proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write(json.dumps(payload).encode())
            proc.stdin.close()
        worker.proc, worker.started_at = proc, time.monotonic()
        worker.starts += 1

    def run(self) -> int:
        """Supervise until told to stop; the exit code."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        for worker in self.workers:
            self.start(worker)
        pids = ", ".join(f"w{w.index} pid {w.proc.pid}" for w in self.workers if w.proc)
        _say(f"{len(self.workers)} workers ({pids}); supervisor pid {os.getpid()}")
        code = 0
        while self._stop is None:
            time.sleep(_TICK_S)
            now = time.monotonic()
            for worker in self.workers:
                if worker.proc is None:
                    if now >= worker.due and self._stop is None:
                        self.start(worker)
                        _say(f"worker {worker.index} started again (pid {_pid(worker)})")
                    continue
                rc = worker.proc.poll()
                if rc is None:
                    continue
                worker.proc = None
                if rc == 2 and worker.starts == 1 and self._stop is None:
                    _say(f"worker {worker.index} refused to start (exit code 2); stopping")
                    self._stop, code = signal.SIGTERM, 2
                    break
                ran = now - worker.started_at
                worker.deaths = 0 if ran >= STEADY_S else worker.deaths + 1
                wait = BACKOFF_S[min(worker.deaths, len(BACKOFF_S)) - 1] if worker.deaths else 0.0
                worker.due = now + wait
                _say(
                    f"worker {worker.index} ({worker.settings.node_id}) exited "
                    f"({_how(rc)}) after {ran:.0f} s; starting it again in {wait:g} s"
                )
        self._stop_all(self._stop)
        if self._hold is not None:
            self._hold.close()
        return code

    def _on_signal(self, sig: int, _frame: object) -> None:
        if self._stop is None:
            self._stop = sig
        else:  # a second ^C: do not wait any longer
            for worker in self.workers:
                if worker.proc is not None:
                    with contextlib.suppress(ProcessLookupError):
                        worker.proc.kill()

    def _stop_all(self, sig: int) -> None:
        running = [w.proc for w in self.workers if w.proc is not None]
        for proc in running:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM if sig == signal.SIGINT else sig)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for proc in running:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _say(f"worker pid {proc.pid} did not stop in {STOP_TIMEOUT_S:g} s; killing it")
                proc.kill()
                proc.wait()


def count_for(settings: Settings) -> int:
    """How many workers to run with ``settings`` (``workers``): ``WorkersError`` for more than
    one on SQLite; ``auto`` there is one worker (said on stderr)."""
    n = count_of(settings.workers)
    if n > 1 and settings.effective_database_url().startswith("sqlite"):
        if str(settings.workers).strip().lower() != "auto":
            raise WorkersError(SQLITE_REFUSAL)
        _say("--workers auto: one worker on SQLite (several need PostgreSQL)")
        return 1
    return n


def supervise(settings: Settings, n: int, event_loop: str) -> int:
    """``serve --workers N`` (N > 1, on PostgreSQL): run the supervisor; its exit code."""
    hold = reserve_port(settings.host, settings.port)
    port = int(hold.getsockname()[1])
    try:
        workers = [Worker(i, s) for i, s in enumerate(worker_settings(settings, n, port))]
        _prepare_database(settings.effective_database_url())
    except BaseException:
        hold.close()
        raise
    for w in workers:
        s = w.settings
        sip = "" if s.media != "sip" else f", SIP {s.sip_host}:{s.sip_port or 'any'}"
        rtp = "" if s.media != "sip" else f", RTP {s.rtp_ports}"
        _say(f"worker {w.index}: node {s.node_id}{sip}{rtp}")
    private = settings.workers_private_port
    if private:
        _say(
            f"each worker's own API and /metrics on http://127.0.0.1:{private}"
            f"-{private + n - 1} (worker I at {private} + I)"
        )
    else:
        _say(
            f"HTTP port {port} shared by the {n} workers (SO_REUSEPORT); /metrics there is the "
            "worker that takes the connection (--workers-private-port: one port each)"
        )
    return Supervisor(workers, event_loop, private, hold).run()


def _prepare_database(url: str) -> None:
    """The schema migrated once, before the workers start (they would race to create it)."""
    import asyncio  # noqa: PLC0415

    from ..store import SqlRepository, upgrade  # noqa: PLC0415
    from .preflight import check_database  # noqa: PLC0415

    async def prepare() -> None:
        await check_database(url)
        repo = SqlRepository(url)
        try:
            await upgrade(repo.engine)
        finally:
            await repo.close()

    asyncio.run(prepare())


def _say(text: str) -> None:
    typer.echo(f"dtmfgraph: {text}", err=True)


def _pid(worker: Worker) -> int:
    return worker.proc.pid if worker.proc is not None else 0


def _how(rc: int) -> str:
    if rc < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-rc).name}"
    return f"exit code {rc}"


def _die_with_parent() -> None:
    """Linux: this worker gets SIGTERM when the supervisor dies (even ``kill -9``)."""
    with contextlib.suppress(Exception):
        import ctypes  # noqa: PLC0415

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
        if os.getppid() == 1:  # the supervisor is already gone
            os.kill(os.getpid(), signal.SIGTERM)


def worker_main() -> None:
    """A worker: its settings from standard input, then ``serve``'s node on them."""
    from . import loops  # noqa: PLC0415
    from .limits import raise_open_file_limit  # noqa: PLC0415
    from .serve import _log_to_stderr, _serve  # noqa: PLC0415

    _die_with_parent()
    payload = json.loads(sys.stdin.read())
    settings = Settings(**payload["settings"])
    index = int(payload["index"])
    _log_to_stderr(settings.log_level, tag=f"w{index}")
    raise_open_file_limit()
    serving = _serve(
        settings,
        payload["loop"],
        reuse_port=True,
        banner=bool(payload["banner"]),
        private_port=int(payload["private_port"]) or None,
    )
    try:
        loops.run(serving, payload["loop"])
    except typer.Exit as exc:  # a start-up error, already printed
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    worker_main()
