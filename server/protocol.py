"""Wire protocol v1: message parsing and validation, event encoding.

Pure functions and dataclasses, no I/O. Two subprotocols carry the same
messages: lingting.v1.json (control as JSON text frames, audio as binary
frames) and lingting.v1.msgpack (every message a msgpack map)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import msgpack

from .alerts import WatchPhrase, parse_watch
from .errors import ErrorCode, ProtocolError, require
from .hotwords import Hotword, parse_hotwords
from .languages import AUTO, LANGUAGES
from .redaction import parse_redact
from .streaming.audio import ENCODINGS, MODEL_RATE
from .streaming.events import Event
from .streaming.segmenter import EndpointConfig

SUBPROTOCOL_JSON = "lingting.v1.json"
SUBPROTOCOL_MSGPACK = "lingting.v1.msgpack"
SUBPROTOCOLS = (SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK)
MIN_RATE, MAX_RATE = 8000, 48000


MODES = ("stream", "offline")
MAX_FILENAME_CHARS = 255
MAX_CHANNELS = 8
MAX_LABEL_CHARS = 40


@dataclass(frozen=True)
class StartConfig:
    mode: str = "stream"               # offline: the frames are a media file, decoded after stop
    filename: str | None = None        # offline: shown in history
    file_bytes: int | None = None      # offline: the file's size, if the client knows it
    sample_rate: int = MODEL_RATE
    encoding: str = "pcm_s16le"
    language: str = AUTO
    partials: bool = True
    partial_interval_ms: int = 500
    endpointing: EndpointConfig = field(default_factory=EndpointConfig)
    word_timestamps: bool = True
    hotwords: tuple[Hotword, ...] = ()
    watch: tuple[WatchPhrase, ...] = ()
    itn: bool = True
    itn_partials: bool = False
    channels: int = 1                  # interleaved in each audio frame; each its own utterances
    channel_labels: tuple[str, ...] = ()   # who speaks on each channel ("agent", "customer")
    redact: frozenset[str] = frozenset()   # what is masked before anything is sent or stored

    @property
    def labelled(self) -> bool:
        """Events name their channel and speaker."""
        return self.channels > 1 or bool(self.channel_labels)

    def speaker(self, channel: int) -> str:
        return self.channel_labels[channel] if self.channel_labels else f"ch{channel}"

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
        if self.labelled:
            out["channels"] = self.channels
            out["channel_labels"] = [self.speaker(c) for c in range(self.channels)]
        if self.redact:
            out["redact"] = sorted(self.redact)
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
    channel: int | None = None         # None: all channels, interleaved; else this channel's samples only


@dataclass(frozen=True)
class Dtmf:
    """A phone key press reported by a telephony platform."""
    digit: str
    channel: int | None = None


@dataclass(frozen=True)
class Mark:
    """A platform's named marker (Twilio)."""
    name: str


@dataclass(frozen=True)
class Flush:
    """End the open utterance now. require_speech: with none open, that is an
    error (OpenAI's commit of an empty buffer) rather than nothing to do."""
    require_speech: bool = False


@dataclass(frozen=True)
class Clear:
    """Drop the open utterance's audio undecoded (push-to-talk cancelled)."""


@dataclass(frozen=True)
class KeepAlive:
    reply: bool = False                # the platform waits for an answer (AudioHook's ping)


@dataclass(frozen=True)
class Stop:
    reason: str = "stop"               # "hangup": the call ended on the phone platform's side


ClientMessage = Start | Update | Audio | Dtmf | Mark | Flush | Clear | KeepAlive | Stop


def bounded_int(value, name: str, low: int, high: int) -> int:
    require(isinstance(value, int) and not isinstance(value, bool), f"{name} must be an integer")
    require(low <= value <= high, f"{name} must be between {low} and {high}, got {value}")
    return value


def _bool(value, name: str) -> bool:
    require(isinstance(value, bool), f"{name} must be true or false")
    return value


_START_FIELDS = {"type", "mode", "filename", "file_bytes", "sample_rate", "encoding", "language", "partials", "partial_interval_ms",
                 "endpointing", "word_timestamps", "hotwords", "watch", "itn", "itn_partials", "channels",
                 "channel_labels", "redact"}
_ENDPOINT_FIELDS = {"silence_ms", "max_utterance_ms", "vad_aggressiveness"}


