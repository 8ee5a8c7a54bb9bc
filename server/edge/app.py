"""The ASGI application and the server that runs it.

`Lingting` is what every endpoint shares (engine, collector, settings,
history, access, metrics, the open streams); `build_app` wires the routes of
each concern's module; `EdgeServer` runs the app on uvicorn (websockets'
sans-I/O implementation) and shuts it down gracefully: no new streams, open
utterances finished and their finals delivered, then 1001."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
import uuid

import h11
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from ..services.access import AccessDenied, AccessPolicy, ApiKey, client_ip, offered_subprotocols, presented_key
from ..services.batching import BatchCollector
from ..wire.errors import ErrorCode
from ..protocols.funasr import PATHS as FUNASR_PATHS
from ..services.history.store import AsyncHistory
from ..services.metrics import Metrics
from ..services.rooms import Rooms
from ..settings import NetworkSettings, Settings
from ..streaming.session import End, Session
from ..services.uploads import SpoolBudget
from . import files, health, history_api, openai_api, pages, rooms_api, streams, telephony
from .room_bus import RoomBus
from .sinks import StreamServices
from .webhooks import RetrySchedule, WebhookSender, server_targets
from .guard import HostGuard
from .pages import content_security_policy
from .responses import error, http_exception, upgrade_required

log = logging.getLogger("lingting.server")


def deflate_slack(max_frame_bytes: int) -> int:
    """Room over the limit for a message as sent: permessage-deflate makes
    incompressible audio slightly larger (0.25 % seen), and the frame is
    checked compressed too. The limit itself is checked on what arrives."""
    return max_frame_bytes // 64 + 1024


class Lingting:
    def __init__(self, engine, collector: BatchCollector, settings: Settings, model_info: dict,
                 history: AsyncHistory | None = None, access: AccessPolicy | None = None,
                 metrics: Metrics | None = None):
        self.engine = engine
        self.collector = collector
        self.settings = settings
        self.model_info = model_info
        self.history = history
        self.access = access or AccessPolicy()
        self.metrics = metrics or Metrics()
        self.content_security_policy = content_security_policy(settings.access.frame_ancestors)
        self.spool = SpoolBudget(settings.limits.max_spool_bytes)
        self.streams: dict = {}          # open streams (runners) by session id
        self.unauthenticated: dict = {}  # streams still waiting for the key they bring in-stream (Twilio)
        # Edges sharing a PostgreSQL history share room tokens and room events.
        shared = history is not None and history.store.edge is not None
        self.rooms = Rooms(settings.limits.viewer_queue, history.store.shared_secret("room_tokens") if shared else None)
        self.room_bus = RoomBus(history.store.url, self.rooms) if shared else None
        self.viewers = 0                 # connected viewers of rooms and boards
        outputs = settings.outputs
        # Settings.validate() refused webhooks without a history (their outbox) before this was built.
        self.webhook_targets = server_targets(outputs.webhooks, outputs.webhook_secret, outputs.webhook_events)
        retry = RetrySchedule(outputs.webhook_retry_first_s, outputs.webhook_retry_max_s, outputs.webhook_give_up_s)
        self.webhook_sender = WebhookSender(history, outputs.webhook_allow_private, self.metrics,
                                            retry) if history else None
        self.stream_services = StreamServices(       # what each stream's runner is given, not all of this
            collector=collector, access=self.access, authenticated=self.authenticated, rooms=self.rooms,
            history=history, metrics=self.metrics, limits=settings.limits, outputs=outputs, spool=self.spool,
            speaker_model=bool(model_info.get("speaker_model")), webhook_targets=self.webhook_targets,
            webhook_sender=self.webhook_sender)
        self.started = time.monotonic()
        self.started_at = time.time()        # wall clock, for what reports a creation time
        self.ready = False
        self.shutting_down = False

    async def start_services(self) -> None:
        """What runs beside the streams: the webhook sender, the room bus."""
        if self.webhook_sender:
            self.webhook_sender.start()
        if self.room_bus:
            await self.room_bus.start()

    async def stop_services(self) -> None:
        if self.room_bus:
            await self.room_bus.close()
        if self.webhook_sender:
            await self.webhook_sender.close()     # what is undelivered stays in the outbox for the next start

    def health(self) -> dict:
        status = "ok" if self.ready else "draining" if self.shutting_down else "loading"
        return {"status": status, **self.engine.describe(),
                "model_workers": len(self.collector.engines), "worker_restarts": self.collector.worker_restarts,
                "uptime_s": round(time.monotonic() - self.started, 1),
                "streams": len(self.streams), "max_streams": self.settings.limits.max_connections,
                "unauthenticated": len(self.unauthenticated),
                "queue": self.collector.queue_depth, "batching": self.collector.stats.as_dict()}

    # ---- admission --------------------------------------------------------
    def admit(self, conn: HTTPConnection, key_in_stream: bool = False) -> tuple[ApiKey | None, str | None]:
        """May this connection open a stream? Its key and address, or AccessDenied.
        (HostGuard checked its Host and Origin.) key_in_stream: a platform that
        cannot send headers presents its key in the stream; until then the key
        is None and the socket waits in a small pool of its own
        (check_unauthenticated), not among the streams."""
        ip = client_ip(conn.client.host if conn.client else None, conn.headers,
                       frozenset(self.settings.network.trusted_proxies))
        presented = presented_key(str(conn.url), conn.headers, offered_subprotocols(conn.headers))
        if key_in_stream and not presented and not self.access.open:
            self.check_unauthenticated(ip)
            return None, ip
        key = self.access.authenticate(str(conn.url), conn.headers)
        self.check_limits(ip, key)
        return key, ip

    def owes_key(self, key: ApiKey | None) -> bool:
        """A stream admitted without a key on a server that has keys: it must present one in-stream."""
        return key is None and not self.access.open

    def check_unauthenticated(self, ip: str | None) -> None:
        """Sockets that have not shown a key yet take no stream slot, but their own
        pool is small and shared out by address, so keyless ones cannot fill it."""
        limits = self.settings.limits
        self._check_pool(self.unauthenticated, ip, limits.max_unauthenticated, limits.max_unauthenticated_per_ip,
                         f"{limits.max_unauthenticated} streams are already waiting to present their key "
                         "(--max-unauthenticated); retry later",
                         "streams waiting to present their key (--max-unauthenticated-per-ip)")

    def check_limits(self, ip: str | None, key: ApiKey | None) -> None:
        limits = self.settings.limits
        self._check_pool(self.streams, ip, limits.max_connections, limits.max_connections_per_ip,
                         f"server is at its limit of {limits.max_connections} streams; retry later",
                         "streams open, this server's limit per address")
        self.access.admit(key)

    def _check_pool(self, pool: dict, ip: str | None, limit: int, per_ip: int, full: str, address_full: str) -> None:
        """Shutting down, the pool full, or this address's share of it taken: AccessDenied."""
        if self.shutting_down:
            raise AccessDenied(503, ErrorCode.SHUTTING_DOWN, "server is shutting down", retry_after=10)
        if len(pool) >= limit:
            raise AccessDenied(503, ErrorCode.OVERLOADED, full, retry_after=5)
        if ip and sum(1 for s in pool.values() if s.ip == ip) >= per_ip:
            raise AccessDenied(429, ErrorCode.IP_LIMIT, f"{ip} has {per_ip} {address_full}", retry_after=5)

    # ---- the streams --------------------------------------------------------
    def new_session(self) -> Session:
        limits = self.settings.limits
        return Session(uuid.uuid4().hex[:16], self.model_info["model"],
                       tuple(getattr(self.engine, "languages", ()) or ()),
                       {"max_frame_bytes": limits.max_frame_bytes, "max_file_bytes": limits.max_file_bytes,
                        "max_signals": limits.max_signals,
                        "sample_rates": [8000, 48000]}, limits.max_errors)

    def opened(self, runner, unauthenticated: bool = False) -> None:
        if unauthenticated:
            self.unauthenticated[runner.session.id] = runner
        else:
            self.streams[runner.session.id] = runner
            self.access.opened(runner.key)
        self.metrics.connections.labels("accepted").inc()

    def authenticated(self, runner, key: ApiKey | None) -> None:
        """A socket that brought its key in-stream showed it: it becomes one of the
        streams, under the same limits as one that showed it in the handshake."""
        self.check_limits(runner.ip, key)
        del self.unauthenticated[runner.session.id]
        self.streams[runner.session.id] = runner
        self.access.opened(key)

    def closed(self, runner) -> None:
        if self.streams.pop(runner.session.id, None) is runner:
            self.access.closed(runner.key)
        self.unauthenticated.pop(runner.session.id, None)
        self.collector.cancel_session(runner.session.id)

    def open_runners(self) -> list:
        return [*self.streams.values(), *self.unauthenticated.values()]


