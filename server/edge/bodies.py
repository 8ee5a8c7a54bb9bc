"""Request bodies, always bounded: what the server parses (JSON) is read up to
--max-body-kb, the declared Content-Length refused up front and the bytes
counted as they come (a chunked body declares none); an upload is streamed,
and a client that stops sending it is timed out (--upload-idle-timeout-s)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from starlette.requests import Request

from ..wire.errors import ErrorCode, ProtocolError
from ..settings import LimitSettings


def too_large(what: str, limit: int, setting: str) -> ProtocolError:
    return ProtocolError(ErrorCode.TOO_LARGE, f"{what} is over this server's limit of {limit} bytes ({setting})")


def check_declared(request: Request, limit: int, what: str, setting: str) -> None:
    """A body whose Content-Length is over the limit is refused before any of it is read."""
    declared = request.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(f"{what} of {declared} bytes", limit, setting)


async def read_body(request: Request, limits: LimitSettings) -> bytes:
    """The whole body, at most --max-body-kb; ProtocolError(too_large) past it."""
    limit = limits.max_body_bytes
    check_declared(request, limit, "the request body", "--max-body-kb")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large("the request body", limit, "--max-body-kb")
    return bytes(body)


async def read_json(request: Request, limits: LimitSettings):
    body = await read_body(request, limits)
    try:
        return json.loads(body)
    except ValueError:       # (UnicodeDecodeError is one)
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "the body must be JSON") from None


class UploadIdle(Exception):
    """The client sent no body for --upload-idle-timeout-s."""


def upload_idle_error(limits: LimitSettings) -> ProtocolError:
    return ProtocolError(ErrorCode.IDLE_TIMEOUT, f"no file data for {limits.upload_idle_timeout_s:g} s: upload "
                         "abandoned (--upload-idle-timeout-s)", fatal=True)


async def upload_chunks(request: Request, limits: LimitSettings) -> AsyncIterator[bytes]:
    """The body as it arrives; UploadIdle when none comes for the upload idle timeout."""
    chunks = request.stream().__aiter__()
    while True:
        try:
            chunk = await asyncio.wait_for(chunks.__anext__(), limits.upload_idle_timeout_s)
        except StopAsyncIteration:
            return
        except asyncio.TimeoutError:
            raise UploadIdle from None
        if chunk:
            yield chunk