def parse_start(msg: dict) -> StartConfig:
    unknown = set(msg) - _START_FIELDS
    require(not unknown, f"unknown start field(s): {', '.join(sorted(unknown))}")
    d = StartConfig()
    mode = msg.get("mode", d.mode)
    require(mode in MODES, f"mode must be one of {', '.join(MODES)}")
    if mode == "offline":
        for name in ("sample_rate", "encoding", "partials", "partial_interval_ms", "itn_partials", "channels",
                     "channel_labels"):
            require(name not in msg, f"{name} does not apply to offline mode: the file says how it is encoded")
    elif "filename" in msg or "file_bytes" in msg:
        require(False, "filename and file_bytes apply to offline mode only")
    filename = msg.get("filename")
    require(filename is None or (isinstance(filename, str) and len(filename) <= MAX_FILENAME_CHARS),
             f"filename must be a string of at most {MAX_FILENAME_CHARS} characters")
    file_bytes = msg.get("file_bytes")
    if file_bytes is not None:
        file_bytes = bounded_int(file_bytes, "file_bytes", 0, 1 << 50)
    rate = msg.get("sample_rate", d.sample_rate)
    require(isinstance(rate, int) and not isinstance(rate, bool), "sample_rate must be an integer")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise ProtocolError(ErrorCode.UNSUPPORTED, f"sample_rate {rate} not supported: use {MIN_RATE}..{MAX_RATE} Hz")
    encoding = msg.get("encoding", d.encoding)
    if encoding not in ENCODINGS:
        raise ProtocolError(ErrorCode.UNSUPPORTED, f"encoding {encoding!r} not supported: use one of {', '.join(ENCODINGS)}")
    language = msg.get("language", d.language)
    if language != AUTO and language not in LANGUAGES:
        raise ProtocolError(ErrorCode.UNSUPPORTED, f"language {language!r} not supported: use one of "
                            f"{', '.join((AUTO, *LANGUAGES))}")
    endpoint = msg.get("endpointing", {})
    require(isinstance(endpoint, dict), "endpointing must be a map")
    unknown = set(endpoint) - _ENDPOINT_FIELDS
    require(not unknown, f"unknown endpointing field(s): {', '.join(sorted(unknown))}")
    e = EndpointConfig()
    endpointing = EndpointConfig(
        silence_ms=bounded_int(endpoint.get("silence_ms", e.silence_ms), "endpointing.silence_ms", 100, 10000),
        max_utterance_ms=bounded_int(endpoint.get("max_utterance_ms", e.max_utterance_ms), "endpointing.max_utterance_ms", 1000, 28000),
        vad_aggressiveness=bounded_int(endpoint.get("vad_aggressiveness", e.vad_aggressiveness), "endpointing.vad_aggressiveness", 0, 3),
    )
    channels = bounded_int(msg.get("channels", 1), "channels", 1, MAX_CHANNELS)
    labels = msg.get("channel_labels", [])
    require(isinstance(labels, list) and all(isinstance(x, str) and 0 < len(x) <= MAX_LABEL_CHARS for x in labels),
            f"channel_labels must be a list of names of 1..{MAX_LABEL_CHARS} characters")
    require(not labels or len(labels) == channels, f"channel_labels names {len(labels)} channel(s); "
            f"the stream has {channels}")
    return StartConfig(
        mode=mode,
        filename=filename,
        file_bytes=file_bytes,
        sample_rate=rate,
        encoding=encoding,
        language=language,
        partials=_bool(msg.get("partials", d.partials), "partials") and mode == "stream",
        partial_interval_ms=bounded_int(msg.get("partial_interval_ms", d.partial_interval_ms), "partial_interval_ms", 100, 10000),
        endpointing=endpointing,
        word_timestamps=_bool(msg.get("word_timestamps", d.word_timestamps), "word_timestamps"),
        hotwords=parse_hotwords(msg.get("hotwords", [])),
        watch=parse_watch(msg.get("watch", [])),
        itn=_bool(msg.get("itn", d.itn), "itn"),
        itn_partials=_bool(msg.get("itn_partials", d.itn_partials), "itn_partials"),
        channels=channels,
        channel_labels=tuple(labels),
        redact=parse_redact(msg.get("redact", [])),
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
        require(not unknown, f"unknown update field(s): {', '.join(sorted(unknown))}")
        require("hotwords" in msg or "watch" in msg, "update needs hotwords and/or watch")
        return Update(hotwords=parse_hotwords(msg["hotwords"]) if "hotwords" in msg else None,
                      watch=parse_watch(msg["watch"]) if "watch" in msg else None)
    if kind == "audio":
        data = msg.get("data")
        require(isinstance(data, (bytes, bytearray)), "audio.data must be binary")
        return Audio(bytes(data))
    simple = {"flush": Flush, "clear": Clear, "keepalive": KeepAlive, "stop": Stop}
    if kind in simple:
        return simple[kind]()
    known = "start, update, audio, flush, clear, keepalive, stop"
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

    def greeting(self) -> list[str | bytes]:
        return []          # the server speaks after start

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

    def encode_all(self, event: Event) -> list[str | bytes]:
        """The frames for one event (the FunASR codec may send none or several)."""
        return [self.encode(event.to_wire())]

    def encode(self, wire: dict) -> str | bytes:
        if self.msgpack:
            return msgpack.packb(wire, use_bin_type=True)
        return json.dumps(wire, ensure_ascii=False, separators=(",", ":"))
