"""The web pages and the browser client, from the installed package."""

from __future__ import annotations

from importlib.resources import files

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..wire.errors import ErrorCode
from .responses import error

_CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                  ".css": "text/css; charset=utf-8", ".ts": "text/plain; charset=utf-8"}
_PACKAGES = {"web": "lingting_server.web", "client_js": "lingting_server.client_js"}

# The pages load only their own scripts and styles; the browser client's audio
# worklet is a blob: module. frame-ancestors is filled in per server.
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self' blob:; worker-src 'self' blob:; "
                           "connect-src 'self'; img-src 'self' data:; media-src 'self' blob:; style-src 'self'; "
                           "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors {ancestors}")


def content_security_policy(frame_ancestors: tuple[str, ...]) -> str:
    return CONTENT_SECURITY_POLICY.format(ancestors=" ".join(frame_ancestors) or "'self'")


def _file(request: Request, folder: str, name: str) -> Response:
    suffix = "." + name.rsplit(".", 1)[-1]
    resource = files(_PACKAGES[folder]) / name
    if name.startswith(".") or "/" in name or suffix not in _CONTENT_TYPES or not resource.is_file():
        return error(404, ErrorCode.NOT_FOUND, f"no file {request.url.path}")
    headers = {"Cache-Control": "no-cache"}
    if suffix == ".html":
        headers["Content-Security-Policy"] = request.app.state.lingting.content_security_policy
    return Response(resource.read_bytes(), headers=headers, media_type=_CONTENT_TYPES[suffix])


async def live_page(request: Request) -> Response:
    return _file(request, "web", "index.html")


async def history_page(request: Request) -> Response:
    return _file(request, "web", "history.html")


async def watch_page(request: Request) -> Response:
    return _file(request, "web", "watch.html")


async def board_page(request: Request) -> Response:
    return _file(request, "web", "live.html")


async def web_file(request: Request) -> Response:
    return _file(request, "web", request.path_params["name"])


async def client_file(request: Request) -> Response:
    return _file(request, "client_js", request.path_params["name"])


routes = [
    Route("/", live_page),
    Route("/history", history_page),
    Route("/live", board_page),
    Route("/watch/{room:str}", watch_page),
    Route("/web/{name:str}", web_file),
    Route("/client_js/{name:str}", client_file),
]
