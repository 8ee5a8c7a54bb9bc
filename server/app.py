"""The asyncio edge: WebSocket and HTTP on one port, sessions wired to the
batch collector."""

from __future__ import annotations

import asyncio
import http
import json
import logging
import time
import uuid
import weakref
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import websockets
from asyncio_throttle import Throttler
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from .access import AccessDenied, AccessPolicy, ApiKey, client_ip
from .batching import BatchCollector
from .export import FORMATS, render
from .funasr_compat import PATHS as FUNASR_PATHS, SUBPROTOCOL as FUNASR_SUBPROTOCOL, FunasrCodec
from .history import AsyncHistory
from .metrics import Metrics
from .protocol import SUBPROTOCOLS, Codec, ErrorCode, ProtocolError
from .streaming.audio import AudioFormatError
from .streaming.session import DecodeJob, Output, Session, ms
from .uploads import FileReader, SpoolBudget, SpoolFull, Upload

log = logging.getLogger("lingting.server")

STREAM_PATH = "/v1/stream"
HISTORY_PATH = "/v1/history"
LAST_FRAMES_S = 0.5          # on shutdown, input still read before streams are finished


def deflate_slack(max_frame_bytes: int) -> int:
    """Room over the limit for a message as sent: permessage-deflate makes
    incompressible audio slightly larger (0.25 % seen), and websockets checks
    the compressed frame too. The limit itself is checked on what arrives."""
    return max_frame_bytes // 64 + 1024


def message_bytes(message: str | bytes) -> int:
    return len(message) if isinstance(message, bytes) else len(message.encode("utf-8", "surrogatepass"))


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8765
    max_connections: int = 64
    max_frame_bytes: int = 1 << 20       # 1 MiB: ~32 s of 16 kHz s16 audio
    max_errors: int = 20                 # protocol errors before a stream is closed
    send_queue: int = 256                # events waiting for a slow reader
    max_file_bytes: int = 2 << 30        # offline uploads (spooled to disk, not memory)
    file_finals_in_flight: int = 16      # an offline file's utterances queued for decoding at once
    spool_dir: str | None = None         # where uploads wait to be decoded (default: the temp dir)
    max_spool_bytes: int = 8 << 30       # all uploads on disk together
    upload_idle_timeout_s: float = 30.0  # an upload that sends no file data for this long is closed
    max_connections_per_ip: int = 16
    max_messages_per_s: int = 400        # per connection; more are read later (TCP back-pressure)
    max_audio_speed: float = 4.0         # live audio may run this much faster than real time...
    audio_burst_s: float = 30.0          # ...after this much audio sent at once
    idle_timeout_s: float = 120.0        # no message for this long while streaming: closed
    handshake_timeout_s: float = 10.0
    ping_interval_s: float = 20.0        # WebSocket pings; a peer silent for another interval is gone
    trusted_proxies: frozenset[str] = frozenset()   # their X-Forwarded-For names the client
    frame_ancestors: tuple[str, ...] = ()   # origins whose pages may frame ours (the caption overlay)


_CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                  ".css": "text/css; charset=utf-8", ".ts": "text/plain; charset=utf-8"}
# URL prefix -> package holding the files; "/" is the live-caption page.
_STATIC = {"/web/": "lingting_server.web", "/client_js/": "lingting_server.client_js"}


# The pages load only their own scripts and styles; the browser client's audio
# worklet is a blob: module. frame-ancestors is filled in per server.
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self' blob:; worker-src 'self' blob:; "
                           "connect-src 'self'; img-src 'self' data:; media-src 'self' blob:; style-src 'self'; "
                           "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors {ancestors}")


def static_file(path: str) -> Response | None:
    """The page and the browser client, from the installed package."""
    from importlib.resources import files
    path = {"/": "/web/index.html", "/history": "/web/history.html"}.get(path, path)
    for prefix, package in _STATIC.items():
        name = path[len(prefix):]
        if path.startswith(prefix) and name and "/" not in name and not name.startswith("."):
            resource = files(package) / name
            suffix = "." + name.rsplit(".", 1)[-1]
            if suffix in _CONTENT_TYPES and resource.is_file():
                headers = Headers({"Content-Type": _CONTENT_TYPES[suffix], "Cache-Control": "no-cache",
                                   "X-Content-Type-Options": "nosniff"})
                return Response(200, "OK", headers, resource.read_bytes())
    return None


