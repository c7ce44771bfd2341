"""Talk-off corpus: >= 30 minutes of espeak-ng speech plus instrument-like random chords, 8 kHz.

Generated once and cached as ``.npy`` under ``.cache/talkoff/`` in the repository root (the file
name carries a hash of the recipe, so a changed recipe regenerates). Speech comes from many voices,
variants, speeds and pitches reading texts built from word lists and numbers; the chords are 3-5
notes with decaying harmonics, attack/decay envelopes and a little vibrato, like real
instruments (a pure two-sine chord can be a valid DTMF key, so it is never used).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "talkoff"
RATE = 8000
SPEECH_MINUTES = 32.0
CHORD_MINUTES = 8.0
_VERSION = 1

VOICES = (
    "en", "en-us", "en-gb-scotland", "en-029", "de", "fr-fr", "es", "es-419", "it", "nl",
    "pt-br", "sv", "pl", "ru", "cmn", "ja",
)  # fmt: skip
VARIANTS = ("", "+f3", "+m3", "+f1", "+m7", "+klatt2", "+f5", "+m1", "+croak", "+whisper")

WORDS = {
    "en": """please enter your account number followed by the pound key thank you for calling
    press one for sales two for support our office hours are monday through friday the weather
    today will be sunny with a chance of rain nine hundred and forty one dollars seventy cents
    hello world can you hear me now the quick brown fox jumps over the lazy dog one two three four
    five six seven eight nine zero star hash seventeen minutes past eleven operator transfer hold
    music representative available shortly invoice balance payment card expires""",
    "de": """bitte geben sie ihre kundennummer ein und drücken sie die rautetaste vielen dank für
    ihren anruf eins zwei drei vier fünf sechs sieben acht neun null das wetter morgen wird
    sonnig guten tag wie kann ich ihnen helfen unsere mitarbeiter sind gerade im gespräch""",
    "fr": """veuillez saisir votre numéro de compte suivi de la touche dièse merci de votre appel
    un deux trois quatre cinq six sept huit neuf zéro bonjour comment allez vous le temps sera
    ensoleillé nos conseillers sont occupés veuillez patienter étoile rendez vous demain""",
    "es": """por favor introduzca su número de cuenta seguido de la tecla almohadilla gracias por
    llamar uno dos tres cuatro cinco seis siete ocho nueve cero buenos días cómo puedo ayudarle
    el tiempo mañana será soleado nuestros agentes están ocupados espere por favor""",
}
_LANG_WORDS = {"de": "de", "fr": "fr", "es": "es"}


def _text(rng: np.random.Generator, voice: str, words: int) -> str:
    vocab = WORDS[_LANG_WORDS.get(voice[:2], "en")].split()
    out: list[str] = []
    count = 0
    while count < words:
        n = int(rng.integers(4, 14))
        sentence = [str(w) for w in rng.choice(vocab, n)]
        if rng.random() < 0.4:
            sentence.insert(int(rng.integers(0, n)), str(int(rng.integers(0, 100000))))
        out.append(" ".join(sentence) + str(rng.choice([".", "?", "!", ","])))
        count += len(sentence)
    return " ".join(out)


def speech_recipe() -> list[dict[str, object]]:
    """One entry per espeak-ng utterance; ~45 s each, together >= SPEECH_MINUTES."""
    rng = np.random.default_rng(2024)
    items: list[dict[str, object]] = []
    for i in range(int(SPEECH_MINUTES * 60 / 45) + 4):
        voice = VOICES[i % len(VOICES)]
        items.append(
            {
                "voice": voice + VARIANTS[int(rng.integers(len(VARIANTS)))],
                "speed": int(rng.integers(110, 260)),
                "pitch": int(rng.integers(10, 90)),
                "text": _text(rng, voice, 110),
            }
        )
    return items


def resample(x: npt.NDArray[np.float64], rate_in: int, rate_out: int) -> npt.NDArray[np.float64]:
    """Band-limited resampling by FFT (the whole utterance at once)."""
    n_out = round(len(x) * rate_out / rate_in)
    spectrum = np.fft.rfft(x)
    keep = n_out // 2 + 1
    y = np.fft.irfft(spectrum[:keep], n_out) * (n_out / len(x))
    return y


def _speak(item: dict[str, object]) -> npt.NDArray[np.int16]:
    exe = shutil.which("espeak-ng")
    assert exe is not None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "u.wav"
        subprocess.run(
            [
                exe, "-v", str(item["voice"]), "-s", str(item["speed"]), "-p", str(item["pitch"]),
                "-w", str(path), str(item["text"]),
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
        with wave.open(str(path)) as w:
            rate = w.getframerate()
            x = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float64)
    y = resample(x, rate, RATE)
    return np.clip(np.rint(y), -32768, 32767).astype(np.int16)


def _cached(name: str, recipe: object, make: object) -> npt.NDArray[np.int16]:
    digest = hashlib.sha256(json.dumps([_VERSION, recipe]).encode()).hexdigest()[:16]
    path = CACHE / f"{name}-{digest}.npy"
    if path.exists():
        return np.load(path)
    assert callable(make)
    data: npt.NDArray[np.int16] = make()
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, data)
    tmp.replace(path)
    return data


def require_espeak() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError(
            "espeak-ng is NOT installed: the talk-off test needs it "
            "(apt-get install -y --no-install-recommends espeak-ng)"
        )
    return exe


def speech() -> list[npt.NDArray[np.int16]]:
    """The speech utterances, 8 kHz int16 (cached)."""
    require_espeak()
    recipe = speech_recipe()

    def make() -> npt.NDArray[np.int16]:
        with ThreadPoolExecutor(max_workers=4) as pool:
            parts = list(pool.map(_speak, recipe))
        lengths = np.array([len(p) for p in parts])
        return np.concatenate([lengths.astype(np.int64).view(np.int16), *parts])

    packed = _cached("speech", recipe, make)
    lengths = packed[: 4 * len(recipe)].view(np.int64)
    return np.split(packed[4 * len(recipe) :], np.cumsum(lengths)[:-1])


def _note(rng: np.random.Generator, f0: float, n: int, kind: str) -> npt.NDArray[np.float64]:
    t = np.arange(n) / RATE
    vibrato = 1 + rng.uniform(0, 0.006) * np.sin(2 * np.pi * rng.uniform(4, 7) * t)
    phase = 2 * np.pi * f0 * np.cumsum(vibrato) / RATE
    rolloff = rng.uniform(0.6, 1.6)
    inharm = rng.uniform(0, 0.0008) if kind == "piano" else 0.0
    x = np.zeros(n)
    for h in range(1, 16):
        fh = f0 * h * np.sqrt(1 + inharm * h * h)
        if fh > 0.45 * RATE:
            break
        amp = h**-rolloff * (0.5 if (kind == "clarinet" and h % 2 == 0) else 1.0)
        decay = np.exp(-t * rng.uniform(0.5, 4.0) * h**0.5) if kind in ("piano", "guitar") else 1
        x += amp * decay * np.sin(h * phase + rng.uniform(0, 2 * np.pi))
    attack = min(n, int(RATE * rng.uniform(0.003, 0.06)))
    env = np.ones(n)
    env[:attack] = np.linspace(0, 1, attack)
    release = min(n - attack, int(RATE * 0.03))
    if release:
        env[n - release :] *= np.linspace(1, 0, release)
    return x * env


SHAPES = (
    (0, 4, 7), (0, 3, 7), (0, 4, 7, 11), (0, 3, 7, 10), (0, 5, 7, 12), (0, 4, 7, 12, 16),
    (0, 2, 7), (0, 4, 8), (0, 3, 6), (0, 7, 12, 19),
)  # fmt: skip
"""Chord shapes in semitones above the root (triads, sevenths, open fifths, ...)."""


def chords() -> npt.NDArray[np.int16]:
    """Instrument-like random chords (3-5 notes, harmonics, envelopes), 8 kHz int16 (cached)."""
    recipe = {"minutes": CHORD_MINUTES, "seed": 7}

    def make() -> npt.NDArray[np.int16]:
        rng = np.random.default_rng(7)
        out: list[npt.NDArray[np.float64]] = []
        total = 0
        while total < CHORD_MINUTES * 60 * RATE:
            n = int(RATE * rng.uniform(0.15, 1.2))
            kind = str(rng.choice(["piano", "organ", "guitar", "clarinet", "strings"]))
            root = int(rng.integers(48, 84))  # MIDI C3..B5
            shape = SHAPES[int(rng.integers(len(SHAPES)))]
            x = np.zeros(n)
            for step in shape:
                f0 = 440.0 * 2 ** ((root + int(step) - 69) / 12)
                x += rng.uniform(0.5, 1.0) * _note(rng, f0, n, kind)
            x *= 10 ** (rng.uniform(-25, -3) / 20) * 22786 / (np.abs(x).max() + 1e-9)
            out.append(x)
            total += n
        y = np.concatenate(out)
        return np.clip(np.rint(y), -32768, 32767).astype(np.int16)

    return _cached("chords", recipe, make)
