"""``dtmfgraph call`` and ``dtmfgraph answer`` as real processes, against baresip and each other."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dtmfgraph.tones import synthesize
from dtmfgraph.tones.wav import encode_wav, parse_wav

from ..judges import spandsp
from ..judges.baresip import Baresip
from ..judges.certs import TestCa
from ..judges.kamailio import Kamailio
from ..judges.ports import silent_udp_port

# The commands as the lead wires them into ``dtmfgraph``; run through the module so these tests
# do not depend on that wiring.
SIP_CLI = [sys.executable, "-m", "dtmfgraph"]


async def _run(
    *args: str, timeout: float = 30, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """Run the CLI; ``env`` adds to the environment (any ``DTMFGRAPH_*`` of ours removed)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DTMFGRAPH_")}
    environment.update(env or {})
    proc = await asyncio.create_subprocess_exec(
        *SIP_CLI, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _answer_process(*args: str) -> asyncio.subprocess.Process:
    """``dtmfgraph answer --port 0 --count 1 --json`` with ``args``, running (stdout piped)."""
    return await asyncio.create_subprocess_exec(
        *SIP_CLI,
        *("answer", "--port", "0", "--count", "1", "--json", *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@contextlib.asynccontextmanager
async def _answering(*args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """:func:`_answer_process`, killed on the way out if it is still running."""
    proc = await _answer_process(*args)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _rest_of(proc: asyncio.subprocess.Process) -> list[dict[str, Any]]:
    """The JSON objects ``answer`` prints until it stops."""
    rest, _ = await asyncio.wait_for(proc.communicate(), 20)
    return [json.loads(line) for line in rest.decode().splitlines()]


async def test_call_sends_keys_to_baresip(tmp_path: Path) -> None:
    async with Baresip(tmp_path / "bs") as bs:
        code, out, err = await _run("call", bs.uri, "--send", "159#", "--method", "rfc4733")
        assert code == 0, err
        await bs.wait_for(lambda b: b.rfc4733_keys() == "159#", 5, "keys 159#")
        code, out2, err = await _run(
            "call", bs.uri, "--send", "26", "--method", "sipinfo", "--json"
        )
        assert code == 0, err
        await bs.wait_for(lambda b: b.info_keys() == "26", 5, "INFO keys 26")
    assert "answered" in out and "sent 159# by rfc4733" in out and "local-bye" in out
    events = [json.loads(line) for line in out2.splitlines()]
    assert [e["event"] for e in events] == ["calling", "answered", "sent", "ended"]
    assert events[2]["method"] == "sipinfo" and events[2]["keys_sent"] == 2


async def test_call_to_nobody_fails_with_the_reason() -> None:
    with silent_udp_port() as port:
        code, out, _ = await _run(
            "call", f"sip:x@127.0.0.1:{port}", "--send", "1", "--timeout", "1"
        )
    assert code == 1
    assert "call failed" in out and "408" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["call", "sip:a@127.0.0.1:5999", "--send", "12X"], "unknown DTMF key"),
        (["call", "sip:a@127.0.0.1:5999", "--send", "1wx"], "unknown DTMF key"),
        (["call", "sip:a@127.0.0.1:5999", "--delay", "-1"], "--delay"),
        (["call", "sip:a@127.0.0.1:5999", "--record", "/nonexistent/x.wav"], "--record"),
        (["answer", "--record-dir", "/nonexistent"], "not a directory"),
        (["answer", "--allow-from", "10.0.0.0/8", "--allow-from", "x"], "'x' is not a network"),
        (["call", "nonsense", "--send", "1"], "bad SIP URI"),
        (["call", "sip:a@127.0.0.1:5999", "--send", "F", "--method", "inband"], "flash"),
        (["call", "sip:a@127.0.0.1:5999", "--tone-ms", "0"], "--tone-ms"),
        (["call", "sip:a@127.0.0.1:5999", "--timeout", "-1"], "--timeout"),
        (["answer", "--port", "70000"], "--port"),
        (["answer", "--count", "0"], "--count"),
        (["answer", "--rtp-ports", "x"], "--rtp-ports"),
        (["answer", "--tls-key-file", "k.pem"], "--tls-key-file needs --tls-cert-file"),
        (["call", "sip:a@127.0.0.1:5999", "--tls-cert-file", "nope.pem"], "cannot use the TLS"),
        (["answer", "--tls-cert-file", "nope.pem", "--tls-port", "70000"], "--tls-port"),
    ],
)
async def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    code, _, err = await _run(*args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err


async def test_answer_prints_the_keys_of_our_own_call() -> None:
    async with _answering() as proc:
        assert proc.stdout is not None
        ready = json.loads(await asyncio.wait_for(proc.stdout.readline(), 20))
        code, _, err = await _run(
            "call",
            ready["uri"].replace("dtmfgraph@", "bob@"),
            "--send",
            "4*",
            "--method",
            "inband",
            "--listen",
            "0.3",
        )
        assert code == 0, err
        events = await _rest_of(proc)
    keys = [(e["key"], e["method"]) for e in events if e["event"] == "key"]
    assert keys == [("4", "inband"), ("*", "inband")]
    ended = [e for e in events if e["event"] == "ended"]
    assert len(ended) == 1 and ended[0]["reason"] == "remote-bye" and ended[0]["keys"] == "4*"
    assert events[-1]["event"] == "summary" and events[-1]["answered"] == 1


async def test_call_waits_for_the_greeting_and_pauses_where_the_dial_string_says() -> None:
    """An IVR test: ``--delay`` before the first key, ``W`` (1 s) and ``w`` (0.5 s) pauses
    between keys, as Asterisk's SendDTMF reads them; the far end hears the keys that far
    apart."""
    async with _answering() as proc:
        assert proc.stdout is not None
        ready = json.loads(await asyncio.wait_for(proc.stdout.readline(), 20))
        answered_line = asyncio.ensure_future(proc.stdout.readline())
        code, out, err = await _run(
            "call",
            ready["uri"].replace("dtmfgraph@", "ivr@"),
            *("--send", "1W2w3", "--delay", "0.5", "--method", "rfc4733", "--listen", "0.3"),
            "--json",
        )
        assert code == 0, err
        answered = json.loads(await answered_line)
        events = await _rest_of(proc)
    assert answered["event"] == "answered"
    ours = [json.loads(line) for line in out.splitlines()]
    steps = [(e["event"], e.get("keys") or e.get("seconds")) for e in ours[2:-1]]
    assert steps == [("pause", 0.5), ("sent", "1"), ("pause", 1.0), ("sent", "2"),
                     ("pause", 0.5), ("sent", "3")]  # fmt: skip
    at = {e["key"]: e["at"] for e in events if e["event"] == "key"}
    assert list(at) == ["1", "2", "3"]
    # each key 100 ms, then the 100 ms gap, then the pause
    assert 1.05 <= at["2"] - at["1"] <= 1.45, at
    assert 0.55 <= at["3"] - at["2"] <= 0.95, at


async def test_answer_registers_and_call_authenticates_through_kamailio(tmp_path: Path) -> None:
    kam = Kamailio(tmp_path / "kam", {"bot": "bot-secret", "alice": "alice-secret"})
    await kam.start()
    secret = tmp_path / "bot-password"
    secret.write_text("bot-secret\n")
    aor = kam.uri("bot")
    proc = await _answer_process(
        *("--register", aor, "--registrar", f"sip:{kam.domain};transport=tcp"),  # over TCP
        *("--auth-user", "bot", "--auth-password-file", str(secret)),
    )
    assert proc.stdout is not None
    try:
        registered = json.loads(await asyncio.wait_for(proc.stdout.readline(), 20))
        assert registered == {"event": "registered", "aor": aor, "expires": 3600}
        json.loads(await asyncio.wait_for(proc.stdout.readline(), 5))  # ready
        call = ("call", aor, "--send", "7#", "--method", "sipinfo", "--listen", "0.2")
        code, out, _ = await _run(*call, "--timeout", "5")
        assert code == 1 and "407" in out and "no credentials" in out, out
        env_password = {"DTMFGRAPH_SIP_AUTH_PASSWORD": "alice-secret"}
        code, out, err = await _run(*call, "--auth-user", "alice", env=env_password)
        assert code == 0, out + err
        rest, _ = await asyncio.wait_for(proc.communicate(), 20)
        assert proc.returncode == 0
    except BaseException:
        print(kam.explain())
        raise
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await kam.stop()
    events = [json.loads(line) for line in rest.decode().splitlines()]
    assert [(e["key"], e["method"]) for e in events if e["event"] == "key"] == [
        ("7", "sipinfo"),
        ("#", "sipinfo"),
    ]
    registers = [r for r in kam.requests() if r.startswith("REGISTER") and "'bot'" in r]
    assert registers and all(r.endswith("over tcp") for r in registers), registers
    # it stopped: its binding was removed (its last REGISTER saved had Expires: 0)
    bound = [line for line in kam.log().splitlines() if "bound: bot " in line]
    assert bound and "expires '0' " in bound[-1], bound


async def test_answer_exits_1_when_registration_fails(tmp_path: Path) -> None:
    kam = Kamailio(tmp_path / "kam", {"bot": "bot-secret"})
    await kam.start()
    try:
        code, out, _ = await _run(
            *("answer", "--port", "0", "--register", kam.uri("bot"), "--auth-user", "bot"),
            env={"DTMFGRAPH_SIP_AUTH_PASSWORD": "wrong"},
        )
    finally:
        await kam.stop()
    assert code == 1
    assert "registration failed" in out and "401" in out and "credentials rejected" in out, out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["call", "sip:a@127.0.0.1:5999", "--auth-user", "u"], "needs a password"),
        (["answer", "--register", "sip:127.0.0.1"], "needs a user part"),
        (["answer", "--auth-password-file", "/nonexistent/x"], "--auth-password-file"),
        (["answer", "--registrar", "sip:127.0.0.1"], "--registrar needs --register"),
        (["answer", "--register", "sip:a@b", "--registrar", "nonsense"], "--registrar"),
    ],
)
async def test_bad_account_options_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    code, _, err = await _run(*args, env={})
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err


