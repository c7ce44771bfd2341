"""The ``dtmfgraph`` command line."""

from __future__ import annotations

import typer

from . import keys, notifications, rtp, serve, sip, tones

app = typer.Typer(
    name="dtmfgraph",
    help="Make phone calls press keys: DTMF synthesis and detection, RTP, SIP and the Graph API.",
    no_args_is_help=True,
    add_completion=False,
)
tones.register(app)
rtp.register(app)
serve.register(app)
sip.register(app)
keys.register(app)
notifications.register(app)


def main() -> None:
    app()