def _response(status: int, body: bytes, content_type: str, extra: dict | None = None) -> Response:
    headers = Headers({"Content-Type": content_type, "X-Content-Type-Options": "nosniff", **(extra or {})})
    return Response(status, http.HTTPStatus(status).phrase, headers, body)


def _json_response(status: int, body: dict | list, extra: dict | None = None) -> Response:
    return _response(status, json.dumps(body, ensure_ascii=False).encode(), "application/json", extra)


def _error(status: int, code: str, message: str, extra: dict | None = None) -> Response:
    return _json_response(status, {"error": code, "message": message}, extra)


def _int_param(query: dict, name: str, default: int, high: int) -> int:
    try:
        value = int(query.get(name, [default])[0])
    except ValueError:
        raise ValueError(f"{name} must be an integer") from None
    if not 0 <= value <= high:
        raise ValueError(f"{name} must be between 0 and {high}")
    return value


class LingtingServer:
    def __init__(self, engine, collector: BatchCollector, settings: ServerSettings, model_info: dict,
                 history: AsyncHistory | None = None, access: AccessPolicy | None = None,
                 metrics: Metrics | None = None, ssl=None):
        self.engine = engine
        self.history = history
        self.access = access or AccessPolicy()
        self.metrics = metrics or Metrics()
        self.ssl = ssl
        # handshake -> its key; weak, as a handshake may fail after process_request
        self._admitted: weakref.WeakKeyDictionary[ServerConnection, ApiKey | None] = weakref.WeakKeyDictionary()
        self.collector = collector
        self.settings = settings
        self.model_info = model_info
        self.started = time.monotonic()
        ancestors = " ".join(settings.frame_ancestors) or "'self'"
        self.content_security_policy = CONTENT_SECURITY_POLICY.format(ancestors=ancestors)
        self.streams: dict[str, "_Stream"] = {}   # open streams by session id
        self.spool = SpoolBudget(settings.max_spool_bytes)
        self.ready = False
        self.shutting_down = False
        self._server = None

    # ---- HTTP side ----------------------------------------------------
    def health(self) -> dict:
        return {"status": "ok" if self.ready else "loading", **self.engine.describe(),
                "uptime_s": round(time.monotonic() - self.started, 1),
                "streams": len(self.streams), "max_streams": self.settings.max_connections,
                "queue": self.collector.queue_depth, "batching": self.collector.stats.as_dict()}

    def metrics_page(self) -> Response:
        m = self.metrics
        for lane, depth in self.collector.queue_depth.items():
            m.queue_depth.labels(lane).set(depth)
        for mode in ("stream", "offline"):
            m.streams.labels(mode).set(sum(1 for s in self.streams.values() if s.mode == mode))
        m.worker_restarts.set(getattr(self.engine, "restarts", 0))
        return _response(200, m.render(), m.content_type)

    async def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        headers = request.headers
        upgrade = headers.get("Upgrade", "").lower() == "websocket"
        try:
            self.access.check_host(headers)
        except AccessDenied as denied:
            self.metrics.connections.labels(denied.code).inc()
            return _error(denied.status, denied.code, denied.message)
        public = {"/health": lambda: _json_response(200 if self.ready else 503, self.health()),
                  "/health/live": lambda: _json_response(200, {"status": "alive"}),
                  "/health/ready": lambda: _json_response(200 if self.ready else 503,
                                                          {"status": "ready" if self.ready else "not_ready"}),
                  "/metrics": self.metrics_page}
        if not upgrade and request.method == "GET":
            if path in public:
                return public[path]()
            if (static := static_file(path)) is not None:
                if static.headers["Content-Type"].startswith("text/html"):
                    static.headers["Content-Security-Policy"] = self.content_security_policy
                return static
        try:
            if path.startswith(HISTORY_PATH + "/") and not upgrade:
                self.access.check_origin(headers)
                key = self.access.authenticate(request.path, headers)
                return await self.history_request(request.method, request.path, self.access.tenant(key))
            if request.method != "GET":
                return _error(405, "method_not_allowed", f"{request.method} is not allowed on {path}", {"Allow": "GET"})
            if path != STREAM_PATH and not (upgrade and path in FUNASR_PATHS):
                return _error(404, "not_found", f"no route for {path}; page on /, history page on /history, "
                              f"stream on {STREAM_PATH}, history API on {HISTORY_PATH}/sessions, health on /health, "
                              "metrics on /metrics")
            if not upgrade:
                return _error(426, "upgrade_required", f"{STREAM_PATH} takes WebSocket connections")
            self.access.check_origin(headers)
            key = self.access.authenticate(request.path, headers)
            self.check_limits(self.client_ip(connection), key)
        except AccessDenied as denied:
            self.metrics.connections.labels(denied.code).inc()
            retry = {"Retry-After": str(denied.retry_after)} if denied.retry_after else None
            return _error(denied.status, denied.code, denied.message, retry)
        self._admitted[connection] = key
        return None

    def client_ip(self, connection: ServerConnection) -> str | None:
        headers = connection.request.headers if connection.request else Headers()
        return client_ip(_peer_ip(connection), headers, self.settings.trusted_proxies)

    def check_limits(self, ip: str | None, key: ApiKey | None) -> None:
        """May one more stream open? AccessDenied says why not."""
        if self.shutting_down:
            raise AccessDenied(503, "shutting_down", "server is shutting down", retry_after=10)
        if len(self.streams) >= self.settings.max_connections:
            raise AccessDenied(503, ErrorCode.OVERLOADED, f"server is at its limit of "
                               f"{self.settings.max_connections} streams; retry later", retry_after=5)
        per_ip = self.settings.max_connections_per_ip
        if ip and sum(1 for s in self.streams.values() if s.ip == ip) >= per_ip:
            raise AccessDenied(429, "ip_limit", f"{ip} has {per_ip} streams open, this server's limit "
                               "per address", retry_after=5)
        self.access.admit(key)

    async def history_request(self, method: str, target: str, tenant: str | None) -> Response:
        """GET   /v1/history/sessions?limit=&offset=       newest first
        GET   /v1/history/search?q=&limit=&offset=        utterances containing q
        GET   /v1/history/sessions/ID                     one session with its utterances
        GET   /v1/history/sessions/ID/export?format=F     json, txt, srt, vtt
        DELETE /v1/history/sessions/ID
        Each sees only the tenant's sessions (None: all); another's are 404."""
        if self.history is None:
            return _error(404, "history_disabled", "this server keeps no history (started with --history-db off)")
        url = urlsplit(target)
        query = parse_qs(url.query)
        parts = url.path[len(HISTORY_PATH) + 1:].split("/")
        allowed = "DELETE, GET" if len(parts) == 2 and parts[0] == "sessions" else "GET"
        if method not in allowed.split(", "):
            return _error(405, "method_not_allowed", f"{method} is not allowed on {url.path}", {"Allow": allowed})
        try:
            limit = _int_param(query, "limit", 50, 1000)
            offset = _int_param(query, "offset", 0, 1 << 40)
        except ValueError as exc:
            return _error(400, ErrorCode.INVALID_FIELD, str(exc))
        try:
            if parts == ["sessions"]:
                sessions = await self.history.read("list_sessions", limit, offset, tenant)
                total = await self.history.read("count_sessions", tenant)
                return _json_response(200, {"sessions": sessions, "total": total})
            if parts == ["search"]:
                text = query.get("q", [""])[0]
                if "\0" in text:
                    return _error(400, ErrorCode.INVALID_FIELD, "q must not contain NUL characters")
                results = await self.history.read("search", text, limit, offset, tenant)
                return _json_response(200, {"query": text, "results": results})
            if parts[0] == "sessions" and len(parts) == 2 and method == "DELETE":
                if await self.history.write("delete_session", parts[1], tenant):
                    return Response(204, "No Content", Headers({"X-Content-Type-Options": "nosniff"}), b"")
                return _error(404, "not_found", f"no session {parts[1]!r}")
            if parts[0] == "sessions" and len(parts) in (2, 3) and (len(parts) == 2 or parts[2] == "export"):
                session = await self.history.read("get_session", parts[1], tenant)
                if session is None:
                    return _error(404, "not_found", f"no session {parts[1]!r}")
                if len(parts) == 2:
                    return _json_response(200, session)
                fmt = query.get("format", ["json"])[0]
                if fmt not in FORMATS:
                    return _error(400, ErrorCode.INVALID_FIELD, f"format must be one of {', '.join(FORMATS)}")
                name = f"lingting-{parts[1]}.{fmt}"
                return _response(200, render(session, fmt).encode(), FORMATS[fmt],
                                 {"Content-Disposition": f'attachment; filename="{name}"'})
        except Exception:
            log.exception("history request %s %s failed", method, url.path)   # the query may hold a key
            return _error(500, ErrorCode.INTERNAL, "history request failed")
        return _error(404, "not_found", f"no history route {url.path}")

    @staticmethod
    def select_subprotocol(connection, offered):
        for name in (*SUBPROTOCOLS, FUNASR_SUBPROTOCOL):
            if name in offered:
                return name
        return None   # no subprotocol offered: JSON

    # ---- WebSocket side -----------------------------------------------
    async def handle(self, ws: ServerConnection) -> None:
        key = self._admitted.pop(ws, None)
        session_id = uuid.uuid4().hex[:16]
        stream = _Stream(self, ws, session_id, key)
        try:
            # Handshakes that raced past process_request's check.
            self.check_limits(stream.ip, key)
        except AccessDenied as denied:
            self.metrics.connections.labels(denied.code).inc()
            await stream.refuse(ProtocolError(ErrorCode.OVERLOADED if denied.status == 503 else denied.code,
                                              denied.message, fatal=True), 1013)
            return
        self.metrics.connections.labels("accepted").inc()
        self.streams[session_id] = stream
        self.access.opened(key)
        try:
            if self.shutting_down:
                stream.finish()
            await stream.run()
        finally:
            self.streams.pop(session_id, None)
            self.access.closed(key)
            self.collector.cancel_session(session_id)

    async def serve(self):
        settings = self.settings
        self._server = await websockets.serve(
            self.handle, settings.host, settings.port,
            process_request=self.process_request,
            select_subprotocol=self.select_subprotocol,
            max_size=settings.max_frame_bytes + deflate_slack(settings.max_frame_bytes),
            max_queue=64,
            open_timeout=settings.handshake_timeout_s,
            ping_interval=settings.ping_interval_s,
            ping_timeout=settings.ping_interval_s,
            ssl=self.ssl,
        )
        self.ready = True
        return self._server

    async def shutdown(self, grace_s: float = 30.0) -> None:
        """Stop taking streams, finish the open utterances (their finals are
        sent), then close every stream with 1001 (going away)."""
        self.shutting_down = True
        self.ready = False
        self._server.close(close_connections=False)
        # Audio the clients sent before the signal may still sit in socket
        # buffers: read it, so the last words make it into the finals.
        await asyncio.sleep(LAST_FRAMES_S)
        for stream in list(self.streams.values()):
            stream.finish()
        try:
            await asyncio.wait_for(self._server.wait_closed(), grace_s)
        except asyncio.TimeoutError:
            log.warning("shutdown: %d stream(s) still open after %.0f s; closing them", len(self.streams), grace_s)
            await asyncio.gather(*(s.ws.close(1001, "server shutting down") for s in list(self.streams.values())),
                                 return_exceptions=True)

    @property
    def port(self) -> int:
        return self._server.sockets[0].getsockname()[1]


