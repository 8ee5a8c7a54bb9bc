"""Who may connect: API keys with per-key limits, and allowed browser origins.

Pure logic on request headers and counters; the edge calls it."""

from __future__ import annotations

import hmac
import time
import tomllib
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from ..wire.errors import ErrorCode

KEY_SUBPROTOCOL_PREFIX = "lingting.key."   # browsers cannot set headers on a WebSocket
OPENAI_KEY_SUBPROTOCOL_PREFIX = "openai-insecure-api-key."   # ...so OpenAI's realtime browser clients do the same


@dataclass(frozen=True)
class ApiKey:
    name: str
    secret: str = field(repr=False)
    max_streams: int = 0                 # 0: no per-key limit
    audio_minutes_per_day: float = 0     # 0: no quota (UTC days)
    admin: bool = False                  # sees every tenant's sessions, not only its own


class AccessDenied(Exception):
    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after


def load_keys(path: str | None = None, env: str | tuple[str, ...] = ()) -> list[ApiKey]:
    """Keys from a TOML file ([[keys]] name, key, max_streams, audio_minutes_per_day)
    and/or LINGTING_API_KEYS (settings.py's --api-keys: "name:key,name2:key2" or
    bare keys, as one string or its items)."""
    keys = []
    if path:
        with open(path, "rb") as f:
            data = tomllib.load(f)
        for n, entry in enumerate(data.get("keys", [])):
            secret = entry.get("key")
            if not isinstance(secret, str) or len(secret) < 16:
                raise ValueError(f"{path}: keys[{n}].key must be a string of at least 16 characters")
            admin = entry.get("admin", False)
            if not isinstance(admin, bool):
                raise ValueError(f"{path}: keys[{n}].admin must be true or false")
            keys.append(ApiKey(str(entry.get("name", f"key{n}")), secret, int(entry.get("max_streams", 0)),
                               float(entry.get("audio_minutes_per_day", 0)), admin))
    items = env.split(",") if isinstance(env, str) else env
    for n, item in enumerate(filter(None, (i.strip() for i in items))):
        name, _, secret = item.rpartition(":")
        if len(secret) < 16:
            raise ValueError("LINGTING_API_KEYS: each key must be at least 16 characters")
        keys.append(ApiKey(name or f"env{n}", secret))
    if len({k.secret for k in keys}) != len(keys):
        raise ValueError("the same API key is configured twice")
    if len({k.name for k in keys}) != len(keys):
        # The name is the tenant: two keys of one name would share sessions.
        raise ValueError("two API keys have the same name")
    return keys


def presented_key(path: str, headers, offered_subprotocols: list[str]) -> str | None:
    auth = headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    if headers.get("X-API-Key"):
        return headers["X-API-Key"].strip()
    for protocol in offered_subprotocols:
        for prefix in (KEY_SUBPROTOCOL_PREFIX, OPENAI_KEY_SUBPROTOCOL_PREFIX):
            if protocol.startswith(prefix):
                return protocol[len(prefix):]
    values = parse_qs(urlsplit(path).query).get("api_key")
    return values[0] if values else None


def client_ip(peer: str | None, headers, trusted_proxies: frozenset[str] = frozenset()) -> str | None:
    """The client's address: the peer's, or, when the peer is a trusted proxy,
    the last address in X-Forwarded-For that is not a trusted proxy itself."""
    if peer not in trusted_proxies:
        return peer
    forwarded = [a.strip() for value in headers.getlist("X-Forwarded-For") for a in value.split(",") if a.strip()]
    for address in reversed(forwarded):
        if address not in trusted_proxies:
            return address
    return peer


LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})


