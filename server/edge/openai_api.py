"""OpenAI's audio API, so tools configured with a base URL and a key use
Lingting unchanged: POST /v1/audio/transcriptions (multipart, every
response_format, stream=true as server-sent events), GET /v1/models, and the
realtime transcription WebSocket on /v1/realtime (codec: openai_realtime.py).
Same keys, tenancy, limits and history as protocol v1: a request is a session
like any other, run by a StreamRunner."""

from __future__ import annotations

import functools
import json

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from lingting_models.catalog import list_models

from ..access import AccessDenied
from ..errors import ErrorCode, ProtocolError
from ..hotwords import from_prompt
from ..openai_compat import (MEDIA_TYPES, RESPONSE_FORMATS, StreamedTranscript, check_model, error_body,
                             iso_language, language_of, model_names, render)
from ..openai_realtime import SUBPROTOCOL as REALTIME_SUBPROTOCOL, RealtimeCodec
from ..protocol import MAX_FILENAME_CHARS, Audio, Start, Stop, parse_start
from ..streaming.events import Error, Final, Stopped
from .responses import JSON, status_for
from .runner import QueueTransport, StreamRunner
from .streams import client_details, serve

SUBPROTOCOL = "openai.http"          # what history records as the client's protocol
READ_CHUNK = 256 * 1024
FORM_SLACK = 1 << 20                 # room in the body for the form around the file


