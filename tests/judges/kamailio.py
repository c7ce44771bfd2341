"""Kamailio 5.6 (Debian ``kamailio``) as a real registrar and authenticating proxy.

:class:`Kamailio` writes a small configuration (``docs/judges.md``) and runs it on a loopback
port, UDP and TCP: REGISTER is challenged (401, digest, realm = the To domain) and saved in
memory (usrloc, ``db_mode`` 0), the authentication user must be the AOR's user; a new INVITE is
challenged (407, realm = the From domain), record-routed and relayed to the callee's registered
contacts (404 when it has none); in-dialog requests follow the route set. Every request is
logged to its stderr file, which :meth:`Kamailio.explain` shows when a test fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .certs import Issued
from .ports import free_port, free_udp_port

MODULES = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules")
MISSING = (
    "kamailio is not installed: run scripts/test, which installs the test judges "
    "(apt-get install -y --no-install-recommends kamailio)"
)

_CONFIG = """#!KAMAILIO
debug=2
log_stderror=yes
children=1
tcp_children=1
auto_aliases=no
listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
alias="127.0.0.1:{port}"
mpath="{modules}/"
{tls}loadmodule "kex.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "auth.so"
modparam("usrloc", "db_mode", 0)
modparam("registrar", "min_expires", {min_expires})
modparam("registrar", "max_expires", {max_expires})

