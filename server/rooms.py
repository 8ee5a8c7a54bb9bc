"""Rooms: the live streams that others may watch.

Every live stream is a room, found by its session id and, when its start
named one, by `room` (unique among the live streams of one tenant). Viewers
of a room get what its speaker gets of the transcript (partials, finals,
alerts, countdowns), starting with the finals so far; a tenant's board gets
every room of the tenant.

No I/O here: a viewer is a bounded queue that the edge drains into its
socket. A slow viewer never slows the speaker or other viewers: when its
queue is full the oldest partial goes (a newer one says more); finals are
never dropped, so a viewer too slow even for those is told so and closed."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import time
from collections import deque

from .errors import ErrorCode, ProtocolError
from .streaming import events

BACKLOG_FINALS = 500          # a late joiner gets at most this many finals so far
VIEWER_QUEUE = 256            # events waiting for one viewer
RECENT_ALERTS = 20            # kept per room for the board
# What viewers see: the transcript, not the speaker's own protocol traffic.
SHARED = (events.Partial, events.Final, events.Alert, events.Countdown)


class Viewer:
    """One watcher's queue of wire events. `closed_with`: why it ended (a
    room_closed event, or an error for a viewer too slow)."""

    def __init__(self, board: bool = False, limit: int = VIEWER_QUEUE):
        self.board = board
        self.limit = limit
        self.queue: deque[dict] = deque()
        self.ready = asyncio.Event()
        self.dropped_partials = 0
        self.ended = False
        self.room: Room | None = None

    def offer(self, wire: dict) -> None:
        if self.ended:
            return
        if wire["type"] == "partial":
            # A newer partial of the same utterance replaces the one still waiting.
            for i in range(len(self.queue) - 1, -1, -1):
                old = self.queue[i]
                if old["type"] == "partial" and _same_line(old, wire):
                    del self.queue[i]
                    self.dropped_partials += 1
                    break
        if len(self.queue) >= self.limit:
            oldest = next((i for i, w in enumerate(self.queue) if w["type"] == "partial"), None)
            if oldest is None:
                if wire["type"] == "partial":
                    self.dropped_partials += 1
                    return
                self.end({"type": "error", "code": ErrorCode.TOO_SLOW, "fatal": True,
                          "message": f"this viewer fell {self.limit} events behind: closing (finals are never "
                                     "dropped, so a viewer this slow cannot keep up)"})
                return
            del self.queue[oldest]
            self.dropped_partials += 1
        self.queue.append(wire)
        self.ready.set()

    def end(self, last: dict) -> None:
        """The last event; nothing after it."""
        if not self.ended:
            self.queue.append(last)
            self.ended = True
            self.ready.set()

    async def next(self) -> dict | None:
        """The next event to send; None once the last was sent."""
        while not self.queue:
            if self.ended:
                return None
            self.ready.clear()
            await self.ready.wait()
        return self.queue.popleft()


def _same_line(a: dict, b: dict) -> bool:
    return a.get("utterance") == b.get("utterance") and a.get("channel") == b.get("channel") and \
        a.get("room") == b.get("room")


class Room:
    def __init__(self, name: str, session_id: str, owner: str | None, details: dict, token: str):
        self.name = name
        self.session_id = session_id
        self.owner = owner                  # the tenant (key name); None on a server without keys
        self.token = token
        self.speaker_left = False           # its name may pass to the speaker's next stream (a reconnect)
        self.details = details              # mode, language, model, channel labels: shown to viewers
        self.started_at = time.time()
        self.backlog: deque[dict] = deque(maxlen=BACKLOG_FINALS)
        self.finals = 0
        self.last_line: dict | None = None  # the newest partial or final, for the board
        self.alerts: deque[dict] = deque(maxlen=RECENT_ALERTS)
        self.viewers: set[Viewer] = set()
        self.closed = False

    def summary(self) -> dict:
        return {"room": self.name, "session_id": self.session_id, "started_at": self.started_at,
                **self.details, "finals": self.finals, "viewers": len(self.viewers),
                "last": self.last_line, "alerts": list(self.alerts)}

    def joined(self, viewer: Viewer) -> None:
        """A new viewer: the room, then the finals so far, then live."""
        viewer.offer({"type": "room", **self.summary(), "backlog": len(self.backlog),
                      "backlog_truncated": self.finals > len(self.backlog)})
        for final in self.backlog:
            viewer.offer(final)
        viewer.room = self
        self.viewers.add(viewer)

    def shared(self, event: events.Event) -> dict | None:
        """The event as viewers get it (None: not theirs), kept for late joiners and the board."""
        if not isinstance(event, SHARED):
            return None
        wire = event.to_wire()
        if isinstance(event, events.Final):
            self.backlog.append(wire)
            self.finals += 1
        if isinstance(event, (events.Partial, events.Final)):
            self.last_line = wire
        elif isinstance(event, events.Alert):
            self.alerts.append(wire)
        return wire


class Rooms:
    """The live rooms of this edge, and the boards watching them."""

    def __init__(self, viewer_queue: int = VIEWER_QUEUE):
        self.viewer_queue = viewer_queue
        self._token_key = secrets.token_bytes(32)        # tokens last as long as this server
        self.by_session: dict[str, Room] = {}
        self.by_name: dict[tuple[str | None, str], Room] = {}
        self.boards: dict[Viewer, str | None] = {}       # board -> its tenant (None: all)

    def token_for(self, owner: str | None, name: str) -> str:
        """A room's viewer token: the same for every stream of one name, so a
        shared link keeps working when the speaker reconnects."""
        digest = hmac.new(self._token_key, f"{owner or ''}\0{name}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:24]).decode()

    def check_free(self, owner: str | None, name: str | None) -> None:
        held = self.by_name.get((owner, name)) if name is not None else None
        if held is not None and not held.speaker_left:
            raise ProtocolError(ErrorCode.ROOM_TAKEN, f"room {name!r} is in use by another live stream; "
                                                      "choose another name, or leave room out")

    def open(self, session_id: str, owner: str | None, name: str | None, details: dict) -> Room:
        self.check_free(owner, name)
        room = Room(name or session_id, session_id, owner, details, self.token_for(owner, name or session_id))
        self.by_session[session_id] = room
        if name is not None:
            self.by_name[(owner, name)] = room
        self._to_boards(owner, {"type": "room_opened", **room.summary()})
        return room

    def publish(self, room: Room, event: events.Event) -> None:
        wire = room.shared(event)
        if wire is None:
            return
        for viewer in room.viewers:
            viewer.offer(wire)
        if self.boards:
            self._to_boards(room.owner, {**wire, "room": room.name, "session_id": room.session_id})

    def close(self, room: Room, outcome: str | None) -> None:
        if room.closed:
            return
        room.closed = True
        self.by_session.pop(room.session_id, None)
        if self.by_name.get((room.owner, room.name)) is room:
            del self.by_name[(room.owner, room.name)]
        last = {"type": "room_closed", "room": room.name, "session_id": room.session_id,
                "reason": outcome or "disconnected", "finals": room.finals}
        for viewer in room.viewers:
            viewer.end(last)
        room.viewers.clear()
        self._to_boards(room.owner, last)

    # ---- finding a room -------------------------------------------------
    def speaker_left(self, room: Room) -> None:
        """Its speaker is gone (its last finals may still be decoding): the name is free again."""
        room.speaker_left = True

    def find(self, tenant: str | None, name: str) -> Room | None:
        """A room by name or session id, as this tenant sees it (None: all tenants)."""
        room = self.by_session.get(name)
        if room is None:
            if tenant is not None:
                room = self.by_name.get((tenant, name))
            else:   # an admin (or a server without keys): any tenant's room of that name
                room = next((r for (_, n), r in self.by_name.items() if n == name), None)
        if room is None or (tenant is not None and room.owner != tenant):
            return None
        return room

    def by_token(self, token: str) -> Room | None:
        """The live room of this token (the newest stream, if a reconnect overlaps the last)."""
        found = None
        for room in self.by_session.values():
            if hmac.compare_digest(room.token.encode(), token.encode()):
                found = room if found is None or not room.speaker_left else found
        return found

    def listed(self, tenant: str | None) -> list[Room]:
        return sorted((r for r in self.by_session.values() if tenant is None or r.owner == tenant),
                      key=lambda r: r.started_at)

    # ---- boards ---------------------------------------------------------
    def watch_all(self, tenant: str | None) -> Viewer:
        board = Viewer(board=True, limit=self.viewer_queue * 4)
        board.offer({"type": "rooms", "rooms": [r.summary() for r in self.listed(tenant)]})
        self.boards[board] = tenant
        return board

    def viewer(self) -> Viewer:
        return Viewer(limit=self.viewer_queue)

    def leave(self, viewer: Viewer) -> None:
        self.boards.pop(viewer, None)
        if viewer.room is not None:
            viewer.room.viewers.discard(viewer)

    def shutdown(self) -> None:
        for board in list(self.boards):
            board.end({"type": "error", "code": ErrorCode.SHUTTING_DOWN, "fatal": True,
                       "message": "server is shutting down"})

    def _to_boards(self, owner: str | None, wire: dict) -> None:
        for board, tenant in list(self.boards.items()):
            if tenant is None or tenant == owner:
                board.offer(wire)
