"""Room events between edges that share a PostgreSQL history, through its
LISTEN/NOTIFY (no other broker): each edge tells the others what happens to
its rooms (opened, an event, the speaker left, closed) and applies theirs
(rooms.Rooms.apply), so a viewer or board on any edge follows a stream on
any other.

A notification holds at most 8000 bytes: a final too large for one travels
without its word timings, and one still too large is not sent (logged).
An edge that starts asks the others to announce their rooms; the finals
they had before that are not replayed. When the database is unreachable
the bus reconnects every few seconds; meanwhile the other edges' rooms are
closed here with reason `edge_unreachable`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid

from ..rooms import Rooms

log = logging.getLogger("lingting.rooms")
CHANNEL = "lingting_rooms"
MAX_PAYLOAD = 7900            # PostgreSQL's limit is 8000 bytes
MAX_WAITING = 10000           # messages held while the database is away; partials go first
RECONNECT_S = 2.0


def encode(message: dict) -> str | None:
    """The message as a notification payload; None when it cannot fit."""
    payload = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
    if len(payload.encode()) <= MAX_PAYLOAD:
        return payload
    event = message.get("event")
    if isinstance(event, dict) and "words" in event:
        return encode({**message, "event": {k: v for k, v in event.items() if k != "words"}})
    return None


class RoomBus:
    def __init__(self, url: str, rooms: Rooms):
        self.url = url
        self.rooms = rooms
        self.edge = uuid.uuid4().hex[:12]
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
        return await psycopg.AsyncConnection.connect(self.url, autocommit=True, application_name="lingting-rooms")

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
        try:
            message = json.loads(payload)
            if message.get("edge") == self.edge:
                return
            if message.get("op") == "hello":
                self.rooms.announce()
            else:
                self.rooms.apply(message)
        except Exception:
            log.exception("room bus: cannot apply %.200s", payload)

    async def _send(self) -> None:
        message = None
        while True:
            try:
                async with await self._connect() as db:
                    while True:
                        if message is None:
                            message = await self._waiting.get()
                        payload = encode(message)
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
