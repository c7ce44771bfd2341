"""``dtmfgraph call`` and ``dtmfgraph answer``: real SIP calls (UDP, TCP or TLS) that press and
hear keys."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import os
import resource
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from ..media import DEFAULT_TLS_PORT, MediaError, RegistrationError, TlsConfig, TlsConfigError
from ..media.phone import (
    CallEndedError,
    DialError,
    DtmfError,
    DtmfSendError,
    HeardKey,
    IncomingInvite,
    Phone,
    PhoneCall,
)
from ..rtp.rtcp import MIN_INTERVAL
from ..sip import SipError, SipUri, SourceAllowlist
from ..tones import KeypadError, parse_keys
from .limits import raise_open_file_limit
from .progress import Advance, progress

EXIT_BAD_INPUT = 2
EXIT_CALL_FAILED = 1
_REGISTER_WAIT_S = 10.0


class SrtpName(enum.StrEnum):
    never = "never"
    optional = "optional"
    mandatory = "mandatory"


RtcpInterval = Annotated[
    float,
    typer.Option(
        help="Seconds between RTCP reports (RFC 3550, randomised; 0: no RTCP). The far end's "
        "reports give the round-trip time and what it lost of ours, shown when a call ends."
    ),
]
Srtp = Annotated[
    SrtpName,
    typer.Option(
        help="SRTP media (SDES keys): optional (offered best-effort on TLS calls, taken when "
        "offered), mandatory (RTP/SAVP; plain offers refused), or never."
    ),
]


class MethodName(enum.StrEnum):
    auto = "auto"
    rfc4733 = "rfc4733"
    sipinfo = "sipinfo"
    inband = "inband"


def fail(message: str) -> typer.Exit:
    """Print a one-line error to stderr and return the exit to raise (status 2)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(EXIT_BAD_INPUT)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _ports(text: str) -> tuple[int, int]:
    lo, sep, hi = text.partition("-")
    try:
        first, last = int(lo), int(hi if sep else lo)
    except ValueError:
        raise fail(f"--rtp-ports {text!r}: expected FIRST-LAST, e.g. 20000-29999") from None
    if not 1024 <= first <= last <= 65535 or last - first < 1:
        raise fail(f"--rtp-ports {text!r}: need 1024 <= FIRST < LAST <= 65535")
    return first, last


PASSWORD_ENV = "DTMFGRAPH_SIP_AUTH_PASSWORD"
AuthUser = Annotated[
    str | None,
    typer.Option(
        help=f"Digest user name answering SIP challenges (401/407); the password comes from "
        f"${PASSWORD_ENV} or --auth-password-file."
    ),
]
AuthPasswordFile = Annotated[
    Path | None, typer.Option(help="File holding the SIP password (one line).")
]


TlsCertFile = Annotated[
    Path | None,
    typer.Option(
        help="Our TLS certificate chain (PEM): take SIP over TLS on --tls-port and reach "
        "sips: or ;transport=tls URIs over TLS."
    ),
]
TlsKeyFile = Annotated[
    Path | None, typer.Option(help="Its private key (PEM; default: in the certificate file).")
]
TlsCaFile = Annotated[
    Path | None,
    typer.Option(help="CAs the peer's TLS certificate must chain to (default: the system's)."),
]
TlsVerify = Annotated[
    bool,
    typer.Option(
        "--tls-verify/--no-tls-verify",
        help="Check the peer's TLS certificate and name (off only in a lab).",
    ),
]


def _tls(
    cert: Path | None, key: Path | None, ca: Path | None, verify: bool, port: int
) -> TlsConfig | None:
    """The TLS configuration the options give (its files checked), or ``None``; a one-line
    error when it cannot be used."""
    if cert is None:
        for name, value in (("--tls-key-file", key), ("--tls-ca-file", ca)):
            if value is not None:
                raise fail(f"{name} needs --tls-cert-file")
        return None
    if not 0 <= port <= 65535:
        raise fail(f"--tls-port {port}: must be 0-65535")
    config = TlsConfig(cert, key, port=port, ca_file=ca, verify=verify)
    try:
        config.check()
    except TlsConfigError as exc:
        raise fail(str(exc)) from None
    return config