class FormError(Exception):
    def __init__(self, status: int, code: str, message: str, param: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.param = status, code, message, param


def openai_error(status: int, code: str, message: str, param: str | None = None, headers=None) -> Response:
    return JSON(error_body(status, code, message, param), status, headers=headers)


def _denied(lingting, exc: AccessDenied) -> Response:
    lingting.metrics.connections.labels(exc.code).inc()
    return openai_error(exc.status, exc.code, exc.message,
                        headers={"Retry-After": str(exc.retry_after)} if exc.retry_after else None)


def served_models(lingting) -> tuple[str, ...]:
    return _names(lingting.model_info["model"])


@functools.cache
def _names(loaded: str) -> tuple[str, ...]:
    # The catalog is read once, not on every request.
    aliases = next((tuple(m.get("aliases", ())) for m in list_models() if m["name"] == loaded), ())
    return model_names(loaded, aliases)


# ---- GET /v1/models -------------------------------------------------------
def _model(name: str, created: int) -> dict:
    return {"id": name, "object": "model", "created": created, "owned_by": "lingting"}


async def models(request: Request) -> Response:
    lingting = request.app.state.lingting
    try:
        lingting.access.authenticate(str(request.url), request.headers)
    except AccessDenied as exc:
        return _denied(lingting, exc)
    created = int(lingting.started_at)
    return JSON({"object": "list", "data": [_model(n, created) for n in served_models(lingting)]})


async def model(request: Request) -> Response:
    lingting = request.app.state.lingting
    try:
        lingting.access.authenticate(str(request.url), request.headers)
        check_model(request.path_params["name"], served_models(lingting))
    except AccessDenied as exc:
        return _denied(lingting, exc)
    except ProtocolError as exc:
        return openai_error(404, exc.code, exc.message, "model")
    return JSON(_model(request.path_params["name"], int(lingting.started_at)))


# ---- POST /v1/audio/transcriptions -------------------------------------------
async def _limited(request: Request, limit: int):
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            raise FormError(413, ErrorCode.TOO_LARGE, f"the request is over this server's limit of {limit} bytes")
        yield chunk


async def _read_form(request: Request, max_file_bytes: int):
    if not request.headers.get("Content-Type", "").startswith("multipart/form-data"):
        raise FormError(400, ErrorCode.INVALID_FIELD, "send multipart/form-data with the audio as the 'file' field")
    limit = max_file_bytes + FORM_SLACK
    declared = request.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise FormError(413, ErrorCode.TOO_LARGE, f"a file of {declared} bytes is over this server's limit of "
                        f"{max_file_bytes} bytes", "file")
    parser = MultiPartParser(request.headers, _limited(request, limit), max_files=1, max_fields=64,
                             max_part_size=64 * 1024)
    try:
        return await parser.parse()
    except MultiPartException as exc:
        raise FormError(400, ErrorCode.INVALID_FIELD, f"malformed multipart form: {exc.message}") from None


def _flag(value: str | None, name: str) -> bool:
    if value is None or value.lower() in ("false", "0", ""):
        return False
    if value.lower() in ("true", "1"):
        return True
    raise FormError(400, ErrorCode.INVALID_FIELD, f"'{name}' must be true or false", name)


class TranscriptionRequest:
    """The form's fields, checked; unknown fields are ignored, as tools send extras."""

    def __init__(self, form, names: tuple[str, ...]):
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise FormError(400, ErrorCode.INVALID_FIELD, "'file' is required: the audio file to transcribe", "file")
        self.file = upload
        try:
            check_model(form.get("model"), names)
        except ProtocolError as exc:
            raise FormError(status_for(exc.code), exc.code, exc.message, "model") from None
        self.format = form.get("response_format") or "json"
        if self.format not in RESPONSE_FORMATS:
            raise FormError(400, ErrorCode.INVALID_FIELD, f"response_format must be one of "
                            f"{', '.join(RESPONSE_FORMATS)}", "response_format")
        self.language = iso_language(form.get("language") or "auto")
        try:
            self.temperature = float(form.get("temperature") or 0)
        except ValueError:
            self.temperature = -1.0
        if not 0 <= self.temperature <= 1:
            raise FormError(400, ErrorCode.INVALID_FIELD, "temperature must be a number from 0 to 1", "temperature")
        granularities = form.getlist("timestamp_granularities[]") + form.getlist("timestamp_granularities")
        if set(granularities) - {"word", "segment"}:
            raise FormError(400, ErrorCode.INVALID_FIELD, "timestamp_granularities may hold word and segment",
                            "timestamp_granularities")
        self.words = "word" in granularities and self.format == "verbose_json"
        self.stream = _flag(form.get("stream"), "stream")
        self.hotwords = from_prompt(form.get("prompt") or "")

    def start(self) -> dict:
        filename = (self.file.filename or "audio")[-MAX_FILENAME_CHARS:]
        return {"type": "start", "mode": "offline", "filename": filename, "language": self.language,
                "file_bytes": self.file.size, "hotwords": self.hotwords, "word_timestamps": self.words}


async def transcriptions(request: Request) -> Response:
    lingting = request.app.state.lingting
    try:
        key, ip = lingting.admit(request)
    except AccessDenied as exc:
        return _denied(lingting, exc)
    form = None
    try:
        form = await _read_form(request, lingting.settings.limits.max_file_bytes)
        asked = TranscriptionRequest(form, served_models(lingting))
        config = parse_start(asked.start())
    except (FormError, ProtocolError, ClientDisconnect) as exc:
        if form is not None:
            await form.close()
        if isinstance(exc, ClientDisconnect):
            return Response(status_code=400)     # nobody reads it
        if isinstance(exc, FormError):
            return openai_error(exc.status, exc.code, exc.message, exc.param)
        return openai_error(status_for(exc.code), exc.code, exc.message,
                            "language" if exc.code == ErrorCode.UNSUPPORTED else "prompt")
    transport = QueueTransport()
    runner = StreamRunner(lingting, lingting.new_session(), transport, key, client_details(request, ip, SUBPROTOCOL))
    lingting.opened(runner)
    answer = None
    try:
        runner.receive(Start(config))
        while not runner.closing and (chunk := await asked.file.read(READ_CHUNK)):
            runner.receive(Audio(chunk))
        if not runner.closing:
            runner.receive(Stop())
        answer = await _answer(runner, transport, asked)
    finally:
        await form.close()
        if not isinstance(answer, StreamingResponse):   # (a stream finishes the session when it ends)
            transport.reader_left()
            await runner.finish(client_left=answer is None)     # None: cancelled, the client left
            lingting.closed(runner)
    return answer


async def _answer(runner: StreamRunner, transport: QueueTransport, asked: TranscriptionRequest) -> Response:
    """Wait for the first final (or the end): a file refused by then is an HTTP
    error; otherwise the whole answer, or (stream=true) the events from here on."""
    events = transport.events()
    seen = []
    async for event in events:
        seen.append(event)
        if isinstance(event, Final) and asked.stream:
            break         # the rest streams
        if isinstance(event, Error) and event.fatal:
            return openai_error(status_for(event.code), event.code, event.message, "file"
                                if event.code == ErrorCode.BAD_AUDIO else None)
    if asked.stream:
        return StreamingResponse(_sse(runner, transport, seen, events), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store"})
    finals = [e for e in seen if isinstance(e, Final)]
    failed = next((f for f in finals if f.error), None)
    if failed is not None:       # a gap in the transcript: say so rather than answer with less
        return openai_error(500, ErrorCode.DECODE_FAILED, f"utterance {failed.utterance} could not be decoded: "
                            f"{failed.error}")
    stopped = next((e for e in seen if isinstance(e, Stopped)), None)
    duration = stopped.audio_ms / 1000 if stopped else 0.0
    body = render(finals, asked.format, duration_s=duration, language=language_of(finals, asked.language),
                  temperature=asked.temperature, words=asked.words)
    if isinstance(body, dict):
        return JSON(body)
    return PlainTextResponse(body, media_type=MEDIA_TYPES[asked.format])


async def _sse(runner: StreamRunner, transport: QueueTransport, seen: list, rest):
    transcript = StreamedTranscript()
    left = True

    def lines(event) -> str:
        if isinstance(event, Final):
            delta = transcript.delta(event)
            return f"data: {json.dumps(delta, ensure_ascii=False)}\n\n" if delta else ""
        if isinstance(event, Error) and (event.fatal or event.code == ErrorCode.DECODE_FAILED):
            body = {"type": "error", **error_body(status_for(event.code), event.code, event.message)}
            return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"
        if isinstance(event, Stopped):
            return f"data: {json.dumps(transcript.done(event.audio_ms / 1000), ensure_ascii=False)}\n\n"
        return ""
    try:
        for event in seen:
            if text := lines(event):
                yield text
        async for event in rest:
            if text := lines(event):
                yield text
        left = False
    finally:
        if left:
            transport.reader_left()
        await runner.finish(client_left=left)
        runner.lingting.closed(runner)


# ---- the realtime WebSocket --------------------------------------------------
async def realtime(websocket: WebSocket) -> None:
    lingting = websocket.app.state.lingting
    names = served_models(lingting)

    def negotiate(offered: list[str], session):
        requested = websocket.query_params.get("model")
        if requested is not None:
            try:
                check_model(requested, names)
            except ProtocolError as exc:
                raise AccessDenied(404, exc.code, exc.message) from None
        codec = RealtimeCodec(session.id, names)
        return codec, REALTIME_SUBPROTOCOL if REALTIME_SUBPROTOCOL in offered else None

    await serve(websocket, negotiate)


REALTIME_PATH = "/v1/realtime"
routes = [
    Route("/v1/audio/transcriptions", transcriptions, methods=["POST"]),
    Route("/v1/models", models, methods=["GET"]),
    Route("/v1/models/{name:path}", model, methods=["GET"]),
    WebSocketRoute(REALTIME_PATH, realtime),
]