def host_name(host: str) -> str:
    """'Example.com:8765' -> 'example.com'; '[::1]:8765' -> '[::1]'."""
    host = host.strip().lower().rstrip(".")
    if host.startswith("["):
        return host[:host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def offered_subprotocols(headers) -> list[str]:
    return [p.strip() for value in headers.getlist("Sec-WebSocket-Protocol") for p in value.split(",")]


class AccessPolicy:
    def __init__(self, keys: list[ApiKey] = (), allowed_origins: list[str] = (), clock=time.time,
                 allowed_hosts: list[str] = ()):
        self.keys = list(keys)
        self.allowed_origins = {o.rstrip("/") for o in allowed_origins}
        self.allowed_hosts = frozenset(host_name(h) for h in allowed_hosts)
        self.clock = clock
        self.streams: dict[str, int] = {}                 # key name -> open streams
        self._usage: dict[str, tuple[int, float]] = {}    # key name -> (UTC day, audio seconds)

    @property
    def open(self) -> bool:
        return not self.keys

    def authenticate(self, path: str, headers) -> ApiKey | None:
        """The caller's key (None when no keys are configured), or AccessDenied."""
        if self.open:
            return None
        presented = presented_key(path, headers, offered_subprotocols(headers))
        if not presented:
            raise AccessDenied(401, ErrorCode.UNAUTHORIZED, "an API key is required: send it as 'Authorization: Bearer KEY', "
                               "'X-API-Key', the query parameter api_key or the subprotocol lingting.key.KEY")
        return self.key_for(presented)

    def key_for(self, presented: str | None) -> ApiKey | None:
        """The key of this secret (None when no keys are configured), or AccessDenied."""
        if self.open:
            return None
        if not presented:
            raise AccessDenied(401, ErrorCode.UNAUTHORIZED, "an API key is required")
        for key in self.keys:
            if hmac.compare_digest(key.secret.encode(), presented.encode()):
                return key
        raise AccessDenied(401, ErrorCode.UNAUTHORIZED, "unknown API key")

    @staticmethod
    def tenant(key: ApiKey | None) -> str | None:
        """Whose sessions a caller sees: its key's name, or None for all
        (an admin key, or no keys at all: everything is the local user's)."""
        return None if key is None or key.admin else key.name

    def check_host(self, headers) -> None:
        """Without keys, only loopback names (and --allowed-host) are served, so a
        web page whose DNS name is rebound to 127.0.0.1 cannot reach this server.
        With keys, the check applies once --allowed-host names any host."""
        if not (self.open or self.allowed_hosts):
            return
        hosts = headers.getlist("Host")
        host = hosts[0] if len(hosts) == 1 else ", ".join(hosts)   # two Host headers are never ours
        name = host_name(host) if len(hosts) == 1 else ""
        if name in LOOPBACK_HOSTS or name in self.allowed_hosts:
            return
        raise AccessDenied(421, ErrorCode.FORBIDDEN_HOST, f"host {host!r} is not served here: this server answers to "
                           f"{', '.join(sorted(LOOPBACK_HOSTS | self.allowed_hosts))}; start it with "
                           f"--allowed-host {name or 'NAME'} to allow that name")

    def check_origin(self, headers) -> None:
        """Browsers send Origin. Without a configured list only pages from this
        server (same host) may connect, so no other web site can use it."""
        origin = headers.get("Origin")
        if origin is None or "*" in self.allowed_origins or origin.rstrip("/") in self.allowed_origins:
            return
        if not self.allowed_origins and urlsplit(origin).netloc == headers.get("Host", ""):
            return
        raise AccessDenied(403, ErrorCode.FORBIDDEN_ORIGIN, f"origin {origin} is not allowed; start the server with "
                           f"--allowed-origin {origin} to allow it")

    # ---- per-key limits ---------------------------------------------------
    def admit(self, key: ApiKey | None) -> None:
        if key is None:
            return
        if key.max_streams and self.streams.get(key.name, 0) >= key.max_streams:
            raise AccessDenied(429, ErrorCode.KEY_LIMIT, f"key {key.name!r} is at its limit of {key.max_streams} streams",
                               retry_after=5)
        if self.quota_left(key) <= 0:
            raise AccessDenied(429, ErrorCode.QUOTA_EXCEEDED, f"key {key.name!r} has used its {key.audio_minutes_per_day:g} "
                               "audio minutes for today (UTC)", retry_after=self._seconds_to_midnight())

    def opened(self, key: ApiKey | None) -> None:
        if key is not None:
            self.streams[key.name] = self.streams.get(key.name, 0) + 1

    def closed(self, key: ApiKey | None) -> None:
        if key is not None:
            self.streams[key.name] -= 1

    def use_audio(self, key: ApiKey | None, seconds: float) -> bool:
        """Count audio against the key's daily quota; False once it is spent."""
        if key is None:
            return True
        day = int(self.clock() // 86400)
        used_day, used = self._usage.get(key.name, (day, 0.0))
        used = used + seconds if used_day == day else seconds
        self._usage[key.name] = (day, used)
        return self.quota_left(key) > 0

    def quota_left(self, key: ApiKey) -> float:
        if not key.audio_minutes_per_day:
            return float("inf")
        day, used = self._usage.get(key.name, (None, 0.0))
        return key.audio_minutes_per_day * 60 - (used if day == int(self.clock() // 86400) else 0.0)

    def _seconds_to_midnight(self) -> int:
        return int(86400 - self.clock() % 86400) + 1