def _credentials(user: str | None, password_file: Path | None) -> tuple[str, str] | None:
    """(user, password) from the options and the environment; a one-line error when half is
    given or the file cannot be read."""
    password = os.environ.get(PASSWORD_ENV)
    if password_file is not None:
        try:
            password = password_file.read_text().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            why = getattr(exc, "strerror", None) or str(exc)
            raise fail(f"--auth-password-file {str(password_file)!r}: cannot read: {why}") from None
    if user is None:
        if password_file is not None:
            raise fail("--auth-password-file needs --auth-user")
        return None
    if not password:
        raise fail(
            f"--auth-user {user!r} needs a password: ${PASSWORD_ENV} or --auth-password-file"
        )
    return user, password


def _check_rtcp_interval(seconds: float) -> None:
    if not (seconds == 0 or 0.1 <= seconds <= 3600):
        raise fail(f"--rtcp-interval {seconds}: must be 0 (no RTCP) or 0.1-3600 seconds")


def _emit(as_json: bool, text: str, **fields: Any) -> None:
    # print, not typer.echo: a progress bar on the same terminal takes over sys.stdout
    print(json.dumps(fields) if as_json else text, flush=True)


# -- call ---------------------------------------------------------------------------------------
async def _call(
    uri: str,
    steps: list[str | float],
    method: MethodName,
    tone_ms: int,
    gap_ms: int,
    host: str,
    sip_port: int,
    rtp_ports: tuple[int, int],
    timeout: float,
    listen: float,
    as_json: bool,
    auth: tuple[str, str] | None = None,
    tls: TlsConfig | None = None,
    srtp: SrtpName = SrtpName.optional,
    record: Path | None = None,
    rtcp_interval: float = MIN_INTERVAL,
) -> int:
    phone = await Phone.start(host, sip_port, rtp_ports, tls=tls, srtp=srtp.value)
    phone.rtcp_interval = rtcp_interval
    status = 0
    try:
        _emit(as_json, f"calling {uri} from {phone.uri}", event="calling", uri=uri)
        began = time.monotonic()
        try:
            call = await phone.dial(uri, timeout=timeout, auth=auth)
        except DialError as exc:
            _emit(
                as_json,
                f"call failed: {exc}",
                event="failed",
                status=exc.status,
                reason=exc.reason,
                detail=exc.detail,
                timed_out=exc.timed_out,
            )
            return EXIT_CALL_FAILED
        te = call.telephone_event_pt
        codec = call.codec.name if call.codec is not None else "?"
        _emit(
            as_json,
            f"answered in {time.monotonic() - began:.3f} s: {codec}, "
            + (f"telephone-event PT {te}" if te is not None else "no telephone-event")
            + (f", SRTP {call.srtp_suite.name}" if call.srtp_suite is not None else ""),
            event="answered",
            codec=codec,
            telephone_event_pt=te,
            srtp=call.srtp_suite.name if call.srtp_suite is not None else None,
        )
        if record is not None:
            call.record(record)
            _emit(as_json, f"recording to {record}", event="recording", path=str(record))
        heard: list[HeardKey] = []
        collector = asyncio.create_task(_collect(call, heard, as_json))
        collectors = [collector]

        def follow() -> bool:
            """Switch to the call the far end transferred us to, if it did (printed)."""
            nonlocal call
            moved = False
            while call.transferred.done():
                call = call.transferred.result()
                moved = True
                _emit(
                    as_json,
                    f"transferred to {call.remote_uri}",
                    event="transferred",
                    uri=call.remote_uri,
                )
                collectors.append(asyncio.create_task(_collect(call, heard, as_json)))
            return moved

        try:
            for step in steps:
                follow()
                if isinstance(step, float):
                    _emit(as_json, f"pause {step:g} s", event="pause", seconds=step)
                    try:
                        ended = await call.wait_ended(step)
                    except TimeoutError:
                        continue  # the pause is over, the call still up
                    await asyncio.sleep(0)
                    if follow():
                        continue  # the far end handed us on: the next steps go there
                    raise CallEndedError(ended, "pause")
                result = await call.send_dtmf(
                    step, method=method.value, tone_ms=tone_ms, gap_ms=gap_ms
                )
                _emit(
                    as_json,
                    f"sent {result.keys} by {result.method} in {result.elapsed:.3f} s",
                    event="sent",
                    keys=result.keys,
                    method=result.method,
                    keys_sent=result.keys_sent,
                    seconds=round(result.elapsed, 4),
                )
                # the pause after the last key goes out too (as audio), before any hang-up: a
                # far end's detector needs that silence to hear the last in-band key end
                await asyncio.sleep(gap_ms / 1000)
            if listen > 0:
                until = time.monotonic() + listen
                while (left := until - time.monotonic()) > 0:
                    with contextlib.suppress(CallEndedError):
                        await asyncio.wait_for(call.wait_ended(), left)
                    await asyncio.sleep(0)
                    if not follow():
                        break
        except (CallEndedError, DtmfSendError) as exc:
            _emit(as_json, f"send failed: {exc}", event="send_failed", error=str(exc))
            status = EXIT_CALL_FAILED
        except TimeoutError:
            pass
        recording = call.recording
        end = await call.hangup()
        await asyncio.sleep(0)
        for collector in collectors:
            collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await collector
        recorded = (
            {}
            if recording is None
            else {
                "recorded_s": round(recording.seconds, 3),
                "recorded_concealed": recording.concealed,
            }
        )
        rtp_text, rtp = _media_quality(call)
        _emit(
            as_json,
            f"call ended: {end}{rtp_text}"
            + (f" ({recording.seconds:.2f} s recorded)" if recording is not None else ""),
            event="ended",
            reason=end.reason.value,
            detail=end.detail,
            keys_heard="".join(k.key for k in heard),
            **rtp,
            **recorded,
        )
    finally:
        await phone.close()
    return status


