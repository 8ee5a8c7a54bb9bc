"""The asyncio edge: WebSocket and HTTP on one port, sessions wired to the
batch collector."""

from __future__ import annotations

import asyncio
import http
import json
import logging
import time
import uuid
from dataclasses import dataclass

import websockets
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from .batching import BatchCollector
from .protocol import SUBPROTOCOLS, Codec, ErrorCode, ProtocolError
from .streaming.session import DecodeJob, Output, Session

log = logging.getLogger("lingting.server")

STREAM_PATH = "/v1/stream"


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8765
    max_connections: int = 64
    max_frame_bytes: int = 1 << 20       # 1 MiB: ~32 s of 16 kHz s16 audio
    max_errors: int = 20                 # protocol errors before a stream is closed
    send_queue: int = 256                # events waiting for a slow reader


_CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                  ".css": "text/css; charset=utf-8", ".ts": "text/plain; charset=utf-8"}
# URL prefix -> package holding the files; "/" is the live-caption page.
_STATIC = {"/web/": "lingting_server.web", "/client_js/": "lingting_server.client_js"}


def static_file(path: str) -> Response | None:
    """The page and the browser client, from the installed package."""
    from importlib.resources import files
    if path == "/":
        path = "/web/index.html"
    for prefix, package in _STATIC.items():
        name = path[len(prefix):]
        if path.startswith(prefix) and name and "/" not in name and not name.startswith("."):
            resource = files(package) / name
            suffix = "." + name.rsplit(".", 1)[-1]
            if suffix in _CONTENT_TYPES and resource.is_file():
                headers = Headers({"Content-Type": _CONTENT_TYPES[suffix], "Cache-Control": "no-cache"})
                return Response(200, "OK", headers, resource.read_bytes())
    return None


def _json_response(status: int, body: dict, extra: dict | None = None) -> Response:
    headers = Headers({"Content-Type": "application/json", **(extra or {})})
    reason = http.HTTPStatus(status).phrase
    return Response(status, reason, headers, json.dumps(body).encode())


class LingtingServer:
    def __init__(self, engine, collector: BatchCollector, settings: ServerSettings, model_info: dict):
        self.engine = engine
        self.collector = collector
        self.settings = settings
        self.model_info = model_info
        self.started = time.monotonic()
        self.streams: dict[str, "_Stream"] = {}   # open streams by session id
        self.ready = False
        self.shutting_down = False
        self._server = None

    # ---- HTTP side ----------------------------------------------------
    def health(self) -> dict:
        return {"status": "ok" if self.ready else "loading", **self.model_info,
                "uptime_s": round(time.monotonic() - self.started, 1),
                "streams": len(self.streams), "max_streams": self.settings.max_connections,
                "queue": self.collector.queue_depth, "batching": self.collector.stats.as_dict()}

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
        if path == "/health" and not upgrade:
            return _json_response(200 if self.ready else 503, self.health())
        if not upgrade and (static := static_file(path)) is not None:
            return static
        if path != STREAM_PATH:
            return _json_response(404, {"error": "not_found", "message": f"no route for {path}; "
                                        f"page on /, stream on {STREAM_PATH}, health on /health"})
        if not upgrade:
            return _json_response(426, {"error": "upgrade_required",
                                        "message": f"{STREAM_PATH} takes WebSocket connections"})
        if self.shutting_down:
            return _json_response(503, {"error": "shutting_down", "message": "server is shutting down"},
                                  {"Retry-After": "10"})
        if len(self.streams) >= self.settings.max_connections:
            return _json_response(503, {"error": ErrorCode.OVERLOADED,
                                        "message": f"server is at its limit of {self.settings.max_connections} streams; retry later"},
                                  {"Retry-After": "5"})
        return None

    @staticmethod
    def select_subprotocol(connection, offered):
        for name in SUBPROTOCOLS:
            if name in offered:
                return name
        return None   # no subprotocol offered: JSON

    # ---- WebSocket side -----------------------------------------------
    async def handle(self, ws: ServerConnection) -> None:
        session_id = uuid.uuid4().hex[:16]
        stream = _Stream(self, ws, session_id)
        self.streams[session_id] = stream
        try:
            if len(self.streams) > self.settings.max_connections:
                # Handshakes that raced past process_request's check.
                await stream.refuse(ProtocolError(
                    ErrorCode.OVERLOADED, f"server is at its limit of {self.settings.max_connections} streams; "
                    "retry later", fatal=True), 1013)
                return
            if self.shutting_down:
                stream.finish()
            await stream.run()
        finally:
            self.streams.pop(session_id, None)
            self.collector.cancel_session(session_id)

    async def serve(self):
        self._server = await websockets.serve(
            self.handle, self.settings.host, self.settings.port,
            process_request=self.process_request,
            select_subprotocol=self.select_subprotocol,
            subprotocols=list(SUBPROTOCOLS),
            max_size=self.settings.max_frame_bytes,
            max_queue=64,
        )
        self.ready = True
        return self._server

    async def shutdown(self, grace_s: float = 30.0) -> None:
        """Stop taking streams, finish the open utterances (their finals are
        sent), then close every stream with 1001 (going away)."""
        self.shutting_down = True
        self.ready = False
        for stream in list(self.streams.values()):
            stream.finish()
        self._server.close(close_connections=False)
        try:
            await asyncio.wait_for(self._server.wait_closed(), grace_s)
        except asyncio.TimeoutError:
            log.warning("shutdown: %d stream(s) still open after %.0f s; closing them", len(self.streams), grace_s)
            await asyncio.gather(*(s.ws.close(1001, "server shutting down") for s in list(self.streams.values())),
                                 return_exceptions=True)

    @property
    def port(self) -> int:
        return self._server.sockets[0].getsockname()[1]


