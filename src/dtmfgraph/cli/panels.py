"""``serve --help`` in panels: each option shown under the part of the service it sets.

An option's panel follows from its name (:data:`RULES`, first match wins), so an option added
to ``serve`` lands in the right panel without touching this table, and one that matches no rule
shows under "Other" (a test keeps that panel empty).
"""

from __future__ import annotations

import re
from typing import Any

from typer.core import TyperCommand

RULES: tuple[tuple[str, str], ...] = (
    (r"^(config|help)$", ""),  # the default "Options" panel
    (r"^(sip_tls_|srtp)", "TLS and SRTP"),
    (r"^(sip_(inbound_)?auth_|sip_allow_from)", "SIP authentication and access"),
    (r"^(sip_|rtcp_)", "SIP"),
    (r"^(no_auth|jwt_|auth_|metrics_)", "Authentication of API callers"),
    (r"^(callback_|incoming_|notify_)", "Notifications (callbacks)"),
    (r"^(media|rtp_|loopback_|strict_rtp|prompt_|record_|dial_|overload_)", "Media"),
    (r"^(data_dir|database_|db_|journal_)", "Storage"),
    (r"^(node_|workers)", "Nodes (several on one PostgreSQL)"),
    (r"^(host|port|public_base_url|console|keepalive_|log_level|loop|http)", "HTTP API"),
)
OTHER = "Other"
ORDER = (
    None,
    "HTTP API",
    "Authentication of API callers",
    "Storage",
    "Nodes (several on one PostgreSQL)",
    "SIP",
    "SIP authentication and access",
    "TLS and SRTP",
    "Media",
    "Notifications (callbacks)",
    OTHER,
)
"""The panels in the order ``--help`` shows them."""


def panel_of(name: str) -> str | None:
    """The panel of option ``name`` (its parameter name); ``None``: the default panel."""
    for pattern, panel in RULES:
        if re.search(pattern, name):
            return panel or None
    return OTHER


class ServeCommand(TyperCommand):
    """A command whose options each show in the panel :func:`panel_of` gives (unless the
    option names its own ``rich_help_panel``), the panels in :data:`ORDER`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if getattr(param, "rich_help_panel", None) is None and param.name:
                param.rich_help_panel = panel_of(param.name)  # type: ignore[attr-defined]

        def rank(param: Any) -> int:
            panel = getattr(param, "rich_help_panel", None)
            return ORDER.index(panel) if panel in ORDER else len(ORDER)

        self.params.sort(key=rank)
