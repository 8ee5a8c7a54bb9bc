"""Room events between edges that share a PostgreSQL history, through its
LISTEN/NOTIFY (no other broker): each edge tells the others what happens to
its rooms (opened, an event, the speaker left, closed) and applies theirs
(rooms.Rooms.apply), so a viewer or board on any edge follows a stream on
any other.

Any role that can connect to the database may LISTEN and NOTIFY on any
channel (PostgreSQL has no privilege for either), so every message is
sealed with a key only the edges hold: the bus's shared secret in the
edges' `lingting_secrets` table. Sealed means encrypted (an intruder hears
ciphertext) and authenticated (what it sends is dropped), and stamped with
its edge's sequence number and time (a replay is dropped too). The seal is
AES-256-GCM from `cryptography` (a well-kept AEAD rather than one of our
own), keyed by HKDF-SHA256 from that secret, with a random 96-bit nonce each.

A notification holds at most 8000 bytes: a final too large for one travels
without its word timings, and one still too large is not sent (logged).
An edge that starts asks the others to announce their rooms; the finals
they had before that are not replayed. When the database is unreachable
the bus reconnects every few seconds; meanwhile the other edges' rooms are
closed here with reason `edge_unreachable`."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from ..services.rooms import Rooms

if TYPE_CHECKING:   # imported when a bus starts: `cryptography` comes with the postgres and cluster extras
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

log = logging.getLogger("lingting.rooms")
CHANNEL = "lingting_rooms"
SECRET_NAME = "room_bus"      # its row in lingting_secrets
MAX_PAYLOAD = 7900            # PostgreSQL's limit is 8000 bytes
VERSION = "2."                # sealed payloads start with it (1.: the SHAKE-256/HMAC seal before it)
NONCE, TAG = 12, 16           # AES-GCM's
# The JSON a sealed payload of MAX_PAYLOAD holds (base64: 3 bytes in 4 characters).
MAX_PLAIN = (MAX_PAYLOAD - len(VERSION)) // 4 * 3 - NONCE - TAG
MAX_AGE_S = 120.0             # older (or further ahead: clock skew) messages are refused as replays
MAX_WAITING = 10000           # messages held while the database is away; partials go first
RECONNECT_S = 2.0
WARN_EVERY_S = 60.0           # refused messages: one warning a minute, with their count


def encode(message: dict) -> str | None:
    """The message as JSON that still fits a notification once sealed; None when it cannot."""
    payload = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
    if len(payload.encode()) <= MAX_PLAIN:
        return payload
    event = message.get("event")
    if isinstance(event, dict) and "words" in event:
        return encode({**message, "event": {k: v for k, v in event.items() if k != "words"}})
    return None


@dataclass(frozen=True)
class BusKey:
    aead: AESGCM

    @classmethod
    def from_secret(cls, secret: bytes) -> BusKey:
        """The AES-256 key, derived from the edges' shared secret (HKDF, labelled for this use)."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"lingting room bus v2: aes-256-gcm")
        return cls(AESGCM(key.derive(secret)))


def seal(key: BusKey, plaintext: bytes) -> str:
    """Random nonces: a repeat is unlikely (2^-33) before 2^32 messages under one key."""
    nonce = secrets.token_bytes(NONCE)
    sealed = key.aead.encrypt(nonce, plaintext, VERSION.encode())   # the version is authenticated too
    return VERSION + base64.b64encode(nonce + sealed).decode("ascii")


def open_sealed(key: BusKey, payload: str) -> bytes | None:
    """The plaintext; None unless sealed with this key and unchanged."""
    from cryptography.exceptions import InvalidTag
    if not payload.startswith(VERSION):
        return None
    try:
        raw = base64.b64decode(payload[len(VERSION):], validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) < NONCE + TAG:
        return None
    try:
        return key.aead.decrypt(raw[:NONCE], raw[NONCE:], VERSION.encode())
    except InvalidTag:
        return None


@dataclass
class Freshness:
    """Refuses replays: each edge's sequence numbers only go up, and a message
    older than the window (an edge not heard from since) is refused anyway."""
    max_age_s: float = MAX_AGE_S
    last: dict[str, tuple[int, float]] = field(default_factory=dict)    # edge -> (its last seq, when heard)

    def accept(self, edge, seq, sent_at, now: float) -> bool:
        if not isinstance(edge, str) or type(seq) is not int or not isinstance(sent_at, (int, float)):
            return False
        if abs(now - sent_at) > self.max_age_s:
            return False
        previous = self.last.get(edge)
        if previous is not None and seq <= previous[0]:
            return False
        self.last[edge] = (seq, now)
        if len(self.last) > 256:      # edges gone for longer than the window: their replays fail the age check
            self.last = {e: v for e, v in self.last.items() if now - v[1] <= self.max_age_s}
        return True