async def test_answer_and_call_over_tls(tmp_path: Path) -> None:
    """Two of our processes, both with certificates from one CA: ``answer`` takes TLS on a free
    port and hears the keys ``call`` sends to its ``;transport=tls`` URI, in SRTP."""
    ca = TestCa(tmp_path / "ca")
    server, client = ca.issue("answer", "127.0.0.1"), ca.issue("call", "127.0.0.1")
    async with _answering(
        *("--tls-port", "0", "--tls-cert-file", str(server.cert)),
        *("--tls-key-file", str(server.key), "--tls-ca-file", str(ca.cert_file)),
    ) as proc:
        assert proc.stdout is not None
        ready = json.loads(await asyncio.wait_for(proc.stdout.readline(), 20))
        assert ready["tls_uri"].endswith(";transport=tls")
        # without our CA the caller refuses the answerer's certificate: the call fails at once
        code, out, _ = await _run(
            "call", ready["tls_uri"], "--send", "1", "--tls-cert-file", str(client.combined)
        )
        assert code == 1 and "503" in out and "certificate verify failed" in out, out
        code, out, err = await _run(
            *("call", ready["tls_uri"].replace("dtmfgraph@", "bob@"), "--send", "7#"),
            *("--method", "rfc4733", "--tls-cert-file", str(client.combined)),
            *("--tls-ca-file", str(ca.cert_file)),
        )
        assert code == 0, err
        events = await _rest_of(proc)
    assert "SRTP AES_CM_128_HMAC_SHA1_80" in out  # a TLS call offers SRTP: the keys went in it
    assert [(e["key"], e["method"]) for e in events if e["event"] == "key"] == [
        ("7", "rfc4733"),
        ("#", "rfc4733"),
    ]
    [answered] = [e for e in events if e["event"] == "answered"]
    assert answered["srtp"] == "AES_CM_128_HMAC_SHA1_80"


