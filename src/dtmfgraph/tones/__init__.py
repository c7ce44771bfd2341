"""Pure DSP on numpy: the Q.23 keypad, DTMF synthesis, G.711 codecs and a Q.24 detector."""

from .detector import Detector, DetectorError, DetectorTypeError, detect
from .events import DigitEvent
from .g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from .keypad import (
    ALL_KEYS,
    FLASH,
    KEYS,
    Key,
    KeypadError,
    NoTonePairError,
    UnknownKeyError,
    by_event,
    by_tone,
    key_info,
    parse_keys,
)
from .synth import SynthesisError, dbm0_to_peak, synthesize, synthesize_frames

__all__ = [
    "ALL_KEYS",
    "FLASH",
    "KEYS",
    "Detector",
    "DetectorError",
    "DetectorTypeError",
    "DigitEvent",
    "Key",
    "KeypadError",
    "NoTonePairError",
    "SynthesisError",
    "UnknownKeyError",
    "alaw_decode",
    "alaw_encode",
    "by_event",
    "by_tone",
    "dbm0_to_peak",
    "detect",
    "key_info",
    "parse_keys",
    "synthesize",
    "synthesize_frames",
    "ulaw_decode",
    "ulaw_encode",
]
