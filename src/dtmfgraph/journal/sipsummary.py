"""A SIP message in a few fields for a ladder diagram, without a full parse (never raises)."""

from __future__ import annotations

from typing import Any, Final

MAX_TEXT: Final = 8192
"""Characters of a message's text kept for "show the full message" (the rest is cut)."""
_HEAD_LINES: Final = 80


def summarize(data: bytes) -> dict[str, Any]:
    """First line, method or status, Call-ID, CSeq, and a one-line SDP gist of ``data``."""
    text = data.decode("utf-8", errors="replace")
    head, _, body = text.partition("\r\n\r\n")
    if not _:
        head, _, body = text.partition("\n\n")
    lines = head.splitlines()[:_HEAD_LINES]
    first = lines[0].strip() if lines else ""
    out: dict[str, Any] = {"first": first[:200]}
    parts = first.split(" ", 2)
    if parts and parts[0].startswith("SIP/"):
        status = parts[1] if len(parts) > 1 else ""
        out["status"] = int(status) if status.isdigit() else 0
        out["label"] = f"{status} {parts[2] if len(parts) > 2 else ''}".strip()
    else:
        out["method"] = parts[0][:32] if parts else "?"
        out["label"] = out["method"]
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            continue
        key = name.strip().lower()
        if key in ("call-id", "i"):
            out["call_id"] = value.strip()[:256]
        elif key == "cseq":
            out["cseq"] = value.strip()[:64]
    gist = sdp_gist(body)
    if gist:
        out["sdp"] = gist
    out["text"] = text[:MAX_TEXT]
    if len(text) > MAX_TEXT:
        out["cut"] = len(text) - MAX_TEXT
    return out


def sdp_gist(body: str) -> str:
    """``c=`` address, ``m=`` line and direction of an SDP body, or ``""``."""
    if "m=" not in body:
        return ""
    keep = []
    for raw in body.splitlines()[:_HEAD_LINES]:
        line = raw.strip()
        directions = ("a=sendonly", "a=recvonly", "a=inactive", "a=sendrecv")
        event = line.startswith("a=rtpmap:") and "telephone-event" in line
        if line.startswith(("c=", "m=")) or line in directions or event:
            keep.append(line)
        elif line.startswith("a=crypto:"):
            keep.append("a=crypto")
    return " ".join(keep)[:300]


def is_initial_invite(summary: dict[str, Any]) -> bool:
    """An INVITE request (a re-INVITE too: the caller only links unknown Call-IDs)."""
    return summary.get("method") == "INVITE"