async def _repeat(count: int, as_json: bool, place: Callable[[], Awaitable[int]]) -> int:
    """``place()`` ``count`` times, one call after another: the worst exit status."""
    status = failed = 0
    with _progress(count if count > 1 else None, as_json, "calls placed") as advance:
        for _ in range(count):
            code = await place()
            failed += code != 0
            status = max(status, code)
            advance(1, f"calls placed ({failed} failed)")
    return status


def _media_quality(call: PhoneCall) -> tuple[str, dict[str, Any]]:
    """The far end's RTP as we got it: packets received and lost, interarrival jitter; and,
    once its RTCP reports came, what it lost of ours and the round-trip time (text for the
    ``ended`` line, and fields for its JSON)."""
    stats = call.session.stats if call.session is not None else None
    if stats is None:
        return "", {}
    fields: dict[str, Any] = {
        "rtp_received": stats.received,
        "rtp_lost": stats.lost,
        "rtp_late": stats.late,
        "rtp_reordered": stats.reordered,
        "rtp_concealed": stats.concealed,
        "jitter_ms": round(stats.jitter_ms, 2),
    }
    text = (
        f"; RTP {stats.received} received, {stats.lost} lost, {stats.late} late, "
        f"{stats.reordered} reordered, {stats.concealed} concealed, "
        f"jitter {stats.jitter_ms:.1f} ms"
    )
    rtcp = call.rtcp
    if rtcp is not None and rtcp.received:  # what the far end said of ours
        fields["rtt_ms"] = None if rtcp.rtt_ms is None else round(rtcp.rtt_ms, 2)
        fields["peer_lost"] = rtcp.peer_lost
        fields["peer_jitter_ms"] = round(rtcp.peer_jitter_ms, 2)
        text += f"; {rtcp.far_end()}"
    return text, fields


async def _collect(call: PhoneCall, heard: list[HeardKey], as_json: bool) -> None:
    async for key in call.keys_heard():
        heard.append(key)
        _emit(
            as_json,
            f"heard {key.key} by {key.method}",
            event="key",
            key=key.key,
            method=key.method,
            at=round(key.at, 4),
        )


PAUSES = {"w": 0.5, "W": 1.0}
"""Pause characters in ``--send``, seconds (as Asterisk's SendDTMF reads them)."""