async def _websocket_not_found(websocket: WebSocket) -> None:
    await websocket.send_denial_response(error(404, ErrorCode.NOT_FOUND, f"no WebSocket route for "
                                               f"{websocket.url.path}; streams on {streams.STREAM_PATH}"))


async def _internal_error(request: Request, exc: Exception):
    log.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error(500, ErrorCode.INTERNAL, "internal server error")


def build_app(lingting: Lingting) -> Starlette:
    routes = [
        *health.routes,
        *history_api.routes,
        *rooms_api.routes,
        *files.routes,
        *openai_api.routes,
        *telephony.routes,
        WebSocketRoute(streams.STREAM_PATH, streams.v1_stream),
        Route(streams.STREAM_PATH, upgrade_required),
        *(WebSocketRoute(path, streams.funasr_stream) for path in FUNASR_PATHS),
        Route("/funasr", upgrade_required),
        *pages.routes,
        WebSocketRoute("/{path:path}", _websocket_not_found),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_exception, Exception: _internal_error})
    app.state.lingting = lingting
    return HostGuard(app, lingting.access, lambda code: lingting.metrics.connections.labels(code).inc())


async def finish_streams(lingting: Lingting, grace_s: float,
                         last_frames_s: float = NetworkSettings.last_frames_s) -> None:
    """Finish every open stream's utterance (its final is sent), then close it with 1001."""
    # Audio the clients sent before the signal may still sit in socket
    # buffers: read it, so the last words make it into the finals.
    await asyncio.sleep(last_frames_s)
    for runner in lingting.open_runners():
        runner.end(End.SHUTDOWN)
    deadline = time.monotonic() + grace_s
    while lingting.open_runners() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    if lingting.open_runners():
        log.warning("shutdown: %d stream(s) still open after %.0f s; closing them", len(lingting.open_runners()),
                    grace_s)
        for runner in lingting.open_runners():
            runner.abort_now()