def _peer_ip(connection: ServerConnection) -> str | None:
    address = connection.remote_address
    return str(address[0]) if address else None


class _Stream:
    """One connection: reads frames into the session, writes its events.

    Every final is stored in history before it is sent, so a final the client
    saw survives any crash. When a client drops mid-utterance, that utterance
    is still decoded and stored (not sent)."""

    def __init__(self, server: LingtingServer, ws: ServerConnection, session_id: str, key: ApiKey | None = None):
        self.server = server
        self.ws = ws
        self.ip = server.client_ip(ws)
        self.key = key
        self.metrics = server.metrics
        funasr = ws.request is not None and ws.request.path.split("?", 1)[0] in FUNASR_PATHS
        self.codec = FunasrCodec() if funasr else Codec(ws.subprotocol)
        settings = server.settings
        limits = {"max_frame_bytes": settings.max_frame_bytes, "max_file_bytes": settings.max_file_bytes,
                  "sample_rates": [8000, 48000]}
        self.session = Session(session_id, server.model_info["model"],
                               tuple(getattr(server.engine, "languages", ()) or ()), limits)
        self.history = server.history
        self.outbox: asyncio.Queue = asyncio.Queue(settings.send_queue)
        self.errors = 0
        self.closing = False
        self.close_code = 1000
        self.connected = True
        self.recorded = False          # history has a row for this session
        self.record_closed = False     # ...and it has its end
        self.history_failed = False
        self.upload: Upload | None = None   # offline: the uploaded file on disk
        self.upload_active_at = time.monotonic()   # offline: the last file data (or start)
        self.transcriber: asyncio.Task | None = None
        self.decoded = asyncio.Event()   # a decode finished: offline feeding may go on
        self.finishing = False           # shutdown, quota or idle: in-flight work ends, no new input
        self.throttle = Throttler(settings.max_messages_per_s, 1.0)
        self.first_audio_at: float | None = None
        self.counted_samples = 0          # audio already added to metrics and quota
        self.ended_at: dict[int, float] = {}   # utterance -> when its end was detected
        self.log = logging.LoggerAdapter(log, {"session": session_id})

    @property
    def mode(self) -> str:
        return self.session.config.mode if self.session.config else "stream"

    def finish(self, reason: str = "shutdown", close_code: int = 1001) -> None:
        """End the stream from our side (shutdown, quota, idle): flush the
        session; the stream closes after its finals."""
        if self.finishing:
            return
        self.finishing = True
        self.close_code = close_code
        try:
            self._apply(self.session.shutdown(reason))
        except Exception:
            self.log.exception("session %s: %s failed", self.session.id, reason)
            self._close(close_code, reason)

    async def refuse(self, error: ProtocolError, code: int) -> None:
        for frame in self.codec.encode_all(error.event()):
            await self.ws.send(frame)
        await self.ws.close(code, error.code)

    async def run(self) -> None:
        writer = asyncio.create_task(self._write())
        settings = self.server.settings
        try:
            while not self.closing:
                # Idle only counts while the client owes us input.
                idle = settings.idle_timeout_s if self.session.state in ("new", "streaming") else None
                uploading = self.mode == "offline" and self.session.state == "streaming"
                if uploading:   # keepalives do not hold an upload's disk space: only file data does
                    idle = max(0.0, self.upload_active_at + settings.upload_idle_timeout_s - time.monotonic())
                try:
                    frame = await asyncio.wait_for(self.ws.recv(), idle)
                except asyncio.TimeoutError:
                    message = (f"no file data for {settings.upload_idle_timeout_s:.0f} s: upload abandoned"
                               if uploading else f"no message for {idle:.0f} s: closing "
                               "(send keepalive to hold an idle stream open)")
                    self._send(ProtocolError(ErrorCode.IDLE_TIMEOUT, message, fatal=True).event())
                    self.finish("idle", 1008)
                    continue
                if message_bytes(frame) > settings.max_frame_bytes:
                    self._send(ProtocolError(ErrorCode.TOO_LARGE, f"a message of {message_bytes(frame)} bytes is "
                                             f"over this server's limit of {settings.max_frame_bytes}",
                                             fatal=True).event())
                    self._close(1009, "message too big")
                    continue
                async with self.throttle:       # a flood is read at this pace, not faster
                    self._receive(frame)
                await self._hold_to_speed()
        except websockets.ConnectionClosed:
            pass
        finally:
            if not self.closing:
                self.connected = False
                self.log.info("session %s: client left (%d finals pending)", self.session.id,
                              self.session.finals_pending)
            await self._drain(writer)
            await self._cleanup()

    async def _drain(self, writer: asyncio.Task) -> None:
        if not self.connected:
            if self.transcriber:
                self.transcriber.cancel()
            if self.recorded and not self.session.offline and self.session.state in ("streaming", "stopping"):
                # History keeps what was said before the line dropped:
                # decode the open utterance and store the finals.
                self.close_code = 1006
                self._apply(self.session.shutdown("disconnect"))
            elif not self.closing:
                writer.cancel()
                return
        # Wait (bounded) for the finals still being decoded.
        try:
            await asyncio.wait_for(writer, timeout=120)
        except asyncio.TimeoutError:
            self.log.warning("session %s: finals still pending after 120 s; giving up", self.session.id)

    async def _cleanup(self) -> None:
        if self.transcriber:
            self.transcriber.cancel()
        if self.upload is not None:
            self.upload.discard()
        if self.recorded and not self.record_closed:   # ended without `stopped`
            await self._close_record()

    async def _close_record(self) -> None:
        self.record_closed = True
        status = ("shutdown" if self.close_code == 1001 else "disconnected" if not self.connected else
                  "stopped" if self.session.state == "stopped" else "failed")
        await self._history_write("close_session", self.session.id, status,
                                  ms(self.session.audio_samples))

    async def _hold_to_speed(self) -> None:
        """Live audio may come at most max_audio_speed x real time after a
        burst; past that, reading pauses (TCP back-pressure reaches the client).
        Whole files at full speed are what offline mode is for."""
        if self.mode != "stream" or not self.session.audio_samples:
            return
        now = time.monotonic()
        if self.first_audio_at is None:
            self.first_audio_at = now
        settings = self.server.settings
        audio_s = self.session.audio_samples / 16000
        due = self.first_audio_at + (audio_s - settings.audio_burst_s) / settings.max_audio_speed
        if due > now:
            await asyncio.sleep(due - now)

    def _receive(self, frame) -> None:
        if self.finishing:   # what is in flight is being finished; input is no longer taken
            return
        try:
            self._apply(self.session.handle(self.codec.decode(frame)))
        except ProtocolError as exc:
            self._protocol_error(exc)
        except Exception:
            self.log.exception("session %s: internal error", self.session.id)
            self._send(ProtocolError(ErrorCode.INTERNAL, "internal server error", fatal=True).event())
            self._close(1011, "internal error")

    def _protocol_error(self, exc: ProtocolError) -> None:
        self.errors += 1
        fatal = exc.fatal or self.errors >= self.server.settings.max_errors
        if fatal and not exc.fatal:
            exc = ProtocolError(exc.code, f"{exc.message} (too many errors: closing)", fatal=True)
        self._send(exc.event())
        if fatal:
            self._close(1008, exc.code)

    def _apply(self, out: Output) -> None:
        for event in out.events:
            self._send(event)
        self._count_audio()
        for job in out.jobs:
            if job.kind == "final":
                self.ended_at[job.utterance] = time.monotonic()
            future = self.server.collector.submit(job)
            future.add_done_callback(lambda f, job=job: self._on_decoded(job, f))
        for data in out.file_data:
            if self.upload is None:
                self.upload = Upload(self.server.settings.spool_dir, self.server.spool)
            try:
                self.upload.write(data)
            except SpoolFull as exc:
                self._protocol_error(ProtocolError(ErrorCode.OVERLOADED, str(exc), fatal=True))
                return
            self.upload_active_at = time.monotonic()
        if out.file_complete:
            self.transcriber = asyncio.get_running_loop().create_task(self._transcribe_file())
        if out.close:
            self._close(self.close_code, "stopped" if self.close_code == 1000 else "server shutting down")

    def _count_audio(self) -> None:
        new = self.session.audio_samples - self.counted_samples
        if new <= 0:
            return
        self.counted_samples = self.session.audio_samples
        self.metrics.audio_seconds.labels(self.mode).inc(new / 16000)
        if not self.server.access.use_audio(self.key, new / 16000) and not self.finishing:
            self._send(ProtocolError(ErrorCode.QUOTA_EXCEEDED, f"key {self.key.name!r} has used its audio "
                                     "minutes for today (UTC): closing", fatal=True).event())
            if self.transcriber:
                self.transcriber.cancel()
                self.finishing = True
                self._close(1008, "quota exceeded")
            else:
                self.finish("quota", 1008)

    def _on_decoded(self, job: DecodeJob, future: asyncio.Future) -> None:
        self.decoded.set()
        if future.cancelled():
            return
        error = future.exception()
        try:
            self._apply(self.session.on_result(job, None if error else future.result(),
                                               str(error) if error else None))
        except Exception:
            self.log.exception("session %s: failed to handle a decode result", self.session.id)

    # ---- offline files --------------------------------------------------
    async def _transcribe_file(self) -> None:
        """Decode the uploaded file chunk by chunk into the session, keeping
        a bounded number of its utterances waiting for the model."""
        if self.upload is None:
            self._protocol_error(ProtocolError(ErrorCode.BAD_AUDIO, "no file was sent before stop", fatal=True))
            return
        self.upload.complete()
        audio = FileReader(self.upload.path)
        try:
            self._apply(self.session.file_opened(await audio.open()))
            while (chunk := await audio.read()) is not None:
                self._apply(self.session.file_audio(chunk))
                while self.session.finals_pending >= self.server.settings.file_finals_in_flight:
                    self.decoded.clear()
                    await self.decoded.wait()
                if self.closing:
                    return
            self._apply(self.session.file_ended())
        except AudioFormatError as exc:
            self._protocol_error(ProtocolError(ErrorCode.BAD_AUDIO, str(exc), fatal=True))
        except Exception:
            self.log.exception("session %s: file transcription failed", self.session.id)
            self._send(ProtocolError(ErrorCode.INTERNAL, "file transcription failed", fatal=True).event())
            self._close(1011, "internal error")
        finally:
            audio.close()

    # ---- writing: history first, then the socket ------------------------
    def _send(self, event: dict) -> None:
        if self.closing:
            return
        if event["type"] == "error":
            self.metrics.errors.labels(event["code"]).inc()
        try:
            self.outbox.put_nowait(event)
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
            if isinstance(item, tuple):
                if self.connected:
                    await self._socket(self.ws.close(*item))
                return
            await self._record(item)
            if item["type"] == "final":
                self.metrics.finals.labels(self.mode).inc()
                ended = self.ended_at.pop(item["utterance"], None)
                if ended is not None and self.mode == "stream":
                    self.metrics.final_latency.observe(time.monotonic() - ended)
            if self.connected:
                for frame in self.codec.encode_all(item):
                    await self._socket(self.ws.send(frame))

    async def _socket(self, operation) -> None:
        try:
            await operation
        except websockets.ConnectionClosed:
            self.connected = False

    async def _record(self, event: dict) -> None:
        if self.history is None:
            return
        kind = event["type"]
        if kind == "ready":
            config = self.session.config
            request = self.ws.request
            client = {"address": self.ip,
                      "user_agent": request.headers.get("User-Agent") if request else None,
                      "origin": request.headers.get("Origin") if request else None,
                      "subprotocol": self.codec.subprotocol}
            self.recorded = await self._history_write(
                "open_session", self.session.id, "file" if config.mode == "offline" else "stream",
                model=self.session.model, language=config.language, filename=config.filename,
                client=client, settings=config.summary(), owner=self.key.name if self.key else None)
        elif kind == "final" and self.recorded:
            started = time.perf_counter()
            await self._history_write("add_utterance", self.session.id, event, event.get("hotwords", ()))
            self.metrics.history_writes.observe(time.perf_counter() - started)
        elif kind == "stopped" and self.recorded:
            await self._close_record()     # complete in history before the client hears `stopped`

    async def _history_write(self, method: str, *args, **kwargs) -> bool:
        try:
            await self.history.write(method, *args, **kwargs)
            return True
        except Exception as exc:
            # The transcript still goes to the client: losing it there too would be worse.
            self.log.error("session %s: history %s failed: %s", self.session.id, method, exc)
            if not self.history_failed and self.connected:
                self.history_failed = True
                error = ProtocolError(ErrorCode.HISTORY_FAILED, f"could not store this session in history: {exc}")
                for frame in self.codec.encode_all(error.event()):
                    await self._socket(self.ws.send(frame))
            return False
