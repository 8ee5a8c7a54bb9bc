"""Viewers of live streams.

    WS  /v1/rooms/ROOM/events   one room, read-only: `room`, the finals so far,
                                then live partial/final/alert/countdown, then
                                `room_closed`. The tenant's API key, or the
                                room's viewer token (from the speaker's `ready`):
                                ?token=T or the subprotocol lingting.token.T
    GET /v1/rooms               the tenant's live rooms (API key)
    WS  /v1/rooms               the tenant's board: `rooms`, then every room's
                                events with `room` added, room_opened / room_closed

A viewer token reads its one room and nothing else (no history, no other
room, no board). Each viewer and board holds a slot (rooms.ViewerSlots): an
address, a token and a tenant get a share of them, and boards keep some."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import parse_qs, urlsplit

import msgpack
from asyncio_throttle import Throttler
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..services.access import AccessDenied, client_ip, offered_subprotocols
from ..wire.errors import ErrorCode
from ..protocols.messages import SUBPROTOCOL_MSGPACK, SUBPROTOCOLS
from ..services.rooms import NoViewerSlot, Room, Viewer, ViewerCaps, ViewerSlot
from ..settings import LimitSettings
from .responses import JSON, denied

TOKEN_SUBPROTOCOL_PREFIX = "lingting.token."
VIEWER_MESSAGE_BYTES = 4096       # viewers send nothing the server needs
VIEWER_MESSAGES_PER_S = 10


def presented_token(conn: HTTPConnection) -> str | None:
    for protocol in offered_subprotocols(conn.headers):
        if protocol.startswith(TOKEN_SUBPROTOCOL_PREFIX):
            return protocol[len(TOKEN_SUBPROTOCOL_PREFIX):]
    values = parse_qs(urlsplit(str(conn.url)).query).get("token")
    return values[0] if values else None


def tenant_of(lingting, conn: HTTPConnection) -> str | None:
    """The caller's tenant by its API key (None: all), or AccessDenied."""
    return lingting.access.tenant(lingting.access.authenticate(str(conn.url), conn.headers))


def address_of(lingting, conn: HTTPConnection) -> str | None:
    return client_ip(conn.client.host if conn.client else None, conn.headers,
                     frozenset(lingting.settings.network.trusted_proxies))


def viewer_room(lingting, conn: HTTPConnection, name: str) -> tuple[Room, ViewerSlot]:
    """The room this caller may watch and the slot it would take, or AccessDenied."""
    token = presented_token(conn)
    if token:
        room = lingting.rooms.by_token(token)
        if room is None:
            raise AccessDenied(401, ErrorCode.UNAUTHORIZED, "unknown viewer token (a token ends with its stream)")
        if name not in (room.name, room.session_id):
            raise AccessDenied(403, ErrorCode.UNAUTHORIZED, "this viewer token is for another room")
        # A token's viewers count against the room's tenant: its link, its share.
        return room, ViewerSlot(False, address_of(lingting, conn), room.owner, room.token)
    tenant = tenant_of(lingting, conn)
    room = lingting.rooms.find(tenant, name)
    if room is None:
        raise AccessDenied(404, ErrorCode.NOT_FOUND, f"no live room {name!r}: it has not started, or has ended")
    return room, ViewerSlot(False, address_of(lingting, conn), tenant, None)


def viewer_caps(limits: LimitSettings) -> ViewerCaps:
    return ViewerCaps(limits.max_viewers, limits.max_viewers_per_ip, limits.max_viewers_per_token,
                      limits.max_viewers_per_tenant, limits.viewers_reserved_for_boards)


def admit_viewer(lingting, slot: ViewerSlot) -> None:
    """Take the caller's slot (given back by _serve's caller), or AccessDenied."""
    if lingting.shutting_down:
        raise AccessDenied(503, ErrorCode.SHUTTING_DOWN, "server is shutting down", retry_after=10)
    try:
        lingting.rooms.slots.take(slot, viewer_caps(lingting.settings.limits))
    except NoViewerSlot as exc:
        raise AccessDenied(exc.status, exc.code, exc.message, retry_after=5) from None


