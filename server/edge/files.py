"""POST /v1/files: a media file as the request body (any container FFmpeg
reads), its transcription as the response, streamed while it happens: NDJSON,
one event per line, the same events as the WebSocket offline mode (ready,
progress, alert, final..., stopped). A browser shows the upload's progress
from its own upload events, then the transcription's from the `progress` lines.

Query parameters: filename, language, itn, word_timestamps, hotwords and
watch (each repeatable). Refusals before the transcription starts are plain
HTTP errors in the house shape."""

from __future__ import annotations

import json

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from ..services.access import AccessDenied
from ..wire.errors import ErrorCode, ProtocolError
from ..protocols.messages import Audio, Start, Stop, parse_start
from ..wire.events import Error
from ..streaming.session import End
from .bodies import UploadIdle, upload_chunks, upload_idle_error
from .responses import denied, error, status_for
from .runner import QueueTransport, StreamRunner
from .streams import client_details

FILES_PATH = "/v1/files"
SUBPROTOCOL = "http.ndjson"        # what history records as the client's protocol
_FLAGS = ("itn", "word_timestamps")


def start_message(request: Request) -> dict:
    query = request.query_params
    start = {"type": "start", "mode": "offline"}
    for name in ("filename", "language"):
        if name in query:
            start[name] = query[name]
    for name in _FLAGS:
        if name in query:
            start[name] = query[name].lower() in ("1", "true", "yes", "on")
    for name in ("hotwords", "watch"):
        if name in query:
            start[name] = query.getlist(name)
    if request.headers.get("Content-Length", "").isdigit():
        start["file_bytes"] = int(request.headers["Content-Length"])
    return start


def refusal(transport: QueueTransport) -> ProtocolError:
    """Why a transcription was refused before it started: its last error."""
    errors = [e for e in transport.queued() if isinstance(e, Error)]
    return (ProtocolError(errors[-1].code, errors[-1].message) if errors else
            ProtocolError(ErrorCode.INTERNAL, "transcription refused"))


async def transcribe_file(request: Request) -> Response:
    lingting = request.app.state.lingting
    try:
        key, ip = lingting.admit(request)
        config = parse_start(start_message(request))
    except AccessDenied as exc:
        lingting.metrics.connections.labels(exc.code).inc()
        return denied(exc)
    except ProtocolError as exc:
        return error(status_for(exc.code), exc.code, exc.message)
    transport = QueueTransport()
    runner = StreamRunner(lingting.stream_services, lingting.new_session(), transport, key,
                          client_details(request, ip, SUBPROTOCOL))
    lingting.opened(runner)
    try:
        runner.receive(Start(config))
        await _read_body(request, runner)
    except ClientDisconnect:
        transport.reader_left()
        await runner.finish(client_left=True)
        lingting.closed(runner)
        return Response(status_code=400)    # the client left: nobody reads it
    if runner.closing:                       # refused before its transcription started
        await runner.finish(client_left=False)
        lingting.closed(runner)
        why = refusal(transport)
        return error(status_for(why.code), why.code, why.message)

    async def events():
        left = True
        try:
            async for event in transport.events():
                yield json.dumps(event.to_wire(), ensure_ascii=False) + "\n"
            left = False
        finally:
            if left:
                transport.reader_left()
            await runner.finish(client_left=left)
            lingting.closed(runner)
    return StreamingResponse(events(), media_type="application/x-ndjson", headers={"Cache-Control": "no-store"})


async def _read_body(request: Request, runner: StreamRunner) -> None:
    limits = request.app.state.lingting.settings.limits
    if runner.closing:
        return
    try:
        async for chunk in upload_chunks(request, limits):
            runner.receive(Audio(chunk))
            if runner.closing:           # refused (too large, no space): the rest is not read
                return
    except UploadIdle:
        runner.end(End.IDLE, upload_idle_error(limits))
        return
    runner.receive(Stop())


routes = [Route(FILES_PATH, transcribe_file, methods=["POST"])]
