"""The floor of a numpy DTMF detector: what the steps every design needs cost at N channels,
against libspandsp in the same run, to show how much of the 4x budget is left for detection.

A detector vectorised across channels must at least convert each tick's int16 samples to
float32, take the DFT at the eight Q.23 frequencies (one BLAS product), square it into bin
powers and group maxima, and measure the energy. This times those steps cumulatively, on
cold (N, 160) ticks laid out as a media server hands them over, in the cheapest layout for each
(80-sample half-blocks that tile a tick: no framing copies), and our whole detector and
libspandsp (ctypes, 160-sample calls) on the same white noise. "Best ratio" is spandsp's time
over the step's: what the ratio would be if the step were all a detector did.

    .venv/bin/python bench/detector_floor.py [--channels 1000] [--seconds 4]
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one core: set before numpy loads BLAS

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import machine, markdown_table, write_section
from detector import (
    channels_of,
    cpu_seconds,
    noise_signal,
    ours_streaming,
    spandsp_streaming,
    ticks,
)
from dtmfgraph.tones.filterbank import FREQS

HALF = 80  # 10 ms half-blocks: two per 160-sample tick


def steps(blocks: np.ndarray) -> list[tuple[str, Callable[[], int]]]:
    """The cumulative steps, each a function that runs it over every tick of ``blocks``."""
    channels = blocks.shape[1]
    n = np.arange(HALF)
    basis = np.exp(-2j * np.pi * np.outer(n, np.asarray(FREQS)) / 8000)
    matrix = np.concatenate([basis.real, basis.imag], axis=1).astype(np.float32)  # 80 x 16
    frames = np.empty((channels, 2 * HALF), dtype=np.float32)
    halves = frames.reshape(2 * channels, HALF)
    spectra = np.empty((2 * channels, 16), dtype=np.float32)
    spectra_t = np.empty((16, 2 * channels), dtype=np.float32)
    squares = np.empty_like(spectra_t)
    power = np.empty((8, 2 * channels), dtype=np.float32)
    groups = np.empty((2, 2 * channels), dtype=np.float32)
    energy = np.empty(2 * channels, dtype=np.float32)

    def convert() -> None:
        pass

    def product() -> None:
        np.matmul(halves, matrix, out=spectra)

    def product_t() -> None:
        np.matmul(matrix.T, halves.T, out=spectra_t)  # quantity x n, as later steps need

    def powers() -> None:
        product_t()
        np.square(spectra_t, out=squares)
        np.add(squares[:8], squares[8:], out=power)
        np.maximum.reduce(power[:4], axis=0, out=groups[0])
        np.maximum.reduce(power[4:], axis=0, out=groups[1])

    def with_energy() -> None:
        powers()
        np.einsum("ij,ij->i", halves, halves, out=energy)

    def runner(step: Callable[[], None]) -> Callable[[], int]:
        def run() -> int:
            for block in blocks:
                np.copyto(frames, block)
                step()
            return 0

        return run

    return [
        ("int16 -> float32", runner(convert)),
        ("+ DFT at 8 frequencies (one BLAS product)", runner(product)),
        ("+ DFT, output laid out quantity x n", runner(product_t)),
        ("+ bin powers and group maxima", runner(powers)),
        ("+ energy", runner(with_energy)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    audio = channels_of(noise_signal(args.seconds), args.channels)
    blocks = ticks(audio)
    samples = blocks.size
    spandsp, _ = cpu_seconds(lambda: spandsp_streaming(audio), args.repeat)
    ref = spandsp / samples * 1e9
    rows = []
    for name, fn in steps(blocks):
        took, _ = cpu_seconds(fn, args.repeat)
        ns = took / samples * 1e9
        rows.append([name, f"{ns:.2f}", f"{ref / ns:.1f}x"])
    ours, _ = cpu_seconds(lambda: ours_streaming(blocks), args.repeat)
    ns = ours / samples * 1e9
    rows.append(["dtmfgraph's whole detector (noise: nothing passes its screen)", f"{ns:.2f}",
                 f"{ref / ns:.1f}x"])  # fmt: skip
    table = markdown_table(["step (cumulative)", "ns/sample", "best ratio vs spandsp"], rows)
    print(f"libspandsp: {ref:.2f} ns/sample; 4x allows {ref / 4:.2f}\n{table}")
    if args.no_write:
        return
    body = "\n".join(
        [
            "## The floor of a numpy detector (`bench/detector_floor.py`)",
            "",
            f"Machine: {machine()}; one core; {args.channels:,} channels, (N, 160) int16 ticks "
            f"of white noise laid out before timing; process CPU time, best of {args.repeat}. "
            f"libspandsp (ctypes, 160-sample calls) on the same audio: **{ref:.2f} ns/sample**, "
            f"so 4x allows {ref / 4:.2f}. Each step is timed with the ones before it, in the "
            "cheapest layout for it (80-sample half-blocks tiling a tick, no framing copies); "
            "the best ratio is what a detector doing only that would reach.",
            "",
            table,
            "",
            "Before any test of a candidate block, tracking of digits or event, the floor already "
            "takes most of the 4x budget; speech adds ~2 ns/sample of detection work to ours "
            "(docs/detector.md, Performance).",
        ]
    )
    write_section("detector-floor", body)


if __name__ == "__main__":
    main()
