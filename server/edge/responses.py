"""HTTP responses in the house style: JSON errors {"error": code, "message": ...}
with codes from errors.ErrorCode."""

from __future__ import annotations

import http

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..services.access import AccessDenied
from ..wire.errors import ErrorCode

_CODES = {400: ErrorCode.INVALID_FIELD, 404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED,
          426: ErrorCode.UPGRADE_REQUIRED, 500: ErrorCode.INTERNAL}

# A refusal's HTTP status by its code (the rest are the client's mistakes: 400).
_STATUS = {ErrorCode.TOO_LARGE: 413, ErrorCode.OVERLOADED: 503, ErrorCode.IDLE_TIMEOUT: 408,
           ErrorCode.QUOTA_EXCEEDED: 429, ErrorCode.MODEL_NOT_FOUND: 404, ErrorCode.INTERNAL: 500,
           ErrorCode.DECODE_FAILED: 500}


def status_for(code: str) -> int:
    return _STATUS.get(code, 400)


class JSON(JSONResponse):
    """JSON without ASCII escapes (transcripts are often Chinese or Japanese)."""

    def render(self, content) -> bytes:
        import json
        return json.dumps(content, ensure_ascii=False).encode("utf-8")


def error(status: int, code: str, message: str, headers: dict | None = None) -> Response:
    return JSON({"error": code, "message": message}, status, headers=headers)


def denied(exc: AccessDenied) -> Response:
    retry = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
    return error(exc.status, exc.code, exc.message, retry)


async def http_exception(request: Request, exc: HTTPException) -> Response:
    """Starlette's own 404 and 405, in our shape."""
    if exc.status_code == 404:
        return error(404, ErrorCode.NOT_FOUND, f"no route for {request.url.path}; page on /, history page on "
                     "/history, stream on /v1/stream, files on POST /v1/files, history API on /v1/history/sessions, "
                     "OpenAI's API on /v1/audio/transcriptions, /v1/models and /v1/realtime, "
                     "health on /health, metrics on /metrics")
    message = (f"{request.method} is not allowed on {request.url.path}" if exc.status_code == 405
               else exc.detail or http.HTTPStatus(exc.status_code).phrase)
    return error(exc.status_code, _CODES.get(exc.status_code, ErrorCode.BAD_MESSAGE), message, exc.headers)


async def upgrade_required(request: Request) -> Response:
    """A plain HTTP request to a path that takes WebSocket connections only."""
    return error(426, ErrorCode.UPGRADE_REQUIRED, f"{request.url.path} takes WebSocket connections")
