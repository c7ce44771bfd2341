"""Outside judges decode our synthesiser: libspandsp (8 kHz) and multimon-ng (8/16/48 kHz)."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from dtmfgraph.tones import synthesize
from tests.judges import spandsp

KEYS = "0123456789*#ABCD"
SEQUENCE = KEYS + KEYS[::-1] + "5" * 3  # every key, reversed, and repeats


@pytest.mark.parametrize("level", [-4.0, -10.0, -20.0])
def test_spandsp_decodes_synth(level: float) -> None:
    if not spandsp.available():
        pytest.fail("libspandsp is NOT installed (apt-get install libspandsp2)", pytrace=False)
    x = synthesize(SEQUENCE, level_dbm0=level)
    assert spandsp.spandsp_detect(x, chunk=160) == SEQUENCE


def _multimon(x: np.ndarray, rate: int) -> str:
    sox, mm = shutil.which("sox"), shutil.which("multimon-ng")
    if sox is None or mm is None:
        pytest.fail("sox and multimon-ng are NOT installed (apt-get install sox multimon-ng)",
                    pytrace=False)  # fmt: skip
    raw = np.concatenate([np.zeros(rate // 10, np.int16), x, np.zeros(rate // 5, np.int16)])
    resampled = subprocess.run(
        [sox, "-t", "raw", "-r", str(rate), "-e", "signed-integer", "-b", "16", "-c", "1", "-",
         "-t", "raw", "-r", "22050", "-e", "signed-integer", "-b", "16", "-c", "1", "-"],
        input=raw.astype("<i2").tobytes(), capture_output=True, check=True,
    ).stdout  # fmt: skip
    out = subprocess.run(
        [mm, "-q", "-t", "raw", "-a", "DTMF", "-"], input=resampled, capture_output=True, check=True
    ).stdout.decode()
    return "".join(
        line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("DTMF:")
    )


@pytest.mark.parametrize("rate", [8000, 16000, 48000])
@pytest.mark.parametrize("level", [-4.0, -10.0, -20.0])
def test_multimon_decodes_synth(rate: int, level: float) -> None:
    x = synthesize(SEQUENCE, rate=rate, level_dbm0=level)
    assert _multimon(x, rate) == SEQUENCE
