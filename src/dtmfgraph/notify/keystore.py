"""The callbacks' RSA keys kept in the data directory (made on first start, rolled on request).

``callback-key.pem`` is the first key (active from the start). ``dtmfgraph callback-key roll``
adds ``callback-key-<epoch>.pem``, a key that takes over at that time (epoch seconds): restart
the nodes (they read the directory at start) well before it, so it is published ahead. Keys
whose successor took over more than the grace period ago are removed by the next roll.

Several nodes on one database must sign with the same keys (a receiver may fetch the metadata
from any of them): give them the same key files (a shared data directory, or
``callback_rs256_private_key_file``).
"""

from __future__ import annotations

import contextlib
import itertools
import re
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ..private_file import write_private
from .signer import GRACE_S, SigningKey

KEY_FILE = "callback-key.pem"
_ROLLED = re.compile(r"^callback-key-(\d{1,12})\.pem$")


def new_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _files(data_dir: Path) -> list[tuple[float, Path]]:
    out: list[tuple[float, Path]] = []
    first = data_dir / KEY_FILE
    if first.exists():
        out.append((0.0, first))
    if data_dir.is_dir():
        for path in data_dir.iterdir():
            match = _ROLLED.match(path.name)
            if match:
                out.append((float(match.group(1)), path))
    return sorted(out)


def data_dir_keys(data_dir: Path, *, create: bool = True) -> list[SigningKey]:
    """The keys in ``data_dir`` (the first made now when there is none and ``create``);
    ``ValueError`` naming a file that is not a usable key."""
    if not _files(data_dir) and create:
        with contextlib.suppress(FileExistsError):  # another process made it first
            write_private(data_dir / KEY_FILE, new_key_pem())
    keys = []
    for active_from, path in _files(data_dir):
        try:
            pem = path.read_text()
        except OSError as exc:
            raise ValueError(f"callback key {str(path)!r}: {exc.strerror}") from None
        keys.append(SigningKey.from_pem(pem, active_from, f"callback key {str(path)!r}"))
    return keys


def roll(
    data_dir: Path, after_s: float, *, grace_s: float = GRACE_S, now: float | None = None
) -> Path:
    """Make a key that takes over ``after_s`` from now; drop keys retired for over ``grace_s``."""
    t = time.time() if now is None else now
    files = _files(data_dir)
    if not files:
        data_dir_keys(data_dir)
        files = _files(data_dir)
    for (_, path), (successor_from, _) in itertools.pairwise(files):
        if successor_from + grace_s < t:
            path.unlink(missing_ok=True)
    path = data_dir / f"callback-key-{int(t + after_s)}.pem"
    write_private(path, new_key_pem())
    return path


__all__ = ["KEY_FILE", "data_dir_keys", "new_key_pem", "roll", "write_private"]
