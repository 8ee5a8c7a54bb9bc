"""Where a stream's text goes besides its own connection: its room (by name),
webhooks (signed
JSON, delivered from a durable outbox) and caption outputs (YouTube Live,
Zoom, OBS). Parsing and signing only; delivery is the edge's
(edge/webhooks.py, edge/captions.py).

Signature: X-Lingting-Signature: t=UNIX_SECONDS,v1=HEX where HEX is
HMAC-SHA256(secret, f"{t}.{body}"); a receiver recomputes it and refuses
timestamps older than a few minutes (a replayed request)."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ..wire.errors import require

ROOM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
WEBHOOK_EVENTS = ("final", "alert", "session_end")
CAPTION_TYPES = ("youtube", "zoom", "obs")
MAX_TARGETS = 4
MAX_URL_CHARS = 2048
MIN_SECRET_CHARS = 16
SIGNATURE_HEADER = "X-Lingting-Signature"
SIGNATURE_TOLERANCE_S = 300


@dataclass(frozen=True)
class WebhookTarget:
    url: str
    secret: str = field(repr=False)
    events: frozenset[str] = frozenset(WEBHOOK_EVENTS)

    def to_wire(self) -> dict:       # never the secret
        return {"url": self.url, "events": sorted(self.events)}


@dataclass(frozen=True)
class CaptionTarget:
    type: str                        # youtube | zoom | obs
    url: str                         # the ingestion / caption token URL; obs: ws://host:port
    lang: str | None = None          # zoom: the caption language (en-US)
    password: str | None = field(default=None, repr=False)   # obs-websocket's

    def to_wire(self) -> dict:
        out = {"type": self.type, "url": redacted_url(self.url)}
        if self.lang:
            out["lang"] = self.lang
        return out


def redacted_url(url: str) -> str:
    """A URL as history may keep it: caption URLs carry their secret in the query."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}" + ("?..." if parts.query else "")


def parse_room(value) -> str | None:
    if value is None:
        return None
    require(isinstance(value, str) and bool(ROOM_NAME.fullmatch(value)),
            "room must be 1..64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return value


def _url(value, what: str, schemes: tuple[str, ...]) -> str:
    require(isinstance(value, str) and 0 < len(value) <= MAX_URL_CHARS,
            f"{what} must be a URL of at most {MAX_URL_CHARS} characters")
    parts = urlsplit(value)
    require(parts.scheme in schemes and bool(parts.hostname) and not parts.username and not parts.password,
            f"{what} must be a {' or '.join(s + '://' for s in schemes)} URL with a host (and no user:password@)")
    try:
        parts.port
    except ValueError:
        require(False, f"{what} has an invalid port")
    return value


def _list(value, what: str) -> list:
    require(isinstance(value, list) and len(value) <= MAX_TARGETS and all(isinstance(v, dict) for v in value),
            f"{what} must be a list of at most {MAX_TARGETS} maps")
    return value


def parse_webhooks(value) -> tuple[WebhookTarget, ...]:
    """start.webhooks: [{"url": "https://...", "secret": "...", "events": ["final", "alert", "session_end"]}]"""
    targets = []
    for n, entry in enumerate(_list(value, "webhooks")):
        unknown = set(entry) - {"url", "secret", "events"}
        require(not unknown, f"webhooks[{n}]: unknown field(s) {', '.join(sorted(unknown))}")
        secret = entry.get("secret")
        require(isinstance(secret, str) and MIN_SECRET_CHARS <= len(secret) <= 256,
                f"webhooks[{n}].secret must be a string of {MIN_SECRET_CHARS}..256 characters (it signs the requests)")
        kinds = entry.get("events", list(WEBHOOK_EVENTS))
        require(isinstance(kinds, list) and kinds and all(k in WEBHOOK_EVENTS for k in kinds),
                f"webhooks[{n}].events must be a list of {', '.join(WEBHOOK_EVENTS)}")
        targets.append(WebhookTarget(_url(entry.get("url"), f"webhooks[{n}].url", ("https", "http")), secret,
                                     frozenset(kinds)))
    return tuple(targets)


def parse_captions(value) -> tuple[CaptionTarget, ...]:
    """start.captions: [{"type": "youtube", "url": ...}, {"type": "zoom", "url": ..., "lang": "en-US"},
    {"type": "obs", "url": "ws://127.0.0.1:4455", "password": ...}]"""
    targets = []
    for n, entry in enumerate(_list(value, "captions")):
        kind = entry.get("type")
        require(kind in CAPTION_TYPES, f"captions[{n}].type must be one of {', '.join(CAPTION_TYPES)}")
        allowed = {"type", "url"} | ({"lang"} if kind == "zoom" else {"password"} if kind == "obs" else set())
        unknown = set(entry) - allowed
        require(not unknown, f"captions[{n}] ({kind}): unknown field(s) {', '.join(sorted(unknown))}")
        schemes = ("ws", "wss") if kind == "obs" else ("https", "http")
        url = _url(entry.get("url"), f"captions[{n}].url", schemes)
        lang = entry.get("lang", "en-US" if kind == "zoom" else None)
        require(lang is None or (isinstance(lang, str) and 0 < len(lang) <= 16),
                f"captions[{n}].lang must be a language tag such as en-US")
        password = entry.get("password")
        require(password is None or (isinstance(password, str) and len(password) <= 256),
                f"captions[{n}].password must be a string")
        targets.append(CaptionTarget(kind, url, lang, password))
    return tuple(targets)


# ---- signatures ---------------------------------------------------------
def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def verify(secret: str, header: str, body: bytes, now: float | None = None,
           tolerance_s: float = SIGNATURE_TOLERANCE_S) -> bool:
    """What a receiver does: the signature matches and is recent."""
    try:
        fields = dict(item.split("=", 1) for item in header.split(","))
        t = int(fields["t"])
    except (ValueError, KeyError):
        return False
    if abs((time.time() if now is None else now) - t) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, body, t), f"t={t},v1={fields.get('v1', '')}")
