"""OpenAI's audio API, so tools configured with a base URL and a key use
Lingting unchanged: POST /v1/audio/transcriptions (multipart, every
response_format, stream=true as server-sent events), GET /v1/models, and the
realtime transcription WebSocket on /v1/realtime (codec: openai_realtime.py).
Same keys, tenancy, limits and history as protocol v1: a request is a session
like any other, run by a StreamRunner."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from ..services.access import AccessDenied
from ..wire.errors import ErrorCode, ProtocolError
from ..text.hotwords import from_prompt
from ..protocols.openai import MEDIA_TYPES, RESPONSE_FORMATS, StreamedTranscript, check_model, error_body, iso_language, language_of, render
from ..protocols.messages import MAX_FILENAME_CHARS, Audio, Start, Stop, parse_start
from ..settings import LimitSettings
from ..wire.events import Error, Final, Stopped
from ..streaming.session import End
from .bodies import UploadIdle, check_declared, upload_chunks, upload_idle_error
from .codecs import ENDPOINTS, REALTIME_PATH, served_models
from .files import refusal
from .responses import JSON, status_for
from .runner import QueueTransport, StreamRunner
from .streams import client_details, serve

SUBPROTOCOL = "openai.http"          # what history records as the client's protocol


def openai_error(status: int, code: str, message: str, param: str | None = None, headers=None) -> Response:
    return JSON(error_body(status, code, message, param), status, headers=headers)


def _denied(lingting, exc: AccessDenied) -> Response:
    lingting.metrics.connections.labels(exc.code).inc()
    return openai_error(exc.status, exc.code, exc.message,
                        headers={"Retry-After": str(exc.retry_after)} if exc.retry_after else None)


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
MAX_FIELDS = 64
FORM_SLACK = 64 * 1024               # the boundaries around the form's parts
REPLAY_CHUNK = 16 << 20              # one upload progress event per chunk: few enough for any file


class FormError(Exception):
    def __init__(self, status: int, code: str, message: str, param: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.param = status, code, message, param


@dataclass
class Form:
    """A transcription request's form: its fields, and what came of its file
    (whose bytes went to the spool as they arrived)."""
    fields: dict[str, list[str]] = field(default_factory=dict)
    has_file: bool = False
    filename: str | None = None
    file_bytes: int = 0

    def get(self, name: str) -> str | None:
        values = self.fields.get(name)
        return values[-1] if values else None

    def getlist(self, name: str) -> list[str]:
        return self.fields.get(name, [])


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


class FormReader:
    """multipart/form-data read as it arrives (python-multipart's push parser):
    the fields kept, at most --max-body-kb of them with their part headers;
    the bytes of the 'file' part handed to `keep` (the spool) as they come, at
    most --max-file-mb. The fields may come before or after the file."""

    def __init__(self, boundary: bytes, keep: Callable[[bytes], None], limits: LimitSettings):
        self.form = Form()
        self._keep = keep
        self._max_file, self._max_fields = limits.max_file_bytes, limits.max_body_bytes
        self._field_bytes = 0
        self._header = [b"", b""]
        self._headers: dict[bytes, bytes] = {}
        self._name = ""
        self._value = bytearray()
        self._in_file = False
        self._ended = False
        self._parser = MultipartParser(boundary, {
            "on_part_begin": self._part_begin, "on_header_field": self._header_field,
            "on_header_value": self._header_value, "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished, "on_part_data": self._part_data,
            "on_part_end": self._part_end, "on_end": self._end})

    def write(self, chunk: bytes) -> None:
        try:
            self._parser.write(chunk)
        except MultipartParseError as exc:
            raise FormError(400, ErrorCode.INVALID_FIELD, f"malformed multipart form: {exc}") from None

    def finish(self) -> Form:
        if not self._ended:
            raise FormError(400, ErrorCode.INVALID_FIELD, "malformed multipart form: it ended before its closing "
                            "boundary")
        return self.form

    def _count(self, n: int) -> None:
        self._field_bytes += n
        if self._field_bytes > self._max_fields:
            raise FormError(413, ErrorCode.TOO_LARGE, f"the form's fields are over this server's limit of "
                            f"{self._max_fields} bytes (--max-body-kb)")

    def _part_begin(self) -> None:
        self._headers, self._value, self._in_file = {}, bytearray(), False

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._count(end - start)
        self._header[0] += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._count(end - start)
        self._header[1] += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header[0].lower()] = self._header[1]
        self._header = [b"", b""]

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition"))
        if b"name" not in options:
            raise FormError(400, ErrorCode.INVALID_FIELD, "malformed multipart form: a part without a name")
        self._name = _text(options[b"name"])
        if self._name == "file":
            if self.form.has_file:
                raise FormError(400, ErrorCode.INVALID_FIELD, "send one 'file'", "file")
            self.form.has_file, self._in_file = True, True
            self.form.filename = _text(options[b"filename"]) if b"filename" in options else None
        elif b"filename" in options:
            raise FormError(400, ErrorCode.INVALID_FIELD, f"'file' is required: the audio file to transcribe "
                            f"(this form's file is named {self._name[:40]!r})", "file")
        elif sum(map(len, self.form.fields.values())) >= MAX_FIELDS:
            raise FormError(400, ErrorCode.INVALID_FIELD, f"a form of more than {MAX_FIELDS} fields")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if not self._in_file:
            self._count(end - start)
            self._value += data[start:end]
            return
        self.form.file_bytes += end - start
        if self.form.file_bytes > self._max_file:
            raise FormError(413, ErrorCode.TOO_LARGE, f"the file is over this server's limit of {self._max_file} "
                            "bytes (--max-file-mb)", "file")
        self._keep(data[start:end])

    def _part_end(self) -> None:
        if not self._in_file:
            self.form.fields.setdefault(self._name, []).append(_text(self._value))

    def _end(self) -> None:
        self._ended = True


def _boundary(request: Request) -> bytes:
    kind, options = parse_options_header(request.headers.get("Content-Type", ""))
    if kind != b"multipart/form-data":
        raise FormError(400, ErrorCode.INVALID_FIELD, "send multipart/form-data with the audio as the 'file' field")
    if not options.get(b"boundary"):
        raise FormError(400, ErrorCode.INVALID_FIELD, "malformed multipart form: its Content-Type has no boundary")
    return options[b"boundary"]


async def _read_form(request: Request, boundary: bytes, runner: StreamRunner, limits: LimitSettings) -> Form | None:
    """The form, its file spooled as it comes (the file feed keeps it), as
    /v1/files spools a body: under the spool budget and the upload idle
    timeout. None: the runner refused it (no space, idle); its error says why."""
    reader = FormReader(boundary, runner.file.keep, limits)
    limit, seen = limits.max_file_bytes + limits.max_body_bytes + FORM_SLACK, 0
    try:
        async for chunk in upload_chunks(request, limits):
            seen += len(chunk)
            if seen > limit:
                raise FormError(413, ErrorCode.TOO_LARGE, f"the request is over this server's limit of {limit} "
                                "bytes (--max-file-mb and --max-body-kb)", "file")
            reader.write(chunk)
            if runner.closing:
                return None
    except UploadIdle:
        runner.end(End.IDLE, upload_idle_error(limits))
        return None
    return reader.finish()


def _flag(value: str | None, name: str) -> bool:
    if value is None or value.lower() in ("false", "0", ""):
        return False
    if value.lower() in ("true", "1"):
        return True
    raise FormError(400, ErrorCode.INVALID_FIELD, f"'{name}' must be true or false", name)


class TranscriptionRequest:
    """The form's fields, checked; unknown fields are ignored, as tools send extras."""

    def __init__(self, form: Form, names: tuple[str, ...]):
        if not form.has_file:
            raise FormError(400, ErrorCode.INVALID_FIELD, "'file' is required: the audio file to transcribe", "file")
        self.form = form
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
        filename = (self.form.filename or "audio")[-MAX_FILENAME_CHARS:]
        return {"type": "start", "mode": "offline", "filename": filename, "language": self.language,
                "file_bytes": self.form.file_bytes, "hotwords": self.hotwords, "word_timestamps": self.words}


async def transcriptions(request: Request) -> Response:
    lingting = request.app.state.lingting
    limits = lingting.settings.limits
    try:
        key, ip = lingting.admit(request)
        boundary = _boundary(request)
        check_declared(request, limits.max_file_bytes + limits.max_body_bytes + FORM_SLACK, "a form",
                       "--max-file-mb and --max-body-kb")
    except AccessDenied as exc:
        return _denied(lingting, exc)
    except FormError as exc:
        return openai_error(exc.status, exc.code, exc.message, exc.param)
    except ProtocolError as exc:
        return openai_error(status_for(exc.code), exc.code, exc.message, "file")
    transport = QueueTransport()
    runner = StreamRunner(lingting.stream_services, lingting.new_session(), transport, key,
                          client_details(request, ip, SUBPROTOCOL))
    lingting.opened(runner)         # a stream from its first byte on, as /v1/files counts an upload
    refused: FormError | None = None
    try:
        form = await _read_form(request, boundary, runner, limits)
        asked = TranscriptionRequest(form, served_models(lingting)) if form else None
        config = parse_start(asked.start()) if asked else None
    except ClientDisconnect:
        transport.reader_left()
        await runner.finish(client_left=True)
        lingting.closed(runner)
        return Response(status_code=400)     # nobody reads it
    except FormError as exc:
        refused = exc
    except ProtocolError as exc:
        refused = FormError(status_for(exc.code), exc.code, exc.message,
                            "language" if exc.code == ErrorCode.UNSUPPORTED else "prompt")
    if refused is not None:
        runner.reject(ProtocolError(refused.code, refused.message, fatal=True))
    if runner.closing:           # refused before its transcription started
        await runner.finish(client_left=False)
        lingting.closed(runner)
        why = refused or refusal(transport)
        return openai_error(status_for(why.code), why.code, why.message, refused and refused.param)
    answer = None
    try:
        runner.receive(Start(config))
        async for chunk in runner.file.kept_chunks(REPLAY_CHUNK):
            if runner.closing:
                break
            runner.receive(Audio(chunk))
        if not runner.closing:
            runner.receive(Stop())
        answer = await _answer(lingting, runner, transport, asked)
    finally:
        if not isinstance(answer, StreamingResponse):   # (a stream finishes the session when it ends)
            transport.reader_left()
            await runner.finish(client_left=answer is None)     # None: cancelled, the client left
            lingting.closed(runner)
    return answer


async def _answer(lingting, runner: StreamRunner, transport: QueueTransport, asked: TranscriptionRequest) -> Response:
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
        return StreamingResponse(_sse(lingting, runner, transport, seen, events), media_type="text/event-stream",
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


async def _sse(lingting, runner: StreamRunner, transport: QueueTransport, seen: list, rest):
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
        lingting.closed(runner)


# ---- the realtime WebSocket --------------------------------------------------
async def realtime(websocket: WebSocket) -> None:
    await serve(websocket, ENDPOINTS[REALTIME_PATH])


routes = [
    Route("/v1/audio/transcriptions", transcriptions, methods=["POST"]),
    Route("/v1/models", models, methods=["GET"]),
    Route("/v1/models/{name:path}", model, methods=["GET"]),
    WebSocketRoute(REALTIME_PATH, realtime),
]
