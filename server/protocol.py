"""Wire protocol v1: message parsing and validation, event encoding.

Pure functions and dataclasses, no I/O. Two subprotocols carry the same
messages: lingting.v1.json (control as JSON text frames, audio as binary
frames) and lingting.v1.msgpack (every message a msgpack map)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import msgpack

from .alerts import WatchPhrase
from .hotwords import Hotword
from .streaming.audio import ENCODINGS
from .streaming.segmenter import EndpointConfig

SUBPROTOCOL_JSON = "lingting.v1.json"
SUBPROTOCOL_MSGPACK = "lingting.v1.msgpack"
SUBPROTOCOLS = (SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK)
LANGUAGES = ("auto", "en", "zh", "ja")
MIN_RATE, MAX_RATE = 8000, 48000
MAX_HOTWORDS, MAX_HOTWORD_CHARS = 100, 64
MAX_WATCH, MAX_WATCH_CHARS = 50, 64


class ErrorCode:
    BAD_MESSAGE = "bad_message"          # not JSON/msgpack, not a map, unknown type
    INVALID_FIELD = "invalid_field"      # a field with a wrong type or value
    NOT_STARTED = "not_started"          # audio/flush before start
    ALREADY_STARTED = "already_started"
    BAD_AUDIO = "bad_audio"              # an undecodable frame
    UNSUPPORTED = "unsupported"          # sample rate, language the model lacks
    TOO_LARGE = "too_large"
    OVERLOADED = "overloaded"
    DECODE_FAILED = "decode_failed"
    HISTORY_FAILED = "history_failed"    # the transcript was sent but could not be stored
    IDLE_TIMEOUT = "idle_timeout"        # no message for too long while streaming
    QUOTA_EXCEEDED = "quota_exceeded"    # the API key's audio minutes are spent
    INTERNAL = "internal"


class ProtocolError(Exception):
    def __init__(self, code: str, message: str, fatal: bool = False):
        super().__init__(message)
        self.code, self.message, self.fatal = code, message, fatal

    def event(self) -> dict:
        return {"type": "error", "code": self.code, "message": self.message, "fatal": self.fatal}


MODES = ("stream", "offline")
MAX_FILENAME_CHARS = 255


@dataclass(frozen=True)
class StartConfig:
    mode: str = "stream"               # offline: the frames are a media file, decoded after stop
    filename: str | None = None        # offline: shown in history
    file_bytes: int | None = None      # offline: the file's size, if the client knows it
    sample_rate: int = 16000
    encoding: str = "pcm_s16le"
    language: str = "auto"
    partials: bool = True
    partial_interval_ms: int = 500
    endpointing: EndpointConfig = field(default_factory=EndpointConfig)
    word_timestamps: bool = True
    hotwords: tuple[Hotword, ...] = ()
    watch: tuple[WatchPhrase, ...] = ()
    itn: bool = True
    itn_partials: bool = False

    def summary(self) -> dict:
        """The settings as plain values, for history."""
        names = ("mode", "language", "word_timestamps", "itn") + (
            ("sample_rate", "encoding", "partials") if self.mode == "stream" else ("filename", "file_bytes"))
        out = {name: getattr(self, name) for name in names}
        out["endpointing"] = {"silence_ms": self.endpointing.silence_ms,
                              "max_utterance_ms": self.endpointing.max_utterance_ms,
                              "vad_aggressiveness": self.endpointing.vad_aggressiveness}
        out["hotwords"] = [{"phrase": h.phrase, "boost": h.boost} for h in self.hotwords]
        out["watch"] = [w.phrase for w in self.watch]
        return out


@dataclass(frozen=True)
class Start:
    config: StartConfig


@dataclass(frozen=True)
class Update:
    """Replaces hotwords and/or watch phrases mid-stream (None: keep)."""
    hotwords: tuple[Hotword, ...] | None = None
    watch: tuple[WatchPhrase, ...] | None = None


@dataclass(frozen=True)
class Audio:
    data: bytes


@dataclass(frozen=True)
class Flush:
    pass


@dataclass(frozen=True)
class KeepAlive:
    pass


@dataclass(frozen=True)
class Stop:
    pass


ClientMessage = Start | Update | Audio | Flush | KeepAlive | Stop


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ProtocolError(ErrorCode.INVALID_FIELD, message)


def _int(value, name: str, low: int, high: int) -> int:
    _require(isinstance(value, int) and not isinstance(value, bool), f"{name} must be an integer")
    _require(low <= value <= high, f"{name} must be between {low} and {high}, got {value}")
    return value


def _bool(value, name: str) -> bool:
    _require(isinstance(value, bool), f"{name} must be true or false")
    return value


def _hotwords(value) -> tuple[Hotword, ...]:
    _require(isinstance(value, list), "hotwords must be a list of strings or {phrase, boost} maps")
    _require(len(value) <= MAX_HOTWORDS, f"at most {MAX_HOTWORDS} hotwords")
    out = []
    for item in value:
        phrase, boost = (item, 1.0) if isinstance(item, str) else (
            (item.get("phrase"), item.get("boost", 1.0)) if isinstance(item, dict) else (None, None))
        _require(isinstance(phrase, str) and 0 < len(phrase.strip()) <= MAX_HOTWORD_CHARS,
                 f"each hotword must be a non-empty string of at most {MAX_HOTWORD_CHARS} characters")
        _require(isinstance(boost, (int, float)) and not isinstance(boost, bool) and 0 < boost <= 10,
                 "hotword boost must be a number in (0, 10]")
        out.append(Hotword(phrase.strip(), float(boost)))
    return tuple(out)


def _watch(value) -> tuple[WatchPhrase, ...]:
    _require(isinstance(value, list), "watch must be a list of phrases, e.g. [\"hold\", \"T minus <number>\"]")
    _require(len(value) <= MAX_WATCH, f"at most {MAX_WATCH} watch phrases")
    out = []
    for phrase in value:
        _require(isinstance(phrase, str) and 0 < len(phrase.strip()) <= MAX_WATCH_CHARS,
                 f"each watch phrase must be a non-empty string of at most {MAX_WATCH_CHARS} characters")
        try:
            out.append(WatchPhrase.compile(phrase))
        except ValueError as exc:
            raise ProtocolError(ErrorCode.INVALID_FIELD, str(exc)) from None
    return tuple(out)


_START_FIELDS = {"type", "mode", "filename", "file_bytes", "sample_rate", "encoding", "language", "partials", "partial_interval_ms",
                 "endpointing", "word_timestamps", "hotwords", "watch", "itn", "itn_partials"}
_ENDPOINT_FIELDS = {"silence_ms", "max_utterance_ms", "vad_aggressiveness"}


def parse_start(msg: dict) -> StartConfig:
    unknown = set(msg) - _START_FIELDS
    _require(not unknown, f"unknown start field(s): {', '.join(sorted(unknown))}")
    d = StartConfig()
    mode = msg.get("mode", d.mode)
    _require(mode in MODES, f"mode must be one of {', '.join(MODES)}")
    if mode == "offline":
        for name in ("sample_rate", "encoding", "partials", "partial_interval_ms", "itn_partials"):
            _require(name not in msg, f"{name} does not apply to offline mode: the file says how it is encoded")
    elif "filename" in msg or "file_bytes" in msg:
        _require(False, "filename and file_bytes apply to offline mode only")
    filename = msg.get("filename")
    _require(filename is None or (isinstance(filename, str) and len(filename) <= MAX_FILENAME_CHARS),
             f"filename must be a string of at most {MAX_FILENAME_CHARS} characters")
    file_bytes = msg.get("file_bytes")
    if file_bytes is not None:
        file_bytes = _int(file_bytes, "file_bytes", 0, 1 << 50)
    rate = msg.get("sample_rate", d.sample_rate)
    _require(isinstance(rate, int) and not isinstance(rate, bool), "sample_rate must be an integer")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise ProtocolError(ErrorCode.UNSUPPORTED, f"sample_rate {rate} not supported: use {MIN_RATE}..{MAX_RATE} Hz")
    encoding = msg.get("encoding", d.encoding)
    if encoding not in ENCODINGS:
        raise ProtocolError(ErrorCode.UNSUPPORTED, f"encoding {encoding!r} not supported: use one of {', '.join(ENCODINGS)}")
    language = msg.get("language", d.language)
    if language not in LANGUAGES:
        raise ProtocolError(ErrorCode.UNSUPPORTED, f"language {language!r} not supported: use one of {', '.join(LANGUAGES)}")
    endpoint = msg.get("endpointing", {})
    _require(isinstance(endpoint, dict), "endpointing must be a map")
    unknown = set(endpoint) - _ENDPOINT_FIELDS
    _require(not unknown, f"unknown endpointing field(s): {', '.join(sorted(unknown))}")
    e = EndpointConfig()
    endpointing = EndpointConfig(
        silence_ms=_int(endpoint.get("silence_ms", e.silence_ms), "endpointing.silence_ms", 100, 10000),
        max_utterance_ms=_int(endpoint.get("max_utterance_ms", e.max_utterance_ms), "endpointing.max_utterance_ms", 1000, 28000),
        vad_aggressiveness=_int(endpoint.get("vad_aggressiveness", e.vad_aggressiveness), "endpointing.vad_aggressiveness", 0, 3),
    )
    return StartConfig(
        mode=mode,
        filename=filename,
        file_bytes=file_bytes,
        sample_rate=rate,
        encoding=encoding,
        language=language,
        partials=_bool(msg.get("partials", d.partials), "partials") and mode == "stream",
        partial_interval_ms=_int(msg.get("partial_interval_ms", d.partial_interval_ms), "partial_interval_ms", 100, 10000),
        endpointing=endpointing,
        word_timestamps=_bool(msg.get("word_timestamps", d.word_timestamps), "word_timestamps"),
        hotwords=_hotwords(msg.get("hotwords", [])),
        watch=_watch(msg.get("watch", [])),
        itn=_bool(msg.get("itn", d.itn), "itn"),
        itn_partials=_bool(msg.get("itn_partials", d.itn_partials), "itn_partials"),
    )


def parse_message(msg) -> ClientMessage:
    """A decoded map (from JSON or msgpack) -> a typed client message."""
    if not isinstance(msg, dict):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "a message must be a map with a 'type' field")
    kind = msg.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "a message needs a 'type' string")
    if kind == "start":
        return Start(parse_start(msg))
    if kind == "update":
        unknown = set(msg) - {"type", "hotwords", "watch"}
        _require(not unknown, f"unknown update field(s): {', '.join(sorted(unknown))}")
        _require("hotwords" in msg or "watch" in msg, "update needs hotwords and/or watch")
        return Update(hotwords=_hotwords(msg["hotwords"]) if "hotwords" in msg else None,
                      watch=_watch(msg["watch"]) if "watch" in msg else None)
    if kind == "audio":
        data = msg.get("data")
        _require(isinstance(data, (bytes, bytearray)), "audio.data must be binary")
        return Audio(bytes(data))
    simple = {"flush": Flush, "keepalive": KeepAlive, "stop": Stop}
    if kind in simple:
        return simple[kind]()
    known = "start, update, audio, flush, keepalive, stop"
    raise ProtocolError(ErrorCode.BAD_MESSAGE, f"unknown message type {kind!r}; known: {known}")


def load_json(frame: str):
    try:
        return json.loads(frame)
    except ValueError as exc:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"text frame is not valid JSON: {exc}") from None
    except RecursionError:   # "[[[[..." deeper than the parser goes
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "text frame nests too deeply to be a message") from None


class Codec:
    """Frames <-> messages for one subprotocol."""

    def __init__(self, subprotocol: str | None):
        self.msgpack = subprotocol == SUBPROTOCOL_MSGPACK
        self.subprotocol = SUBPROTOCOL_MSGPACK if self.msgpack else SUBPROTOCOL_JSON

    def decode(self, frame: str | bytes) -> ClientMessage:
        if self.msgpack:
            if isinstance(frame, str):
                raise ProtocolError(ErrorCode.BAD_MESSAGE, "lingting.v1.msgpack takes binary frames only")
            try:
                msg = msgpack.unpackb(frame, raw=False, strict_map_key=True)
            except Exception as exc:
                raise ProtocolError(ErrorCode.BAD_MESSAGE, f"frame is not valid msgpack: {exc}") from None
            return parse_message(msg)
        if isinstance(frame, bytes):
            return Audio(frame)
        msg = load_json(frame)
        if isinstance(msg, dict) and msg.get("type") == "audio":
            raise ProtocolError(ErrorCode.BAD_MESSAGE, "in lingting.v1.json audio goes in binary frames")
        return parse_message(msg)

    def encode_all(self, event: dict) -> list[str | bytes]:
        """The frames for one event (the FunASR codec may send none or several)."""
        return [self.encode(event)]

    def encode(self, event: dict) -> str | bytes:
        if self.msgpack:
            return msgpack.packb(event, use_bin_type=True)
        return json.dumps(event, ensure_ascii=False, separators=(",", ":"))
