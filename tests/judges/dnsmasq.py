"""dnsmasq 2.90 (Debian ``dnsmasq-base``) as a real DNS server for SIP host names.

:class:`Dnsmasq` serves the SRV records and addresses a test gives it on a free loopback UDP
port (``--no-resolv --no-hosts``: nothing else), and answers NXDOMAIN for any other name under
``.test``. Every query is logged to its log file (``query[SRV] _sip._udp.pbx.test``).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import dns.asyncresolver
import dns.exception
import dns.resolver

from .ports import free_udp_port

MISSING = (
    "dnsmasq is not installed: run scripts/test, which installs the test judges "
    "(apt-get install -y --no-install-recommends dnsmasq-base)"
)


def require_dnsmasq() -> str:
    """The dnsmasq executable; fails the test loudly when it is missing (never skips)."""
    exe = shutil.which("dnsmasq") or (
        "/usr/sbin/dnsmasq" if Path("/usr/sbin/dnsmasq").exists() else None
    )
    assert exe is not None, MISSING
    return exe


@dataclass
class Dnsmasq:
    """``srv``: (name, target, port, priority, weight) records; ``hosts``: name -> IPv4
    addresses (separated by spaces)."""

    workdir: Path
    srv: list[tuple[str, str, int, int, int]] = field(default_factory=list)
    hosts: dict[str, str] = field(default_factory=dict)
    port: int = 0
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> tuple[str, int]:
        return "127.0.0.1", self.port

    @property
    def log_path(self) -> Path:
        return self.workdir / "dnsmasq.log"

    def queries(self) -> list[str]:
        """``TYPE name`` of each query it got, in order."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        out = []
        for line in text.splitlines():
            if "query[" in line:
                kind, _, rest = line.split("query[", 1)[1].partition("] ")
                out.append(f"{kind} {rest.split(' from ')[0]}")
        return out

    async def start(self) -> None:
        exe = require_dnsmasq()
        self.workdir.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            self.port = free_udp_port()
            args = [exe, "--no-daemon", f"--port={self.port}", "--listen-address=127.0.0.1"]
            args += ["--bind-interfaces", "--no-resolv", "--no-hosts", "--local=/test/"]
            args += [f"--user={getpass.getuser()}", f"--pid-file={self.workdir / 'pid'}"]
            args += ["--log-queries", f"--log-facility={self.log_path}"]
            for name, target, port, priority, weight in self.srv:
                args.append(f"--srv-host={name},{target},{port},{priority},{weight}")
            for name, ips in self.hosts.items():
                args += [f"--host-record={name},{ip}" for ip in ips.split()]
            self._proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=(self.workdir / "stderr.txt").open("ab"),
            )
            if await self._answers():
                return
            await self.stop()
        raise AssertionError(
            "dnsmasq did not come up: " + (self.workdir / "stderr.txt").read_text()
        )

    async def _answers(self) -> bool:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = self.port
        for _ in range(50):
            if self._proc is None or self._proc.poll() is not None:
                return False
            try:
                await resolver.resolve("probe.test", "A", lifetime=0.3)
            except dns.resolver.NXDOMAIN:
                return True
            except dns.exception.DNSException:
                await asyncio.sleep(0.05)
            else:
                return True
        return False

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                await asyncio.wait_for(asyncio.to_thread(proc.wait), 5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait()

    async def __aenter__(self) -> Dnsmasq:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def pbx_domain(workdir: Path, proxy_port: int) -> Dnsmasq:
    """The test domain ``pbx.test``: no address of its own, only an SRV record ``_sip._udp``
    naming a proxy (``proxy.pbx.test``, 127.0.0.1) on ``proxy_port``."""
    return Dnsmasq(
        workdir,
        srv=[("_sip._udp.pbx.test", "proxy.pbx.test", proxy_port, 10, 10)],
        hosts={"proxy.pbx.test": "127.0.0.1"},
    )
