"""``dtmfgraph rtp send|listen``: RTP telephone-events and in-band DTMF on a UDP socket."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import socket
import sys
import time
from typing import Annotated

import typer

from ..media import Address, MediaError, Pacer, RtpSession, parse_address
from ..rtp import Codec, KeyHeard
from ..tones import KeypadError, parse_keys

EXIT_BAD_INPUT = 2


class CodecName(enum.StrEnum):
    pcmu = "pcmu"
    pcma = "pcma"

    @property
    def codec(self) -> Codec:
        return Codec.PCMU if self is CodecName.pcmu else Codec.PCMA


class MethodName(enum.StrEnum):
    rfc4733 = "rfc4733"
    inband = "inband"


def fail(message: str) -> typer.Exit:
    """Print a one-line error to stderr and return the exit to raise (status 2)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(EXIT_BAD_INPUT)


def _check_pt(pt: int) -> None:
    if not 96 <= pt <= 127:
        raise fail(f"--pt {pt}: telephone-event needs a dynamic payload type, 96-127")


def _resolve(address: Address) -> tuple[socket.AddressFamily, Address]:
    host, port = address
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise fail(f"cannot resolve {host!r}: {getattr(exc, 'strerror', None) or exc}") from None
    family, _, _, _, sockaddr = infos[0]
    return family, (str(sockaddr[0]), int(sockaddr[1]))


def _fmt(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# -- send ---------------------------------------------------------------------------------------
async def _send(
    keys: str,
    remote: Address,
    bind: str,
    method: MethodName,
    codec: Codec,
    pt: int,
    tone_ms: int,
    gap_ms: int,
    volume: int,
    tail_ms: int,
) -> str:
    pacer = Pacer()
    session = await RtpSession.open(
        pacer, host=bind, remote=remote, codec=codec, event_pt=pt, receive=False
    )
    try:
        began = time.monotonic()
        job = await session.send_dtmf(
            keys, method=method.value, tone_ms=tone_ms, gap_ms=gap_ms, volume=volume
        )
        elapsed = time.monotonic() - began
        await asyncio.sleep(tail_ms / 1000)  # a little audio after the last key, as a phone does
        ssrc = session.outbound.ssrc if session.outbound is not None else 0
    finally:
        await session.close()
        pacer.close()
    how = f"RFC 4733, PT {pt}" if method is MethodName.rfc4733 else f"in-band {codec.name}"
    return (
        f"sent {job.keys} to {_fmt(remote)} ({how}) in {elapsed:.3f} s, "
        f"ssrc={ssrc:08x}, {pacer.stats.packets} packets"
    )


def send(
    keys: Annotated[
        str, typer.Argument(help="Keys to press: 0-9 * # A-D, and F (flash, rfc4733 only).")
    ],
    to: Annotated[str, typer.Option("--to", help="Where to send: HOST:PORT, or [IPv6]:PORT.")],
    method: Annotated[
        MethodName,
        typer.Option(help="rfc4733: telephone-event packets; inband: G.711 audio tones."),
    ] = MethodName.rfc4733,
    codec: Annotated[
        CodecName, typer.Option(help="Audio codec of the stream (silence and in-band tones).")
    ] = CodecName.pcmu,
    tone_ms: Annotated[int, typer.Option(help="Tone length per key, ms.")] = 100,
    gap_ms: Annotated[int, typer.Option(help="Pause between keys, ms.")] = 100,
    pt: Annotated[
        int, typer.Option(help="RTP payload type of telephone-event (dynamic, 96-127).")
    ] = 101,
    volume: Annotated[int, typer.Option(help="RFC 4733 volume field: level in -dBm0 (0-63).")] = 10,
    bind: Annotated[
        str | None,
        typer.Option(
            help="Local address to send from (default: any address of the target's family)."
        ),
    ] = None,
    tail_ms: Annotated[
        int, typer.Option(help="Silence sent after the last key before stopping, ms.")
    ] = 100,
) -> None:
    """Send KEYS as one RTP stream (20 ms packets, silence around the keys) to HOST:PORT."""
    try:
        remote = parse_address(to)
    except ValueError as exc:
        raise fail(f"--to: {exc}") from None
    _check_pt(pt)
    try:
        parsed = parse_keys(keys)
    except KeypadError as exc:
        raise fail(str(exc)) from None
    if method is MethodName.inband and any(not k.has_tones for k in parsed):
        raise fail("flash (F) has no tones: it cannot be sent in-band, use --method rfc4733")
    if not 0 <= volume <= 63:
        raise fail(f"--volume {volume}: must be 0-63 (-dBm0)")
    if tail_ms < 0:
        raise fail(f"--tail-ms {tail_ms}: must be >= 0")
    family, remote = _resolve(remote)
    local = bind or ("::" if family == socket.AF_INET6 else "0.0.0.0")
    try:
        summary = asyncio.run(
            _send(keys, remote, local, method, codec.codec, pt, tone_ms, gap_ms, volume, tail_ms)
        )
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except (ValueError, MediaError) as exc:  # the RTP layer's checks: tone/gap lengths, keys
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"cannot send from {local}: {exc.strerror or exc}") from None
    typer.echo(summary)


