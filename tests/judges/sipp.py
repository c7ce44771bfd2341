"""sipp 3.6 as a real SIP caller and load generator (Debian ``sip-tester``).

:func:`dtmf_scenario` writes our DTMF scenario (``docs/judges.md``): INVITE offering
``0 8 101`` with telephone-event, ACK, RFC 2833 keys replayed from the captures sipp ships
(``play_pcap_audio``, sent to the media address of our SDP answer), keys as in-dialog SIP INFO
``application/dtmf-relay``, then BYE. :func:`run_sipp` runs it (asyncio subprocess, so the
phone under test keeps running in the same loop); exit status 0 means every call passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from .ports import free_udp_port, free_udp_run

PCAP_DIR = Path("/usr/share/sip-tester")
MISSING = (
    "sipp is not installed: run scripts/test, which installs the test judges "
    "(apt-get install -y --no-install-recommends sip-tester)"
)
_PCAP_NAMES = {"#": "pound", "*": "star"}


def require_sipp() -> str:
    """The sipp executable; fails the test loudly when it is missing (never skips)."""
    exe = shutil.which("sipp")
    assert exe is not None and PCAP_DIR.is_dir(), MISSING
    return exe


def dtmf_pcap(key: str) -> Path:
    """sipp's capture of one RFC 2833 key (PT 101, a 280 ms event): ``0``-``9``, ``*``, ``#``."""
    path = PCAP_DIR / f"dtmf_2833_{_PCAP_NAMES.get(key, key)}.pcap"
    assert path.exists(), f"sipp ships no capture for key {key!r} ({path})"
    return path


def free_media_port(host: str = "127.0.0.1", span: int = 4) -> int:
    """An even port with ``span`` free ports from it (sipp's ``-mp`` takes a few)."""
    return free_udp_run(span, 30000, 42000, host)


_HEAD = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="{name}">
  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: [service] <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Subject: dtmfgraph e2e
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 8 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15
      a=ptime:20

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rtd="true" rrs="true"/>
"""

_ACK = """  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: [service] <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: {cseq} ACK
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
"""

_PCAP = """  <nop><action><exec play_pcap_audio="{path}"/></action></nop>
  <pause milliseconds="{pause}"/>
