"""``dtmfgraph rtp send|listen``: RTP telephone-events and in-band DTMF on a UDP socket."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the ``rtp`` command group to ``app`` (filled in by the RTP media work)."""