request_route {{
  xlog("L_NOTICE", "judge: $rm $ru from $si:$sp (auth user '$au') over $pr\\n");
  if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
  if (has_totag()) {{
    if (loose_route()) {{ t_relay(); exit; }}
    if (is_method("ACK")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
    sl_send_reply("404", "Not here"); exit;
  }}
  if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
  $var(pw) = "";
{passwords}
  if (is_method("REGISTER")) {{
    if (!pv_www_authenticate("$td", "$var(pw)", "0")) {{ www_challenge("$td", "0"); exit; }}
    if ($au != $tU) {{ sl_send_reply("403", "Forbidden auth ID"); exit; }}
    if (!save("location")) {{ sl_reply_error(); exit; }}
    xlog("L_NOTICE", "bound: $tU expires '$hdr(Expires)' contact '$ct'\n");
    exit;
  }}
  if (is_method("INVITE")) {{
    if (!pv_proxy_authenticate("$fd", "$var(pw)", "0")) {{ proxy_challenge("$fd", "0"); exit; }}
    consume_credentials();
    record_route();
  }}
  if (!lookup("location")) {{ sl_send_reply("404", "Not Found"); exit; }}
  t_relay();
}}
"""


_TLS = """enable_tls=yes
listen=tls:127.0.0.1:{tls_port}
loadmodule "tls.so"
modparam("tls", "config", "{tls_config}")
"""

# Kamailio's tls module configuration: our certificate for both sides; peers' certificates are
# checked against the CA (the client side too: our phone's certificate when Kamailio relays to
# its TLS Contact).
_TLS_CONFIG = """[server:default]
method = TLSv1.2+
verify_certificate = no
require_certificate = no
private_key = {key}
certificate = {cert}
ca_list = {ca}

[client:default]
method = TLSv1.2+
verify_certificate = yes
require_certificate = yes
private_key = {key}
certificate = {cert}
ca_list = {ca}
"""


def require_kamailio() -> str:
    """The kamailio executable; fails the test loudly when it is missing (never skips)."""
    exe = shutil.which("kamailio") or (
        "/usr/sbin/kamailio" if Path("/usr/sbin/kamailio").exists() else None
    )
    assert exe is not None and MODULES.is_dir(), MISSING
    return exe


@dataclass
class Kamailio:
    """One running Kamailio. Use ``async with Kamailio(tmp_path / "kam", users) as kam:``.

    ``users`` maps each user name to its password: REGISTERs and INVITEs authenticate as one.
    """

    workdir: Path
    users: dict[str, str] = field(default_factory=dict)
    min_expires: int = 10
    max_expires: int = 3600
    tls: Issued | None = None
    """Its certificate: it then also takes SIP over TLS, on :attr:`tls_port`."""
    ca_file: Path | None = None
    """The CA the certificates of the TLS peers it connects to must chain to."""
    port: int = 0
    tls_port: int = 0
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def domain(self) -> str:
        """``host:port`` to put in AORs and targets."""
        return f"127.0.0.1:{self.port}"

    def uri(self, user: str) -> str:
        return f"sip:{user}@{self.domain}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "kamailio.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def requests(self) -> list[str]:
        """The requests it logged, as ``METHOD uri from host:port (auth user '...') over
        udp|tcp|tls``."""
        return [
            line.split("judge: ", 1)[1] for line in self.log().splitlines() if "judge: " in line
        ]

    def bound(self) -> list[str]:
        """The user of each REGISTER it saved, in order (``Expires: 0`` ones too)."""
        return [
            line.split("bound: ", 1)[1].split()[0]
            for line in self.log().splitlines()
            if "bound: " in line
        ]

    def bindings(self, user: str) -> list[str]:
        """The Contact of each REGISTER of ``user`` it saved with a non-zero Expires."""
        out = []
        for line in self.log().splitlines():
            if f"bound: {user} " in line and "expires '0'" not in line:
                out.append(line.rsplit("contact ", 1)[1].strip("'"))
        return out

    async def wait_bound(self, user: str, timeout: float = 15.0) -> None:
        """Wait until a REGISTER of ``user`` has been saved."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while user not in self.bound():
            if loop.time() > deadline:
                raise AssertionError(f"kamailio saved no binding of {user}\n{self.explain()}")
            await asyncio.sleep(0.05)

    def explain(self) -> str:
        return f"kamailio log (tail):\n{self.log()[-4000:]}"

    def _write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        passwords = "\n".join(
            f'  if ($au == "{user}") {{ $var(pw) = "{password}"; }}'
            for user, password in self.users.items()
        )
        tls = ""
        if self.tls is not None:
            assert self.ca_file is not None, "TLS needs the CA file too"
            tls_config = self.workdir / "tls.cfg"
            tls_config.write_text(
                _TLS_CONFIG.format(key=self.tls.key, cert=self.tls.cert, ca=self.ca_file)
            )
            tls = _TLS.format(tls_port=self.tls_port, tls_config=tls_config)
        path = self.workdir / "kamailio.cfg"
        path.write_text(
            _CONFIG.format(
                port=self.port,
                tls=tls,
                modules=MODULES,
                min_expires=self.min_expires,
                max_expires=self.max_expires,
                passwords=passwords,
            )
        )
        return path

    async def start(self, timeout: float = 10.0) -> None:
        exe = require_kamailio()
        for attempt in range(3):
            self.port = free_udp_port()
            self.tls_port = free_port(socket.SOCK_STREAM) if self.tls is not None else 0
            config = self._write_config()
            with self.log_path.open("ab") as log:
                args = [exe, "-f", str(config), "-DD", "-E", "-m", "32", "-M", "8"]
                args += ["-w", str(self.workdir), "-P", str(self.workdir / "kamailio.pid")]
                self._proc = subprocess.Popen(
                    args,
                    cwd=self.workdir,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                )
            if await self._answers(timeout):
                return
            await self.stop()
            if attempt == 2:
                raise AssertionError(f"kamailio did not come up\n{self.explain()}")

    async def _answers(self, timeout: float) -> bool:
        """Whether it answers an OPTIONS probe within ``timeout`` (it is up and listening)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
            port = sock.getsockname()[1]
            probe = (
                f"OPTIONS sip:probe@{self.domain} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKprobe{port}\r\n"
                "Max-Forwards: 70\r\n"
                f"From: <sip:probe@127.0.0.1:{port}>;tag=p\r\n"
                f"To: <sip:probe@{self.domain}>\r\n"
                f"Call-ID: probe-{port}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            ).encode()
            while loop.time() < deadline:
                if self._proc is None or self._proc.poll() is not None:
                    return False
                sock.sendto(probe, ("127.0.0.1", self.port))
                try:
                    await asyncio.wait_for(loop.sock_recv(sock, 4096), 0.3)
                    return True
                except (TimeoutError, OSError):
                    await asyncio.sleep(0.1)
        return False

    def freeze(self) -> None:
        """Stop every Kamailio process (SIGSTOP): its sockets stay open, nothing answers, as
        a hung server or a path that silently lost its state."""
        self._signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """Let a frozen Kamailio go on (SIGCONT)."""
        self._signal(signal.SIGCONT)

    def _signal(self, sig: signal.Signals) -> None:
        assert self._proc is not None and self._proc.poll() is None, "kamailio is not running"
        os.killpg(self._proc.pid, sig)

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
                os.killpg(proc.pid, signal.SIGCONT)  # a frozen one must run to stop
            for _ in range(50):
                if proc.poll() is not None:
                    break
                await asyncio.sleep(0.1)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    async def __aenter__(self) -> Kamailio:
        await self.start()
        return self

    async def __aexit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        if kind is not None:  # the test failed: show what Kamailio saw
            print(self.explain())
        await self.stop()