"""

_INFO = """  <send retrans="500">
    <![CDATA[
      INFO [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: [service] <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: {cseq} INFO
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Type: application/dtmf-relay
      Content-Length: [len]

      Signal={key}
      Duration=160
    ]]>
  </send>
  <recv response="200"/>
  <pause milliseconds="{pause}"/>
"""

_TAIL = """  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: [service] <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: {cseq} BYE
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" crlf="true"/>
  <ResponseTimeRepartition value="10, 20, 30, 40, 50, 100, 150, 200"/>
  <CallLengthRepartition value="10, 50, 100, 500, 1000, 5000, 10000"/>
</scenario>
"""


def dtmf_scenario(
    rfc2833_keys: str = "15#",
    info_keys: str = "7*",
    *,
    pcap_pause_ms: int = 400,
    info_pause_ms: int = 200,
    hold_ms: int = 0,
    name: str = "dtmfgraph dtmf caller",
    sdp_address: str | None = None,
) -> str:
    """A UAC scenario: INVITE, ACK, each of ``rfc2833_keys`` replayed as RTP, each of
    ``info_keys`` as an INFO (waiting for its 200), ``hold_ms`` of pause, BYE.

    ``sdp_address``: the IPv4 address the offer's ``c=`` line gives instead of sipp's media
    address, which the RTP still comes from (a caller behind NAT)."""
    head = _HEAD.format(name=name)
    if sdp_address is not None:
        head = head.replace("c=IN IP[media_ip_type] [media_ip]", f"c=IN IP4 {sdp_address}")
    parts = [head, _ACK.format(cseq=1)]
    parts += [_PCAP.format(path=dtmf_pcap(key), pause=pcap_pause_ms) for key in rfc2833_keys]
    cseq = 2
    for key in info_keys:
        parts.append(_INFO.format(cseq=cseq, key=key, pause=info_pause_ms))
        cseq += 1
    if hold_ms:
        parts.append(f'  <pause milliseconds="{hold_ms}"/>\n')
    parts.append(_TAIL.format(cseq=cseq))
    return "".join(parts)


_REINVITE_INACTIVE = """  <send retrans="500">
    <![CDATA[
      INVITE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: [service] <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 INVITE
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687638 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
      a=inactive

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="200"/>
"""

_AWAIT_BYE = """  <recv request="BYE" timeout="{timeout_ms}"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
</scenario>
"""


async def sipp_logged(workdir: Path, prefix: str, timeout: float = 10.0) -> str:
    """What a sipp scenario run in ``workdir`` with ``-trace_logs`` logged after ``prefix``
    (its ``<log>`` action), waiting up to ``timeout`` seconds for it to be written."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        for log in workdir.glob("*_logs.log"):
            for line in log.read_text(errors="replace").splitlines():
                if line.startswith(prefix):
                    return line[len(prefix) :].strip()
        if loop.time() > deadline:
            raise AssertionError(f"sipp logged no {prefix!r} in {workdir}")
        await asyncio.sleep(0.05)


def replacing_invite_head(replaces: str, expect: int = 200) -> str:
    """The start of a UAC scenario whose INVITE carries ``Replaces: <replaces>`` (RFC 3891):
    up to the ACK of the final response, which must be ``expect``."""
    invite = _HEAD.format(name="dtmfgraph replacing caller").replace(
        "      Max-Forwards: 70\n", f"      Max-Forwards: 70\n      Replaces: {replaces}\n", 1
    )
    if expect == 200:
        return invite + _ACK.format(cseq=1)
    invite = invite.split('  <recv response="200"', 1)[0]
    return invite + f'  <recv response="{expect}"/>\n' + _ACK.format(cseq=1)


def silent_caller_scenario(*, hold_first: bool = False, bye_after_ms: int | None = None) -> str:
    """A UAC scenario that never sends RTP: INVITE, ACK, then (``hold_first``) a re-INVITE
    that holds the call (``a=inactive``); then either its own BYE after ``bye_after_ms`` or,
    when that is ``None``, it waits up to 10 s for the far end's BYE and answers it 200."""
    parts = [_HEAD.format(name="dtmfgraph silent caller"), _ACK.format(cseq=1)]
    cseq = 2
    if hold_first:
        parts += [_REINVITE_INACTIVE, _ACK.format(cseq=2)]
        cseq = 3
    if bye_after_ms is None:
        parts.append(_AWAIT_BYE.format(timeout_ms=10_000))
    else:
        parts.append(f'  <pause milliseconds="{bye_after_ms}"/>\n')
        parts.append(_TAIL.format(cseq=cseq))
    return "".join(parts)


@dataclass
class SippResult:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def explain(self) -> str:
        return (
            f"sipp exited {self.returncode}\n"
            f"stdout:\n{self.stdout[-3000:]}\nstderr:\n{self.stderr[-2000:]}"
        )


async def run_sipp(
    scenario: str,
    target: tuple[str, int],
    workdir: Path,
    *,
    calls: int = 1,
    rate: float | None = None,
    limit: int | None = None,
    timeout_s: int = 20,
    service: str = "alice",
    transport: str = "u1",
) -> SippResult:
    """Run sipp with ``scenario`` (XML text) against ``target``; ``calls`` in all, at ``rate``
    calls/s with at most ``limit`` at once; ``transport`` is sipp's ``-t`` (``u1`` UDP, ``t1``
    one TCP connection)."""
    exe = require_sipp()
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "scenario.xml"
    path.write_text(scenario)
    args = [
        exe,
        f"{target[0]}:{target[1]}",
        "-sf",
        str(path),
        "-s",
        service,
        "-i",
        "127.0.0.1",
        "-mi",
        "127.0.0.1",
        "-p",
        str(free_udp_port()),
        "-mp",
        str(free_media_port()),
        "-m",
        str(calls),
        "-nostdin",
        "-timeout",
        f"{timeout_s}s",
        "-timeout_error",
        "-trace_err",
        "-t",
        transport,
    ]
    if rate is not None:
        args += ["-r", str(rate)]
    if limit is not None:
        args += ["-l", str(limit)]
    loop = asyncio.get_running_loop()
    began = loop.time()
    proc = await asyncio.create_subprocess_exec(
        *args,
        cwd=workdir,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s + 10)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return SippResult(
        proc.returncode,
        out.decode(errors="replace"),
        err.decode(errors="replace"),
        loop.time() - began,
    )


_UAS_REJECT = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="reject every INVITE with one final status">
  <recv request="INVITE"/>
  <send><![CDATA[
SIP/2.0 {status} {reason}
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
  <recv request="ACK"/>
</scenario>
"""


def uas_reject_scenario(status: int, reason: str) -> str:
    """A UAS scenario for :func:`sipp_uas`: answer the INVITE with ``status`` and wait for the
    ACK."""
    return _UAS_REJECT.format(status=status, reason=reason)


_UAS_LATE = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="ring, answer late, want ACK and BYE">
  <recv request="INVITE"/>
  <send><![CDATA[
SIP/2.0 180 Ringing
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:bob@[local_ip]:[local_port]>
Content-Length: 0

]]></send>
  <pause milliseconds="{pause_ms}"/>{before_answer}
  <send retrans="500"><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:bob@[local_ip]:[local_port]>
Content-Type: application/sdp
Content-Length: [len]

v=0
o=bob 1 1 IN IP4 [local_ip]
s=-
c=IN IP4 [local_ip]
t=0 0
m=audio [media_port] RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000

]]></send>
  <recv request="ACK"/>
"""


def uas_late_answer_scenario(pause_ms: int, *, log: str | None = None) -> str:
    """A UAS scenario for :func:`sipp_uas`: ring, answer ``pause_ms`` later (the 200 resent
    until the ACK), then insist on the ACK and a BYE (answered 200). ``log``: a line sipp
    logs just before it answers (run it with ``-trace_logs``; see :func:`sipp_logged`)."""
    before = f'\n  <nop><action><log message="{log}"/></action></nop>' if log else ""
    return _UAS_LATE.format(pause_ms=pause_ms, before_answer=before) + _AWAIT_BYE.format(
        timeout_ms=60_000
    )


@contextlib.asynccontextmanager
async def sipp_uas(
    workdir: Path, scenario: str | None = None, *, timeout_s: int = 15, extra: tuple[str, ...] = ()
) -> AsyncIterator[tuple[int, asyncio.subprocess.Process]]:
    """sipp answering one call on a free port: its built-in ``uas`` scenario (answers with SDP,
    sends no RTP, waits for BYE) or ``scenario`` (XML text); ``extra``: more sipp options.
    Yields (port, process); killed on exit if still running. ``await proc.communicate()`` and a
    0 exit mean the call passed."""
    exe = require_sipp()
    port = free_udp_port()
    workdir.mkdir(parents=True, exist_ok=True)
    if scenario is None:
        which = ["-sn", "uas"]
    else:
        path = workdir / "uas.xml"
        path.write_text(scenario)
        which = ["-sf", str(path)]
    proc = await asyncio.create_subprocess_exec(
        *[exe, *which, "-i", "127.0.0.1", "-p", str(port), "-m", "1", "-nostdin"],
        *["-timeout", f"{timeout_s}s", "-timeout_error", *extra],
        cwd=workdir,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield port, proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