class _H11WithHandshakeTimeout(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, plus: a connection that has not sent a
    whole request (or WebSocket handshake) within the timeout is closed, so
    idle or trickling sockets cannot pile up."""
    handshake_timeout_s = 10.0
    _handshake_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._handshake_timer = self.loop.call_later(self.handshake_timeout_s, self._handshake_expired)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.cycle is not None or self.transport.get_protocol() is not self:   # a request came, or an upgrade
            self._stop_handshake_timer()

    def connection_lost(self, exc) -> None:
        self._stop_handshake_timer()
        super().connection_lost(exc)

    def _stop_handshake_timer(self) -> None:
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None

    def _handshake_expired(self) -> None:
        self._handshake_timer = None
        if self.cycle is None and not self.transport.is_closing() and self.conn.our_state is not h11.ERROR:
            self.transport.close()


class _WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol; a refusal sent as an HTTP response (the
    denial extension) counts as a finished handshake, as in its wsproto
    implementation, so it is not logged as an error (uvicorn PR #3138)."""

    async def send(self, message) -> None:
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and not message.get("more_body", False):
            self.handshake_complete = True


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):      # lingting-server handles SIGTERM/SIGINT itself (graceful shutdown)
        yield


class EdgeServer:
    def __init__(self, lingting: Lingting, ssl_certfile: str | None = None, ssl_keyfile: str | None = None):
        self.lingting = lingting
        network, limits = lingting.settings.network, lingting.settings.limits
        protocol = type("H11Protocol", (_H11WithHandshakeTimeout,),
                        {"handshake_timeout_s": network.handshake_timeout_s})
        self.config = uvicorn.Config(
            build_app(lingting), http=protocol, ws=_WebSocketProtocol, lifespan="off",
            ws_max_size=limits.max_frame_bytes + deflate_slack(limits.max_frame_bytes),
            ws_ping_interval=network.ping_interval_s, ws_ping_timeout=network.ping_interval_s,
            ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile, log_config=None, access_log=False,
            server_header=False, timeout_graceful_shutdown=5)
        self.server = _Server(self.config)
        self.audiosocket = (telephony.AudioSocketServer(lingting)
                            if lingting.settings.telephony.audiosocket_port is not None else None)
        self.socket: socket.socket | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        network = self.lingting.settings.network
        family = socket.AF_INET6 if ":" in network.host else socket.AF_INET
        self.socket = socket.create_server((network.host, network.port), family=family, backlog=2048)
        self._task = asyncio.get_running_loop().create_task(self.server.serve(sockets=[self.socket]))
        while not self.server.started:
            if self._task.done():
                await self._task        # startup failed: its error
                raise RuntimeError("server stopped while starting")
            await asyncio.sleep(0.01)
        await self.lingting.start_services()
        if self.audiosocket:
            await self.audiosocket.start()
            log.info("AudioSocket calls: tcp://%s:%d", self.lingting.settings.telephony.audiosocket_host,
                     self.audiosocket.port)
        self.lingting.ready = True

    @property
    def port(self) -> int:
        return self.socket.getsockname()[1]

    async def shutdown(self, grace_s: float = 30.0, drain_s: float = 0.0,
                       last_frames_s: float = NetworkSettings.last_frames_s) -> None:
        """Stop taking streams, finish the open utterances (their finals are
        sent), then close every stream with 1001 (going away). drain_s: first
        let open streams go on until they end, for up to that long (new ones
        are refused with 503 and /health says draining, so a load balancer
        sends them to another edge); last_frames_s: audio still read before."""
        lingting = self.lingting
        lingting.shutting_down = True
        lingting.ready = False
        if drain_s > 0 and lingting.streams:
            log.info("draining: %d open stream(s) may go on for up to %.0f s", len(lingting.streams), drain_s)
            deadline = time.monotonic() + drain_s
            while lingting.streams and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
        for server in self.server.servers:     # no new connections; open ones go on
            server.close()
        if self.audiosocket:
            self.audiosocket.close()
        await finish_streams(lingting, grace_s, last_frames_s)
        lingting.rooms.shutdown()       # boards (room viewers heard room_closed with their stream)
        self.server.should_exit = True
        await self._task
        await lingting.stop_services()
