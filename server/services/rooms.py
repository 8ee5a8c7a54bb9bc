"""Rooms: the live streams that others may watch.

Every live stream is a room, found by its session id and, when its start
named one, by `room` (unique among the live streams of one tenant). Viewers
of a room get what its speaker gets of the transcript (partials, finals,
alerts, countdowns), starting with the finals so far; a tenant's board gets
every room of the tenant.

No I/O here: a viewer is a bounded queue that the edge drains into its
socket. A slow viewer never slows the speaker or other viewers: when its
queue is full the oldest partial goes (a newer one says more); finals are
never dropped, so a viewer too slow even for those is told so and closed.

Edges that share a PostgreSQL history share their rooms: `bus` (set by the
edge, edge/room_bus.py) carries what happens to this edge's rooms to the
others, and `apply` takes theirs; a room held on another edge is `remote`
here, watched and listed like a local one."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import time
from collections import Counter, deque
from dataclasses import dataclass

from ..wire.errors import ErrorCode, ProtocolError
from ..wire import events

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


@dataclass(frozen=True)
class ViewerCaps:
    """How many viewers and boards may be connected at once: in all, from one
    address, with one viewer token, of one tenant; and slots only boards take."""
    total: int
    per_ip: int
    per_token: int
    per_tenant: int
    for_boards: int


@dataclass(frozen=True)
class ViewerSlot:
    """What one connected viewer or board holds a slot as."""
    board: bool
    ip: str | None
    tenant: str | None       # whose share it takes; None: an admin's, or a server without keys (one tenant)
    token: str | None        # the room's viewer token, when it came with one


class NoViewerSlot(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class ViewerSlots:
    """The viewer slots held now. Each address, token and tenant gets a share,
    so that one of them cannot take every slot and shut the others out, and
    boards (a tenant's or an admin's view of everything) keep slots of their own."""

    def __init__(self):
        self.boards = 0
        self.viewers = 0
        self.by_ip: Counter[str] = Counter()
        self.by_token: Counter[str] = Counter()
        self.by_tenant: Counter[str] = Counter()

    def take(self, slot: ViewerSlot, caps: ViewerCaps) -> None:
        """Hold a slot, or NoViewerSlot saying which limit (and its flag) refused it."""
        if self.boards + self.viewers >= caps.total:
            raise NoViewerSlot(503, ErrorCode.OVERLOADED, f"server is at its limit of {caps.total} viewers "
                                                          "(--max-viewers); retry later")
        if not slot.board and self.viewers >= caps.total - caps.for_boards:
            raise NoViewerSlot(503, ErrorCode.OVERLOADED,
                               f"room viewers are at their limit of {caps.total - caps.for_boards} (--max-viewers "
                               "less --viewers-reserved-for-boards); retry later")
        if slot.ip is not None and self.by_ip[slot.ip] >= caps.per_ip:
            raise NoViewerSlot(429, ErrorCode.IP_LIMIT, f"{slot.ip} has {caps.per_ip} viewers connected, this "
                                                        "server's limit per address (--max-viewers-per-ip)")
        if slot.token is not None and self.by_token[slot.token] >= caps.per_token:
            raise NoViewerSlot(429, ErrorCode.KEY_LIMIT, f"this viewer token has {caps.per_token} viewers "
                                                         "connected, its limit (--max-viewers-per-token)")
        if slot.tenant is not None and self.by_tenant[slot.tenant] >= caps.per_tenant:
            raise NoViewerSlot(429, ErrorCode.KEY_LIMIT, f"tenant {slot.tenant!r} has {caps.per_tenant} viewers "
                                                         "and boards connected, its limit (--max-viewers-per-tenant)")
        self._count(slot, 1)

    def give_back(self, slot: ViewerSlot) -> None:
        self._count(slot, -1)

    def _count(self, slot: ViewerSlot, n: int) -> None:
        if slot.board:
            self.boards += n
        else:
            self.viewers += n
        for counter, key in ((self.by_ip, slot.ip), (self.by_token, slot.token), (self.by_tenant, slot.tenant)):
            if key is not None:
                counter[key] += n
                if not counter[key]:
                    del counter[key]        # no entry left behind per address that came once


def _same_line(a: dict, b: dict) -> bool:
    return a.get("utterance") == b.get("utterance") and a.get("channel") == b.get("channel") and \
        a.get("room") == b.get("room")


class Room:
    def __init__(self, name: str, session_id: str, owner: str | None, details: dict, token: str,
                 remote: bool = False):
        self.name = name
        self.remote = remote                # its stream is on another edge
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

    def record(self, wire: dict) -> None:
        """Keep what late joiners and the board need of an event viewers get."""
        kind = wire["type"]
        if kind == "final":
            self.backlog.append(wire)
            self.finals += 1
        if kind in ("partial", "final"):
            self.last_line = wire
        elif kind == "alert":
            self.alerts.append(wire)


class Rooms:
    """The live rooms of this edge, and the boards watching them."""

    def __init__(self, viewer_queue: int = VIEWER_QUEUE, token_key: bytes | None = None):
        self.viewer_queue = viewer_queue
        # Per process unless the edges share one (then a token works on every edge, across restarts).
        self._token_key = token_key or secrets.token_bytes(32)
        self.bus = None                                  # callable(message): tell the other edges
        self.by_session: dict[str, Room] = {}
        self.by_name: dict[tuple[str | None, str], Room] = {}
        self.boards: dict[Viewer, str | None] = {}       # board -> its tenant (None: all)
        self.slots = ViewerSlots()                       # held by the viewers and boards connected here

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
        self._add(room, name)
        self._tell({"op": "open", "session_id": session_id, "owner": owner, "name": name, "details": details,
                    "started_at": room.started_at})
        return room

    def _add(self, room: Room, name: str | None) -> None:
        self.by_session[room.session_id] = room
        if name is not None:
            self.by_name[(room.owner, name)] = room
        self._to_boards(room.owner, {"type": "room_opened", **room.summary()})

    def publish(self, room: Room, event: events.Event) -> None:
        """An event of this edge's stream: to the room's viewers, and the other edges'."""
        if isinstance(event, SHARED):
            wire = event.to_wire()
            self._deliver(room, wire)
            self._tell({"op": "event", "session_id": room.session_id, "event": wire})

    def _deliver(self, room: Room, wire: dict) -> None:
        room.record(wire)
        for viewer in room.viewers:
            viewer.offer(wire)
        if self.boards:
            self._to_boards(room.owner, {**wire, "room": room.name, "session_id": room.session_id})

    def close(self, room: Room, outcome: str | None) -> None:
        if room.closed:
            return
        if not room.remote:
            self._tell({"op": "close", "session_id": room.session_id, "outcome": outcome})
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
        if not room.remote:
            self._tell({"op": "left", "session_id": room.session_id})

    # ---- other edges' rooms -----------------------------------------------
    def _tell(self, message: dict) -> None:
        if self.bus is not None:
            self.bus(message)

    def announce(self) -> None:
        """Tell the other edges of every room held here (an edge that just started asked)."""
        for room in list(self.by_session.values()):
            if not room.remote:
                name = None if room.name == room.session_id else room.name
                self._tell({"op": "open", "session_id": room.session_id, "owner": room.owner, "name": name,
                            "details": room.details, "started_at": room.started_at})
                if room.speaker_left:
                    self._tell({"op": "left", "session_id": room.session_id})

    def apply(self, message: dict) -> None:
        """What happened to a room held by another edge (a message of its bus)."""
        op, session_id = message.get("op"), message.get("session_id")
        room = self.by_session.get(session_id)
        if op == "open" and room is None:
            owner, name = message.get("owner"), message.get("name")
            room = Room(name or session_id, session_id, owner, message.get("details") or {},
                        self.token_for(owner, name or session_id), remote=True)
            room.started_at = message.get("started_at") or room.started_at
            held = self.by_name.get((owner, name)) if name is not None else None
            self._add(room, name if held is None or held.speaker_left else None)
        elif room is None or not room.remote:
            return
        elif op == "event" and isinstance(message.get("event"), dict):
            self._deliver(room, message["event"])
        elif op == "left":
            room.speaker_left = True
        elif op == "close":
            self.close(room, message.get("outcome"))

    def drop_remote(self) -> None:
        """The bus was lost: the other edges' rooms are no longer followed (they come back on reconnect)."""
        for room in [r for r in self.by_session.values() if r.remote]:
            self.close(room, "edge_unreachable")

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