class RoomBus:
    def __init__(self, url: str, rooms: Rooms, clock: Callable[[], float] = time.time):
        self.url = url
        self.rooms = rooms
        self.clock = clock
        self.edge = uuid.uuid4().hex[:12]
        self.key: BusKey | None = None       # read from the database at the first connection
        self._seq = 0
        self._fresh = Freshness()
        self._refused = 0
        self._warned_at = -WARN_EVERY_S
        self._waiting: asyncio.Queue[dict] = asyncio.Queue()
        self._tasks: list[asyncio.Task] = []
        self.connected = asyncio.Event()

    async def start(self) -> None:
        self.rooms.bus = self.send
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._listen()), loop.create_task(self._send())]
        try:    # the first connection at once, so a room opened right after start is known to the others
            await asyncio.wait_for(self.connected.wait(), 10)
        except asyncio.TimeoutError:
            log.warning("room bus: no connection to the history database yet; retrying in the background")

    def send(self, message: dict) -> None:
        if self._waiting.qsize() >= MAX_WAITING:
            if message.get("event", {}).get("type") == "partial":
                return
            log.warning("room bus: %d messages waiting for the database; dropping the oldest", MAX_WAITING)
            self._waiting.get_nowait()
        self._waiting.put_nowait({**message, "edge": self.edge})

    async def close(self) -> None:
        self.rooms.bus = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _connect(self):
        import psycopg
        db = await psycopg.AsyncConnection.connect(self.url, autocommit=True, application_name="lingting-rooms")
        if self.key is None:
            try:
                self.key = BusKey.from_secret(await _shared_secret(db))
            except BaseException:
                await db.close()
                raise
        return db

    async def _listen(self) -> None:
        while True:
            try:
                async with await self._connect() as db:
                    await db.execute(f"LISTEN {CHANNEL}")
                    self.connected.set()
                    self.send({"op": "hello"})            # the others announce their rooms
                    async for note in db.notifies():
                        self._received(note.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.connected.is_set():
                    log.warning("room bus: lost the database (%s); reconnecting", exc)
                    self.rooms.drop_remote()
                self.connected.clear()
            await asyncio.sleep(RECONNECT_S)

    def _received(self, payload: str) -> None:
        plaintext = open_sealed(self.key, payload) if self.key else None
        try:
            message = json.loads(plaintext) if plaintext is not None else None
        except ValueError:
            message = None
        if not isinstance(message, dict):
            return self._refuse("not sealed with the edges' key")
        if message.get("edge") == self.edge:
            return
        if not self._fresh.accept(message.get("edge"), message.get("seq"), message.get("t"), self.clock()):
            return self._refuse("replayed, or older than %g s" % MAX_AGE_S)
        try:
            if message.get("op") == "hello":
                self.rooms.announce()
            else:
                self.rooms.apply(message)
        except Exception:       # the text of a room's events stays out of the log
            log.exception("room bus: cannot apply a %s message of %s", message.get("op"), message.get("session_id"))

    def _refuse(self, why: str) -> None:
        """Dropped; said once a minute at most (a flood of forgeries must not flood the log)."""
        self._refused += 1
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_S:
            log.warning("room bus: refused %d message(s) on channel %s (last: %s); another database role "
                        "may be sending on it: see docs/cluster.md on locking the database down",
                        self._refused, CHANNEL, why)
            self._refused, self._warned_at = 0, now

    def _sealed(self, message: dict) -> str | None:
        self._seq += 1
        payload = encode({**message, "seq": self._seq, "t": self.clock()})
        return None if payload is None else seal(self.key, payload.encode())

    async def _send(self) -> None:
        message = None
        while True:
            try:
                async with await self._connect() as db:
                    while True:
                        if message is None:
                            message = await self._waiting.get()
                        payload = self._sealed(message)
                        if payload is None:
                            log.warning("room bus: a %s message of %s is too large to send", message.get("op"),
                                        message.get("session_id"))
                        else:
                            await db.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
                        message = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("room bus: cannot send (%s); reconnecting", exc)
            await asyncio.sleep(RECONNECT_S)


async def _shared_secret(db) -> bytes:
    """The bus's key material, made by the first edge that asks (as history_pg's
    shared_secret, over this async connection): a role without access to the
    edges' tables cannot read it."""
    await db.execute("INSERT INTO lingting_secrets (name, value) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING",
                     (SECRET_NAME, secrets.token_bytes(32)))
    row = await (await db.execute("SELECT value FROM lingting_secrets WHERE name = %s", (SECRET_NAME,))).fetchone()
    return bytes(row[0])
