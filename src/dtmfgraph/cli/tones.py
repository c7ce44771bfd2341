"""``dtmfgraph synth``, ``detect`` and ``demo``: the tone engine on WAV files."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from ..tones import DigitEvent, KeypadError, SynthesisError, synthesize
from ..tones.detector import Detector
from ..tones.wav import WavError, encode_wav, parse_wav

EXIT_BAD_INPUT = 2


def fail(message: str) -> typer.Exit:
    """Print a one-line error to stderr and return the exit to raise (status 2)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(EXIT_BAD_INPUT)


def synth(
    keys: Annotated[str, typer.Argument(help="Keys to send: 0-9 * # A-D, e.g. '159#*D'.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="WAV file to write.")],
    rate: Annotated[
        int, typer.Option(help="Sample rate in Hz (8000, 16000, 44100, 48000...).")
    ] = 8000,
    tone_ms: Annotated[float, typer.Option(help="Tone length per key, ms.")] = 100.0,
    gap_ms: Annotated[float, typer.Option(help="Silence between keys, ms.")] = 100.0,
    level: Annotated[float, typer.Option(help="Low-tone level in dBm0.")] = -10.0,
    twist: Annotated[float, typer.Option(help="High tone relative to the low tone, dB.")] = 2.0,
) -> None:
    """Synthesise KEYS as Q.23 DTMF tones into a 16-bit mono WAV file."""
    try:
        samples = synthesize(keys, rate, tone_ms, gap_ms, level, twist)
    except (KeypadError, SynthesisError) as exc:
        raise fail(str(exc)) from None
    try:
        output.write_bytes(encode_wav(samples, rate))
    except OSError as exc:
        raise fail(f"cannot write {output}: {exc.strerror or exc}") from None
    typer.echo(f"wrote {output}: {len(keys)} keys, {len(samples) / rate:.3f} s at {rate} Hz")


def _detect_file(path: Path) -> tuple[list[DigitEvent], int]:
    try:
        wav = parse_wav(path.read_bytes())
    except OSError as exc:
        raise fail(f"cannot read {path}: {exc.strerror or exc}") from None
    except WavError as exc:
        raise fail(f"{path}: {exc}") from None
    try:
        det = Detector(channels=wav.channels, rate=wav.rate)
        events = det.feed(wav.samples) + det.flush()
    except (ValueError, TypeError) as exc:  # the detector's input errors
        raise fail(f"{path}: {exc}") from None
    return events, wav.channels


def _print_events(events: list[DigitEvent], channels: int, as_json: bool) -> None:
    if as_json:
        rows = [
            {"key": e.key, "start": round(e.start, 4), "end": round(e.end, 4),
             "level": round(e.level_dbm0, 1)} | ({"channel": e.channel} if channels > 1 else {})
            for e in events
        ]  # fmt: skip
        typer.echo(json.dumps(rows))
        return
    for e in events:
        chan = f"ch{e.channel}  " if channels > 1 else ""
        typer.echo(f"{chan}{e.key}  {e.start:8.3f}  {e.end:8.3f}  {e.level_dbm0:6.1f} dBm0")


def detect(
    file: Annotated[
        Path, typer.Argument(help="WAV file (PCM, float, µ-law or A-law; any rate >= 8 kHz).")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list of objects.")] = False,
) -> None:
    """Detect DTMF keys in a WAV file: prints key, start s, end s, level dBm0 per key."""
    events, channels = _detect_file(file)
    _print_events(events, channels, as_json)


def demo(
    keys: Annotated[
        str, typer.Argument(help="Keys to synthesise and detect back.")
    ] = "0123456789*#ABCD",
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Keep the WAV here.")
    ] = None,
) -> None:
    """Synthesise KEYS to a WAV, detect them back, and show that they match."""
    target = output or Path(tempfile.mkdtemp(prefix="dtmfgraph-")) / "demo.wav"
    synth(keys, target)
    events, _ = _detect_file(target)
    heard = "".join(e.key for e in events)
    _print_events(events, 1, as_json=False)
    verdict = "match" if heard == keys.upper() else "MISMATCH"
    typer.echo(f"sent {keys.upper()}  heard {heard}  {verdict}")
    if heard != keys.upper():
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``synth``, ``detect`` and ``demo`` to ``app``."""
    app.command()(synth)
    app.command()(detect)
    app.command()(demo)
