"""The command line as a user runs it: ``python -m dtmfgraph`` in a subprocess."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dtmfgraph.tones.wav import encode_wav, parse_wav


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dtmfgraph", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_synth_then_detect_json(tmp_path: Path) -> None:
    out = tmp_path / "keys.wav"
    r = run(
        "synth", "159#*D", "-o", str(out), "--level", "-20", "--tone-ms", "80", "--gap-ms", "70"
    )
    assert r.returncode == 0, r.stderr
    wav = parse_wav(out.read_bytes())
    assert wav.rate == 8000 and wav.samples.shape[1] == 6 * 640 + 5 * 560
    r = run("detect", str(out), "--json")
    assert r.returncode == 0, r.stderr
    events = json.loads(r.stdout)
    assert [e["key"] for e in events] == list("159#*D")
    assert set(events[0]) == {"key", "start", "end", "level"}
    for i, e in enumerate(events):
        assert e["start"] == pytest.approx(i * 0.15, abs=0.015)
        assert e["end"] == pytest.approx(i * 0.15 + 0.08, abs=0.015)
        assert e["level"] == pytest.approx(-19, abs=1.5)  # mean of -20 and -18 (twist 2 dB)


def test_detect_text_output_and_rates(tmp_path: Path) -> None:
    out = tmp_path / "k.wav"
    assert run("synth", "A0", "-o", str(out), "--rate", "48000").returncode == 0
    r = run("detect", str(out))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["A", "0"]
    assert lines[0].endswith("dBm0")


def test_detect_stereo_reports_channels(tmp_path: Path) -> None:
    from dtmfgraph.tones import synthesize

    a, b = synthesize("12"), synthesize("34")
    out = tmp_path / "st.wav"
    out.write_bytes(encode_wav(np.stack([a, b]), 8000))
    events = json.loads(run("detect", str(out), "--json").stdout)
    assert [(e["channel"], e["key"]) for e in events] == [(0, "1"), (1, "3"), (0, "2"), (1, "4")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["synth", "12x", "-o", "{tmp}/x.wav"], "unknown DTMF key 'x'"),
        (["synth", "1F", "-o", "{tmp}/x.wav"], "no tone pair"),
        (["synth", "1", "-o", "{tmp}/x.wav", "--rate", "2000"], "rate"),
        (["synth", "1", "-o", "{tmp}/no/such/dir/x.wav"], "cannot write"),
        (["detect", "{tmp}/missing.wav"], "cannot read"),
        (["detect", "{tmp}/junk.wav"], "not a WAV file"),
        (["detect", "{tmp}/low.wav"], "rate"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "junk.wav").write_bytes(b"hello, not audio")
    (tmp_path / "low.wav").write_bytes(encode_wav(np.zeros(100, np.int16), 4000))
    r = run(*[a.format(tmp=tmp_path) for a in args])
    assert r.returncode == 2
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_demo_round_trips_all_keys() -> None:
    r = run("demo")
    assert r.returncode == 0, r.stderr
    assert (
        r.stdout.strip().splitlines()[-1] == "sent 0123456789*#ABCD  heard 0123456789*#ABCD  match"
    )


def test_help_lists_commands() -> None:
    r = run("--help")
    assert r.returncode == 0
    for command in ("synth", "detect", "demo"):
        assert command in r.stdout