async def room_events(websocket: WebSocket) -> None:
    lingting = websocket.app.state.lingting
    try:
        room, slot = viewer_room(lingting, websocket, websocket.path_params["room"])
        admit_viewer(lingting, slot)
    except AccessDenied as exc:
        lingting.metrics.connections.labels(exc.code).inc()
        await websocket.send_denial_response(denied(exc))
        return
    try:
        viewer = lingting.rooms.viewer()
        room.joined(viewer)
        await _serve(websocket, viewer)
    finally:
        lingting.rooms.slots.give_back(slot)


async def board_events(websocket: WebSocket) -> None:
    lingting = websocket.app.state.lingting
    try:
        tenant = tenant_of(lingting, websocket)
        slot = ViewerSlot(True, address_of(lingting, websocket), tenant, None)
        admit_viewer(lingting, slot)
    except AccessDenied as exc:
        lingting.metrics.connections.labels(exc.code).inc()
        await websocket.send_denial_response(denied(exc))
        return
    try:
        await _serve(websocket, lingting.rooms.watch_all(tenant))
    finally:
        lingting.rooms.slots.give_back(slot)


async def _serve(websocket: WebSocket, viewer: Viewer) -> None:
    """Send the viewer's queue until it ends or the viewer leaves; what a viewer sends is ignored."""
    lingting = websocket.app.state.lingting
    offered = websocket.scope.get("subprotocols") or []
    subprotocol = next((p for p in SUBPROTOCOLS if p in offered), None)
    pack = subprotocol == SUBPROTOCOL_MSGPACK
    lingting.viewers += 1
    lingting.metrics.viewers.inc()
    lingting.metrics.connections.labels("viewer").inc()
    reader = None
    try:
        await websocket.accept(subprotocol)
        reader = asyncio.get_running_loop().create_task(_until_gone(websocket))
        while True:
            sending = asyncio.ensure_future(viewer.next())
            await asyncio.wait({sending, reader}, return_when=asyncio.FIRST_COMPLETED)
            if not sending.done():        # the viewer left
                sending.cancel()
                return
            wire = sending.result()
            if wire is None:
                await websocket.close(1000, "room closed")
                return
            if pack:
                await websocket.send_bytes(msgpack.packb(wire, use_bin_type=True))
            else:
                await websocket.send_text(json.dumps(wire, ensure_ascii=False, separators=(",", ":")))
            if viewer.ended and not viewer.queue and wire.get("type") == "error":
                await websocket.close(1008, wire["code"])
                return
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass
    finally:
        if reader is not None:
            reader.cancel()
        lingting.rooms.leave(viewer)
        lingting.viewers -= 1
        lingting.metrics.viewers.dec()
        lingting.metrics.viewer_partials_dropped.inc(viewer.dropped_partials)


async def _until_gone(websocket: WebSocket) -> None:
    """Viewers only listen: what they send is read at a bounded pace (TCP slows a
    flood) and dropped; a message over VIEWER_MESSAGE_BYTES closes them (1009),
    whatever frame size the server in front allows (Serve's proxy: 16 MiB)."""
    throttle = Throttler(VIEWER_MESSAGES_PER_S, 1.0)
    while (message := await websocket.receive())["type"] != "websocket.disconnect":
        if len(message.get("bytes") or b"") + len(message.get("text") or "") > VIEWER_MESSAGE_BYTES:
            await websocket.close(1009, "viewers send nothing")
            return
        async with throttle:
            pass


async def list_rooms(request: Request) -> Response:
    lingting = request.app.state.lingting
    try:
        tenant = tenant_of(lingting, request)
    except AccessDenied as exc:
        return denied(exc)
    return JSON({"rooms": [room.summary() for room in lingting.rooms.listed(tenant)]})


routes = [
    WebSocketRoute("/v1/rooms/{room:str}/events", room_events),
    WebSocketRoute("/v1/rooms", board_events),
    Route("/v1/rooms", list_rooms),
]