async def test_call_records_the_far_ends_audio(tmp_path: Path) -> None:
    """``call --record``: what baresip plays (its "prompt": in-band keys between silences) is
    in our WAV file, which libspandsp, an outside detector, decodes to the same keys; the file
    lasts about as long as the call."""
    prompt = np.concatenate(
        [np.zeros(4000, np.int16), synthesize("2580", tone_ms=80, gap_ms=80, level_dbm0=-12.0),
         np.zeros(40_000, np.int16)]
    )  # fmt: skip
    source = tmp_path / "prompt.wav"
    source.write_bytes(encode_wav(prompt, 8000))
    out = tmp_path / "heard.wav"
    async with Baresip(tmp_path / "bs", source=source) as bs:
        code, text, err = await _run(
            "call", bs.uri, "--record", str(out), "--listen", "2.5", "--json"
        )
    assert code == 0, err
    events = [json.loads(line) for line in text.splitlines()]
    kinds = ["calling", "answered", "recording", "key", "key", "key", "key", "ended"]
    assert [e["event"] for e in events] == kinds  # we hear its keys too
    assert events[-1]["keys_heard"] == "2580"
    ended = events[-1]  # how baresip's RTP reached us, on loopback: all of it, evenly
    assert ended["rtp_received"] >= 100 and ended["rtp_lost"] == 0
    assert 0.0 <= ended["jitter_ms"] < 10.0
    wav = parse_wav(out.read_bytes())
    assert wav.rate == 8000 and 2.0 <= wav.duration <= 3.0, wav.duration
    assert events[-1]["recorded_s"] == pytest.approx(wav.duration, abs=0.01)
    assert spandsp.spandsp_detect(wav.samples[0], chunk=160) == "2580"