class _Stream:
    """One connection: reads frames into the session, writes its events."""

    def __init__(self, server: LingtingServer, ws: ServerConnection, session_id: str):
        self.server = server
        self.ws = ws
        self.codec = Codec(ws.subprotocol)
        limits = {"max_frame_bytes": server.settings.max_frame_bytes,
                  "sample_rates": [8000, 48000]}
        self.session = Session(session_id, server.model_info["model"],
                               tuple(getattr(server.engine, "languages", ()) or ()), limits)
        self.outbox: asyncio.Queue = asyncio.Queue(server.settings.send_queue)
        self.errors = 0
        self.closing = False
        self.close_code = 1000
        self.log = logging.LoggerAdapter(log, {"session": session_id})

    def finish(self) -> None:
        """Server shutdown: flush the session; the stream closes after its finals."""
        self.close_code = 1001
        try:
            self._apply(self.session.shutdown())
        except Exception:
            self.log.exception("session %s: shutdown failed", self.session.id)
            self._close(1001, "server shutting down")

    async def refuse(self, error: ProtocolError, code: int) -> None:
        await self.ws.send(self.codec.encode(error.event()))
        await self.ws.close(code, error.code)

    async def run(self) -> None:
        writer = asyncio.create_task(self._write())
        try:
            async for frame in self.ws:
                if self.closing:
                    break
                self._receive(frame)
        except websockets.ConnectionClosed:
            pass
        finally:
            if not self.closing:
                self.log.info("session %s: client left (%d finals pending)", self.session.id,
                              self.session.finals_pending)
            await self._drain(writer)

    async def _drain(self, writer: asyncio.Task) -> None:
        # Wait (bounded) for the finals still being decoded when stop came.
        if self.closing:
            try:
                await asyncio.wait_for(writer, timeout=120)
            except asyncio.TimeoutError:
                writer.cancel()
        else:
            writer.cancel()

    def _receive(self, frame) -> None:
        if self.close_code == 1001:   # shutting down: what is in flight is being finished
            return
        try:
            self._apply(self.session.handle(self.codec.decode(frame)))
        except ProtocolError as exc:
            self.errors += 1
            fatal = exc.fatal or self.errors >= self.server.settings.max_errors
            if fatal and not exc.fatal:
                exc = ProtocolError(exc.code, f"{exc.message} (too many errors: closing)", fatal=True)
            self._send(exc.event())
            if fatal:
                self._close(1008, exc.code)
        except Exception:
            self.log.exception("session %s: internal error", self.session.id)
            self._send(ProtocolError(ErrorCode.INTERNAL, "internal server error", fatal=True).event())
            self._close(1011, "internal error")

    def _apply(self, out: Output) -> None:
        for event in out.events:
            self._send(event)
        for job in out.jobs:
            future = self.server.collector.submit(job)
            future.add_done_callback(lambda f, job=job: self._on_decoded(job, f))
        if out.close:
            self._close(self.close_code, "stopped" if self.close_code == 1000 else "server shutting down")

    def _on_decoded(self, job: DecodeJob, future: asyncio.Future) -> None:
        if future.cancelled():
            return
        error = future.exception()
        try:
            self._apply(self.session.on_result(job, None if error else future.result(),
                                               str(error) if error else None))
        except Exception:
            self.log.exception("session %s: failed to handle a decode result", self.session.id)

    def _send(self, event: dict) -> None:
        if self.closing:
            return
        try:
            self.outbox.put_nowait(self.codec.encode(event))
        except asyncio.QueueFull:
            # A reader this slow would grow memory without bound: end the stream.
            self.log.warning("session %s: client reads too slowly; closing", self.session.id)
            self._close(1008, "client too slow")

    def _close(self, code: int, reason: str) -> None:
        if not self.closing:
            self.closing = True
            if self.outbox.full():   # no room to queue it: close now, dropping the backlog
                asyncio.get_running_loop().create_task(self.ws.close(code, reason))
            else:
                self.outbox.put_nowait((code, reason))

    async def _write(self) -> None:
        while True:
            item = await self.outbox.get()
            try:
                if isinstance(item, tuple):
                    await self.ws.close(*item)
                    return
                await self.ws.send(item)
            except websockets.ConnectionClosed:
                return