def dial_steps(send: str) -> list[str | float]:
    """``--send`` as steps: runs of keys (str) and pauses (seconds, merged); bad keys raise
    :class:`KeypadError`."""
    steps: list[str | float] = []
    for char in send:
        pause = PAUSES.get(char)
        if pause is None:
            parse_keys(char)  # a clear error for a bad key
            if steps and isinstance(steps[-1], str):
                steps[-1] += char
            else:
                steps.append(char)
        elif steps and isinstance(steps[-1], float):
            steps[-1] += pause
        else:
            steps.append(pause)
    return steps


def _after(delay: float, steps: list[str | float]) -> list[str | float]:
    """``steps`` after a pause of ``delay`` seconds."""
    if not delay:
        return steps
    if steps and isinstance(steps[0], float):
        return [steps[0] + delay, *steps[1:]]
    return [delay, *steps]


def call(
    uri: Annotated[
        str, typer.Argument(help="Who to call: sip:user@HOST:PORT (an IP, or a name to resolve).")
    ],
    send: Annotated[
        str,
        typer.Option(
            "--send",
            help="Keys to press: 0-9 * # A-D, F = flash; w pauses 0.5 s, W 1 s (e.g. 1WW2#).",
        ),
    ] = "",
    delay: Annotated[
        float,
        typer.Option(help="Seconds to wait once answered before the first key (a greeting)."),
    ] = 0.0,
    record: Annotated[
        Path | None,
        typer.Option(help="Write what the far end sends (its prompts) to this WAV file."),
    ] = None,
    method: Annotated[
        MethodName,
        typer.Option(
            help="rfc4733, sipinfo, inband, or auto (RFC 4733 if negotiated, else in-band)."
        ),
    ] = MethodName.auto,
    tone_ms: Annotated[int, typer.Option(help="Tone length per key, ms.")] = 100,
    gap_ms: Annotated[int, typer.Option(help="Pause between keys, ms.")] = 100,
    host: Annotated[str, typer.Option(help="Local address for SIP and RTP.")] = "127.0.0.1",
    sip_port: Annotated[int, typer.Option(help="Local SIP port (0 picks a free one).")] = 0,
    rtp_ports: Annotated[str, typer.Option(help="Local RTP port range.")] = "20000-29999",
    timeout: Annotated[float, typer.Option(help="Seconds to wait for an answer.")] = 30.0,
    listen: Annotated[
        float, typer.Option(help="Seconds to stay on the line after sending, hearing keys.")
    ] = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    auth_user: AuthUser = None,
    auth_password_file: AuthPasswordFile = None,
    tls_cert_file: TlsCertFile = None,
    tls_key_file: TlsKeyFile = None,
    tls_ca_file: TlsCaFile = None,
    tls_verify: TlsVerify = True,
    tls_port: Annotated[
        int, typer.Option(help="Local SIP over TLS port (0 picks a free one).")
    ] = 0,
    srtp: Srtp = SrtpName.optional,
    rtcp_interval: RtcpInterval = MIN_INTERVAL,
    count: Annotated[
        int,
        typer.Option(
            help="Place this many calls, one after another (a progress bar on a terminal); "
            "exit 1 if any failed."
        ),
    ] = 1,
) -> None:
    """Call URI, press KEYS, hang up, and print what happened (exit 1 if the call failed)."""
    _check_rtcp_interval(rtcp_interval)
    if count < 1:
        raise fail(f"--count {count}: must be > 0")
    if count > 1 and record is not None:
        raise fail("--record takes one call: not with --count")
    try:
        SipUri.parse(uri)
    except SipError as exc:
        raise fail(f"bad SIP URI {uri!r}: {exc}") from None
    try:
        steps = dial_steps(send)
    except KeypadError as exc:
        raise fail(str(exc)) from None
    if method is MethodName.inband and "F" in send:
        raise fail("flash (F) has no tones: it cannot be sent in-band")
    if not 0 <= delay <= 3600:
        raise fail(f"--delay {delay}: must be 0-3600")
    if record is not None:
        try:
            record.open("wb").close()
        except OSError as exc:
            raise fail(f"--record {record}: {exc.strerror or exc}") from None
    if not 1 <= tone_ms <= 600_000:
        raise fail(f"--tone-ms {tone_ms}: must be 1-600000")
    if not 0 <= gap_ms <= 600_000:
        raise fail(f"--gap-ms {gap_ms}: must be 0-600000")
    if not 0 <= sip_port <= 65535:
        raise fail(f"--sip-port {sip_port}: must be 0-65535")
    if timeout <= 0:
        raise fail(f"--timeout {timeout}: must be > 0")
    if listen < 0:
        raise fail(f"--listen {listen}: must be >= 0")
    ports = _ports(rtp_ports)
    auth = _credentials(auth_user, auth_password_file)
    tls = _tls(tls_cert_file, tls_key_file, tls_ca_file, tls_verify, tls_port)
    try:
        code = asyncio.run(
            _repeat(
                count,
                as_json,
                lambda: _call(
                    uri,
                    _after(delay, steps),
                    method,
                    tone_ms,
                    gap_ms,
                    host,
                    sip_port,
                    ports,
                    timeout,
                    listen,
                    as_json,
                    auth,
                    tls,
                    srtp,
                    record,
                    rtcp_interval,
                ),
            )
        )
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except DtmfError as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"cannot bind {host}:{sip_port}: {exc.strerror or exc}") from None
    except (MediaError, ValueError) as exc:
        raise fail(str(exc)) from None
    raise typer.Exit(code)


