"""libspandsp's DTMF receiver through ctypes: a reference detector for tests and benchmarks.

Test-only: dtmfgraph itself never loads spandsp. Needs Debian's ``libspandsp2``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Iterable
from functools import cache

import numpy as np
import numpy.typing as npt

CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int)
"""spandsp's digits callback: (user data, digits, count)."""
_NULL_CALLBACK = ctypes.cast(None, CALLBACK)
_QUEUE_MAX = 128


class SpandspMissingError(RuntimeError):
    """libspandsp is not installed."""


@cache
def library() -> ctypes.CDLL:
    name = ctypes.util.find_library("spandsp")
    if name is None:
        raise SpandspMissingError("libspandsp not found: apt-get install libspandsp2")
    lib = ctypes.CDLL(name)
    lib.dtmf_rx_init.restype = ctypes.c_void_p
    lib.dtmf_rx_init.argtypes = [ctypes.c_void_p, CALLBACK, ctypes.c_void_p]
    lib.dtmf_rx.restype = ctypes.c_int
    lib.dtmf_rx.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
    lib.dtmf_rx_get.restype = ctypes.c_size_t
    lib.dtmf_rx_get.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    lib.dtmf_rx_free.restype = ctypes.c_int
    lib.dtmf_rx_free.argtypes = [ctypes.c_void_p]
    return lib


def available() -> bool:
    try:
        library()
    except (SpandspMissingError, OSError):
        return False
    return True


class SpandspReceiver:
    """One spandsp ``dtmf_rx`` state (8 kHz int16 only). Digits come out in order, no timing.

    spandsp queues at most 128 digits between two reads of its queue, so by default digits are
    taken by its callback as they are found (any amount of audio per :meth:`feed`);
    ``queued=True`` uses the queue instead, as a media server feeding 20 ms chunks would.
    """

    def __init__(self, queued: bool = False) -> None:
        self._lib = library()
        self._found: list[str] = []
        self._callback = _NULL_CALLBACK if queued else CALLBACK(self._on_digits)
        self._state = self._lib.dtmf_rx_init(None, self._callback, None)
        if not self._state:
            raise RuntimeError("dtmf_rx_init failed")
        self._queued = queued
        self._buf = ctypes.create_string_buffer(_QUEUE_MAX + 1)

    def _on_digits(self, _user: object, digits: bytes, length: int) -> None:
        self._found.append(digits[:length].decode("ascii"))

    def feed(self, samples: npt.NDArray[np.int16]) -> str:
        """Feed int16 samples; return the digits completed by them."""
        x = np.ascontiguousarray(samples, dtype=np.int16)
        self._lib.dtmf_rx(self._state, x.ctypes.data, len(x))
        if self._queued:
            n = self._lib.dtmf_rx_get(self._state, self._buf, _QUEUE_MAX)
            return self._buf.raw[:n].decode("ascii")
        found, self._found = "".join(self._found), []
        return found

    def close(self) -> None:
        if self._state:
            self._lib.dtmf_rx_free(self._state)
            self._state = None

    def __del__(self) -> None:
        self.close()


def spandsp_detect(samples: npt.NDArray[np.int16], chunk: int | None = None) -> str:
    """Digits spandsp hears in a whole 8 kHz signal (fed at once, or in ``chunk``-sample calls).

    A trailing 100 ms of silence lets it finish a digit that ends at the last sample.
    """
    rx = SpandspReceiver(queued=chunk is not None)
    x = np.concatenate([np.asarray(samples, dtype=np.int16), np.zeros(800, np.int16)])
    if chunk is None:
        chunks: Iterable[npt.NDArray[np.int16]] = [x]
    else:
        chunks = (x[i : i + chunk] for i in range(0, len(x), chunk))
    digits = "".join(rx.feed(c) for c in chunks)
    rx.close()
    return digits