async def test_answer_records_each_callers_audio(tmp_path: Path) -> None:
    """``answer --record-dir``: one WAV per call, with what the caller sent (in-band keys from
    our own ``call``), which libspandsp decodes."""
    async with _answering("--record-dir", str(tmp_path)) as proc:
        assert proc.stdout is not None
        ready = json.loads(await asyncio.wait_for(proc.stdout.readline(), 20))
        code, _, err = await _run(
            "call", ready["uri"].replace("dtmfgraph@", "bob@"),
            *("--send", "73#", "--method", "inband", "--listen", "0.3"),
        )  # fmt: skip
        assert code == 0, err
        events = await _rest_of(proc)
    [recording] = [e for e in events if e["event"] == "recording"]
    files = sorted(tmp_path.glob("*.wav"))
    assert [str(f) for f in files] == [recording["path"]]
    wav = parse_wav(files[0].read_bytes())
    assert spandsp.spandsp_detect(wav.samples[0], chunk=160) == "73#"


async def test_call_shows_what_rtcp_said(tmp_path: Path) -> None:
    """baresip's RTCP reports (its first after ~5 s) on our stream reach the ``ended`` line: the
    round-trip time and what it lost of ours. A bad interval: a one-line error, exit 2."""
    async with Baresip(tmp_path / "bs") as bs:
        code, text, err = await _run(
            "call", bs.uri, "--send", "1", "--listen", "7", "--rtcp-interval", "1", "--json"
        )
        assert code == 0, err
        ended = json.loads(text.splitlines()[-1])
        assert ended["event"] == "ended", text
        assert ended["peer_lost"] == 0
        assert ended["rtt_ms"] is not None and 0.0 <= ended["rtt_ms"] < 100.0, ended
        code, text, err = await _run("call", bs.uri, "--rtcp-interval", "-1")
        assert code == 2 and "--rtcp-interval -1" in err


def _limit(text: str) -> int:
    return resource.RLIM_INFINITY if text == "unlimited" else int(text)


def _open_files_limit(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return _limit(soft), _limit(hard)
    raise AssertionError("no open files line")


async def test_answer_raises_its_open_files_limit() -> None:
    """Each call holds two UDP sockets (RTP, RTCP): started at the usual soft limit of 1,024
    (here 256), ``answer`` raises it towards the hard limit before it takes calls (``serve``
    does the same)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert hard == resource.RLIM_INFINITY or hard > 256, "the hard limit leaves nothing to raise"
    proc = await asyncio.create_subprocess_exec(
        *SIP_CLI,
        *("answer", "--port", "0", "--duration", "5", "--json"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard)),
    )
    try:
        assert proc.stdout is not None
        ready = json.loads(await asyncio.wait_for(proc.stdout.readline(), 20))
        assert ready["event"] == "ready", ready
        now_soft, now_hard = _open_files_limit(proc.pid)
        assert now_hard == hard  # never changed
        assert now_soft == min(65_536, now_hard) > 256
    finally:
        proc.kill()
        await proc.wait()