# -- answer -------------------------------------------------------------------------------------
class _Answerer:
    def __init__(
        self,
        phone: Phone,
        as_json: bool,
        count: int | None,
        hangup_after: float | None,
        record_dir: Path | None = None,
    ):
        self.phone = phone
        self.record_dir = record_dir
        self.as_json = as_json
        self.count = count
        self.hangup_after = hangup_after
        self.answered = 0
        self.ended = 0
        self.keys = 0
        self.failed = 0
        self.done = asyncio.Event()
        self.advance: Advance = lambda steps=1, description=None: None
        self.tasks: set[asyncio.Task[None]] = set()

    async def on_incoming(self, invite: IncomingInvite) -> None:
        if self.count is not None and self.answered >= self.count:
            invite.reject(486, "Busy Here")
            return
        self.answered += 1
        try:
            call = await invite.answer()
        except (MediaError, ValueError) as exc:
            self.failed += 1
            _emit(
                self.as_json, f"cannot answer {invite.caller}: {exc}", event="error", error=str(exc)
            )
            self._count_end()
            return
        _emit(
            self.as_json,
            f"answered {call.remote_uri} ({call.call_id})",
            event="answered",
            call=call.call_id,
            caller=call.remote_uri,
            codec=call.codec.name if call.codec is not None else None,
            telephone_event_pt=call.telephone_event_pt,
            srtp=call.srtp_suite.name if call.srtp_suite is not None else None,
        )
        if self.record_dir is not None:
            self._record(call, self.record_dir)
        task = asyncio.ensure_future(self._serve(call))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _record(self, call: PhoneCall, directory: Path) -> None:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in call.call_id)
        path = directory / f"{self.answered:04d}-{safe[:60]}.wav"
        try:
            call.record(path)
        except (OSError, MediaError) as exc:
            _emit(self.as_json, f"cannot record to {path}: {exc}", event="error", error=str(exc))
            return
        _emit(
            self.as_json,
            f"{call.call_id[:12]}  recording to {path}",
            event="recording",
            call=call.call_id,
            path=str(path),
        )

    async def _serve(self, call: PhoneCall) -> None:
        keys: list[str] = []
        hanger = None
        if self.hangup_after is not None:
            hanger = asyncio.get_running_loop().call_later(
                self.hangup_after, lambda: asyncio.ensure_future(call.hangup())
            )
        async for key in call.keys_heard():
            keys.append(key.key)
            self.keys += 1
            _emit(
                self.as_json,
                f"{call.call_id[:12]}  {key.key}  {key.method:<7}  {key.at:.3f}",
                event="key",
                call=call.call_id,
                key=key.key,
                method=key.method,
                at=round(key.at, 4),
                duration_ms=None if key.duration is None else round(key.duration * 1000, 1),
            )
        if hanger is not None:
            hanger.cancel()
        end = call.ended
        assert end is not None
        rtp_text, rtp = _media_quality(call)
        _emit(
            self.as_json,
            f"{call.call_id[:12]}  ended: {end}  keys: {''.join(keys)}{rtp_text}",
            event="ended",
            call=call.call_id,
            reason=end.reason.value,
            detail=end.detail,
            keys="".join(keys),
            **rtp,
        )
        self._count_end()

    def _count_end(self) -> None:
        self.ended += 1
        self.advance(1, f"calls ended ({self.keys} keys heard)")
        if self.count is not None and self.ended >= self.count:
            self.done.set()


