"""A built-in webhook receiver: ``POST /inbox/{name}`` takes Graph notifications (a
``callbackUri`` that works out of the box), checks each one's bearer token as a real receiver
must (signature with the service's callback key, issuer, audience = an app id, lifetime), and
keeps the deliveries for the console to show.

Limits: ``MAX_BODY`` bytes per delivery (413 past it), ``MAX_PER_INBOX`` deliveries per name
and ``MAX_INBOXES`` names (the oldest dropped first), names of ``[A-Za-z0-9_-]{1,64}`` (404
otherwise). A delivery whose token does not verify is answered 401 (so the sender retries, as
against a real receiver) and kept, marked, without its body.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any, Final

import jwt
from jwt.algorithms import RSAAlgorithm

from ..journal import Hub

MAX_BODY: Final = 256 * 1024
MAX_PER_INBOX: Final = 200
MAX_INBOXES: Final = 32
NAME: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    inbox: str
    at: float
    valid: bool
    reason: str
    """Why the token was refused ("" when valid)."""
    app_id: str | None
    call_id: str | None
    body: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        notes = (self.body or {}).get("value") or []
        return {
            "id": self.id,
            "inbox": self.inbox,
            "at": self.at,
            "valid": self.valid,
            "reason": self.reason,
            "call": self.call_id,
            "changes": [_change(n) for n in notes if isinstance(n, dict)],
            "body": self.body,
        }


def _change(note: dict[str, Any]) -> dict[str, Any]:
    """One notification of a delivery, in short. Its ``resourceData`` is a resource (a call,
    an operation) or, for a roster update, the list of participants; a sender may put anything
    there."""
    data = note.get("resourceData")
    if isinstance(data, list):
        data = {"@odata.type": "participants"}
    elif not isinstance(data, dict):
        data = {}
    return {
        "changeType": note.get("changeType"),
        "resourceUrl": note.get("resourceUrl"),
        "type": data.get("@odata.type"),
        "state": data.get("state"),
        "status": data.get("status"),
    }


class Inbox:
    def __init__(
        self, *, issuer: str, secret: str | None, jwks: dict[str, Any], hub: Hub | None = None
    ) -> None:
        self._issuer = issuer
        self._secret = secret
        self._rsa = {k["kid"]: RSAAlgorithm.from_jwk(json.dumps(k)) for k in jwks.get("keys", [])}
        self._boxes: OrderedDict[str, deque[Delivery]] = OrderedDict()
        self._ids = itertools.count(1)
        self.hub = hub

    def verify(self, authorization: str | None) -> tuple[dict[str, Any] | None, str]:
        """The token's claims, or ``None`` and why not."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None, "no bearer token"
        try:
            header = jwt.get_unverified_header(token)
            alg = header.get("alg")
            if alg == "RS256":
                key: Any = self._rsa.get(str(header.get("kid"))) or next(
                    iter(self._rsa.values()), None
                )
            elif alg == "HS256":
                key = self._secret
            else:
                return None, f"algorithm {alg!r} is not the service's"
            if key is None:
                return None, f"no {alg} key to check it with"
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                issuer=self._issuer,
                options={"require": ["exp", "iss", "aud"], "verify_aud": False},
            )
        except jwt.PyJWTError as exc:
            return None, f"token refused: {exc}"
        if not isinstance(claims.get("aud"), str):
            return None, "token refused: no audience (app id)"
        return claims, ""

    def take(self, name: str, authorization: str | None, raw: bytes) -> Delivery:
        claims, reason = self.verify(authorization)
        body: dict[str, Any] | None = None
        if claims is not None:
            try:
                parsed = json.loads(raw)
                body = parsed if isinstance(parsed, dict) else None
            except (ValueError, UnicodeDecodeError):
                body = None
            if body is None:
                claims, reason = None, "the body is not a JSON object"
        delivery = Delivery(
            next(self._ids),
            name,
            time.time(),
            claims is not None,
            reason,
            str(claims["aud"]) if claims else None,
            str(claims.get("callId")) if claims and claims.get("callId") else None,
            body,
        )
        box = self._boxes.get(name)
        if box is None:
            box = self._boxes[name] = deque(maxlen=MAX_PER_INBOX)
            while len(self._boxes) > MAX_INBOXES:
                self._boxes.popitem(last=False)
        box.append(delivery)
        if self.hub is not None:
            self.hub.publish({"type": "inbox", "app": delivery.app_id, "delivery": delivery.id})
        return delivery

    def deliveries(self, app_id: str, name: str | None = None) -> list[Delivery]:
        """What ``app_id`` may see, newest first: its verified deliveries, and refused ones
        (their bodies were never kept)."""
        boxes = [self._boxes.get(name, deque())] if name else list(self._boxes.values())
        out = [d for box in boxes for d in box if d.app_id in (app_id, None)]
        return sorted(out, key=lambda d: d.id, reverse=True)