# -- listen -------------------------------------------------------------------------------------
def _line(key: KeyHeard, t0: float, as_json: bool) -> str:
    if as_json:
        return json.dumps(
            {
                "key": key.key,
                "method": key.method,
                "start": round(key.start - t0, 4),
                "end": round(key.end - t0, 4),
                "duration_ms": round((key.end - key.start) * 1000, 1),
                "ssrc": key.ssrc,
            }
        )
    dur = (key.end - key.start) * 1000
    return (
        f"{key.key}  {key.method:<7}  {key.start - t0:8.3f} s  {dur:5.0f} ms  ssrc={key.ssrc:08x}"
    )


async def _listen(
    host: str,
    port: int,
    codec: Codec,
    pt: int,
    inband: bool,
    as_json: bool,
    duration: float | None,
    count: int | None,
    jitter_max_ms: int = 120,
) -> int:
    pacer = Pacer()
    session = await RtpSession.open(
        pacer,
        host=host,
        port=port,
        codec=codec,
        event_pt=pt,
        send=False,
        inband=inband,
        jitter_max_delay=jitter_max_ms / 1000,
    )
    heard = 0
    t0 = pacer.time()
    typer.echo(f"listening on {_fmt(session.local_address)}", err=True)
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(duration):
                async for key in session.keys():
                    typer.echo(_line(key, t0, as_json))
                    sys.stdout.flush()
                    heard += 1
                    if count is not None and heard >= count:
                        break
    finally:
        stats = session.stats
        await session.close()
        pacer.close()
        typer.echo(f"heard {heard} keys; {stats}", err=True)
    return heard


def listen(
    port: Annotated[int, typer.Option(help="UDP port to listen on (0 picks a free one).")],
    host: Annotated[
        str, typer.Option(help="Local address to bind (127.0.0.1, ::1, 0.0.0.0...).")
    ] = "127.0.0.1",
    codec: Annotated[
        CodecName, typer.Option(help="Audio codec expected (for in-band detection).")
    ] = CodecName.pcmu,
    pt: Annotated[
        int, typer.Option(help="RTP payload type of telephone-event (dynamic, 96-127).")
    ] = 101,
    inband: Annotated[bool, typer.Option(help="Also detect DTMF tones in the audio.")] = True,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per key instead of text.")
    ] = False,
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds (default: run until Ctrl-C).")
    ] = None,
    count: Annotated[int | None, typer.Option(help="Stop after this many keys.")] = None,
    jitter_max_ms: Annotated[
        int,
        typer.Option(
            help="Greatest play-out delay of the jitter buffer for in-band keys (20-1000 ms)."
        ),
    ] = 120,
) -> None:
    """Print every DTMF key heard on an RTP port, one line each.

    A line is: key, method (rfc4733 or inband), start (s since listening), length, SSRC.
    Stop with Ctrl-C, --duration or --count.
    """
    if not 0 <= port <= 65535:
        raise fail(f"--port {port}: must be 0-65535")
    _check_pt(pt)
    if duration is not None and duration <= 0:
        raise fail(f"--duration {duration}: must be > 0")
    if count is not None and count <= 0:
        raise fail(f"--count {count}: must be > 0")
    if not 20 <= jitter_max_ms <= 1000:
        raise fail(f"--jitter-max-ms {jitter_max_ms}: must be 20-1000")
    try:
        asyncio.run(
            _listen(host, port, codec.codec, pt, inband, as_json, duration, count, jitter_max_ms)
        )
    except KeyboardInterrupt:
        return
    except OSError as exc:
        raise fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def register(app: typer.Typer) -> None:
    """Add the ``rtp`` command group (``send``, ``listen``) to ``app``."""
    rtp_app = typer.Typer(
        name="rtp",
        help="Send or hear DTMF over RTP (RFC 4733 telephone-events or in-band G.711 tones).",
        no_args_is_help=True,
    )
    rtp_app.command()(send)
    rtp_app.command()(listen)
    app.add_typer(rtp_app, name="rtp")