def _progress(
    count: int | None, as_json: bool, title: str = "calls ended"
) -> contextlib.AbstractContextManager[Advance]:
    """``--count N``'s bar of calls (not with --json, nor off a terminal)."""
    if count is None or as_json:
        return contextlib.nullcontext(lambda steps=1, description=None: None)
    return progress(title, count)


async def _answer(
    host: str,
    port: int,
    rtp_ports: tuple[int, int],
    count: int | None,
    duration: float | None,
    hangup_after: float | None,
    as_json: bool,
    aor: str | None = None,
    auth: tuple[str, str] | None = None,
    registrar: str | None = None,
    tls: TlsConfig | None = None,
    srtp: SrtpName = SrtpName.optional,
    record_dir: Path | None = None,
    allow_from: list[str] | None = None,
    rtcp_interval: float = MIN_INTERVAL,
) -> int:
    phone = await Phone.start(host, port, rtp_ports, tls=tls, srtp=srtp.value)
    phone.allow_sources = allow_from
    phone.rtcp_interval = rtcp_interval
    answerer = _Answerer(phone, as_json, count, hangup_after, record_dir)
    phone.on_incoming = answerer.on_incoming
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, answerer.done.set)
    cpu0, wall0 = _cpu_seconds(), time.monotonic()
    also = f" and {phone.tls_uri}" if phone.tls_uri else ""
    typer.echo(f"listening on {phone.uri}{also}", err=True)
    if aor is not None:
        try:
            registration = await phone.register(aor, auth=auth, registrar=registrar)
            await registration.wait(_REGISTER_WAIT_S)
        except RegistrationError as exc:
            _emit(as_json, f"registration failed: {exc}", event="failed", status=exc.status,
                  reason=exc.reason, detail=exc.detail)  # fmt: skip
            await phone.close()
            return EXIT_CALL_FAILED
        _emit(as_json, f"registered {aor} for {registration.expires} s", event="registered",
              aor=aor, expires=registration.expires)  # fmt: skip
    if as_json:
        _emit(True, "", event="ready", uri=phone.uri, tls_uri=phone.tls_uri)
    try:
        with _progress(count, as_json) as answerer.advance, contextlib.suppress(TimeoutError):
            await asyncio.wait_for(answerer.done.wait(), duration)
    finally:
        await phone.close()
        if answerer.tasks:
            await asyncio.gather(*answerer.tasks, return_exceptions=True)
        cpu, wall = _cpu_seconds() - cpu0, time.monotonic() - wall0
        counters = phone.ua.counters
        _emit(
            as_json,
            f"answered {answerer.answered} calls, {answerer.ended} ended, heard {answerer.keys} "
            f"keys; cpu {cpu:.2f} s in {wall:.2f} s; refused {phone.calls_refused}; "
            f"malformed dropped {counters.malformed_dropped}, "
            f"400s {counters.bad_requests_answered}",
            event="summary",
            answered=answerer.answered,
            ended=answerer.ended,
            failed=answerer.failed,
            keys=answerer.keys,
            cpu_s=round(cpu, 3),
            wall_s=round(wall, 3),
            malformed_dropped=counters.malformed_dropped,
            bad_requests_answered=counters.bad_requests_answered,
            retransmissions_sent=counters.retransmissions_sent,
        )
    return 0


