"""Checks every request passes before any route sees it: the Host name (DNS
rebinding guard) everywhere, the browser Origin wherever a stream opens or
history is read (every WebSocket, everything under /v1/), and headers every
answer carries."""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from ..services.access import AccessDenied, AccessPolicy
from .responses import denied


class HostGuard:
    """Pure ASGI middleware, so it covers WebSocket handshakes too (refused
    with an HTTP response before the upgrade)."""

    def __init__(self, app: ASGIApp, access: AccessPolicy, on_refused=None):
        self.app = app
        self.access = access
        self.on_refused = on_refused or (lambda code: None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        try:
            headers = Headers(scope=scope)
            self.access.check_host(headers)
            if scope["type"] == "websocket" or scope["path"].startswith("/v1/"):
                self.access.check_origin(headers)
        except AccessDenied as exc:
            self.on_refused(exc.code)
            if scope["type"] == "websocket":
                return await WebSocket(scope, receive, send).send_denial_response(denied(exc))
            return await denied(exc)(scope, receive, send)
        if scope["type"] == "websocket":
            return await self.app(scope, receive, send)

        async def with_nosniff(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["X-Content-Type-Options"] = "nosniff"
            await send(message)
        await self.app(scope, receive, with_nosniff)