def answer(
    port: Annotated[int, typer.Option(help="SIP port to listen on (0 picks a free one).")] = 5060,
    host: Annotated[str, typer.Option(help="Local address for SIP and RTP.")] = "127.0.0.1",
    rtp_ports: Annotated[str, typer.Option(help="Local RTP port range.")] = "20000-29999",
    count: Annotated[
        int | None, typer.Option(help="Stop after this many calls have ended.")
    ] = None,
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds [default: until Ctrl-C].")
    ] = None,
    hangup_after: Annotated[
        float | None, typer.Option(help="Hang up each call after this many seconds.")
    ] = None,
    record_dir: Annotated[
        Path | None,
        typer.Option(help="Write each caller's audio to a WAV file in this directory."),
    ] = None,
    allow_from: Annotated[
        list[str] | None,
        typer.Option(
            help="Network (10.0.0.0/8, 192.0.2.7) whose hosts may call; others get 403 "
            "(repeatable; default: everyone)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    register: Annotated[
        str | None,
        typer.Option(
            help="Register this address-of-record (sip:user@registrar[:port]) first, so that "
            "calls to it reach us; exit 1 if that fails. Removed when we stop."
        ),
    ] = None,
    registrar: Annotated[
        str | None,
        typer.Option(
            help="Registrar URI for --register (default: the AOR's host and port); add "
            ";transport=tcp to register over TCP."
        ),
    ] = None,
    auth_user: AuthUser = None,
    auth_password_file: AuthPasswordFile = None,
    tls_cert_file: TlsCertFile = None,
    tls_key_file: TlsKeyFile = None,
    tls_ca_file: TlsCaFile = None,
    tls_verify: TlsVerify = True,
    tls_port: Annotated[
        int, typer.Option(help="SIP over TLS port, with --tls-cert-file (0 picks a free one).")
    ] = DEFAULT_TLS_PORT,
    srtp: Srtp = SrtpName.optional,
    rtcp_interval: RtcpInterval = MIN_INTERVAL,
) -> None:
    """Answer every call on PORT and print each key heard (rfc4733, sipinfo or inband)."""
    _check_rtcp_interval(rtcp_interval)
    if not 0 <= port <= 65535:
        raise fail(f"--port {port}: must be 0-65535")
    if count is not None and count <= 0:
        raise fail(f"--count {count}: must be > 0")
    if duration is not None and duration <= 0:
        raise fail(f"--duration {duration}: must be > 0")
    if hangup_after is not None and hangup_after <= 0:
        raise fail(f"--hangup-after {hangup_after}: must be > 0")
    if record_dir is not None and not record_dir.is_dir():
        raise fail(f"--record-dir {record_dir}: not a directory")
    if allow_from:
        try:
            SourceAllowlist(allow_from)
        except ValueError as exc:
            raise fail(f"--allow-from: {exc}") from None
    ports = _ports(rtp_ports)
    if register is not None:
        try:
            if not SipUri.parse(register).user:
                raise fail(f"--register {register!r}: an address-of-record needs a user part")
        except SipError as exc:
            raise fail(f"--register {register!r}: {exc}") from None
    if registrar is not None:
        if register is None:
            raise fail("--registrar needs --register")
        try:
            SipUri.parse(registrar)
        except SipError as exc:
            raise fail(f"--registrar {registrar!r}: {exc}") from None
    auth = _credentials(auth_user, auth_password_file)
    tls = _tls(tls_cert_file, tls_key_file, tls_ca_file, tls_verify, tls_port)
    raise_open_file_limit()  # two UDP sockets per call
    try:
        code = asyncio.run(
            _answer(
                host,
                port,
                ports,
                count,
                duration,
                hangup_after,
                as_json,
                register,
                auth,
                registrar,
                tls,
                srtp,
                record_dir,
                allow_from or None,
                rtcp_interval,
            )
        )
    except KeyboardInterrupt:
        return
    except OSError as exc:
        raise fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    except (MediaError, ValueError) as exc:
        raise fail(str(exc)) from None
    if code:
        raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add ``call`` and ``answer`` to ``app``."""
    app.command()(call)
    app.command()(answer)
