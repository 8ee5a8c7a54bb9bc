"""Wire protocol v1: message parsing and validation.

Pure functions and dataclasses, no I/O. Two subprotocols carry the same
messages: lingting.v1.json (control as JSON text frames, audio as binary
frames) and lingting.v1.msgpack (every message a msgpack map); their codec
is v1_codec.py."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from .alerts import WatchPhrase, parse_watch
from .errors import ErrorCode, ProtocolError, require
from .hotwords import Hotword, parse_hotwords
from .languages import AUTO, LANGUAGES
from .outputs import CaptionTarget, WebhookTarget, parse_captions, parse_room, parse_webhooks
from .redaction import parse_redact
from .streaming.audio import ENCODINGS, MODEL_RATE
from .streaming.segmenter import EndpointConfig

SUBPROTOCOL_JSON = "lingting.v1.json"
SUBPROTOCOL_MSGPACK = "lingting.v1.msgpack"
SUBPROTOCOLS = (SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK)
MIN_RATE, MAX_RATE = 8000, 48000


MODES = ("stream", "offline")
MAX_FILENAME_CHARS = 255
MAX_CHANNELS = 8
MAX_LABEL_CHARS = 40
MAX_SPEAKERS = 10


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
    vad_events: bool = True            # speech_started / speech_ended events
    utterance_end_ms: int | None = None    # utterance_end after this much silence past the last word
    countdown: bool = False            # countdown events: a launch-style clock tracked from the finals
    room: str | None = None            # the name viewers find this stream by (its session id works too)
    webhooks: tuple[WebhookTarget, ...] = ()   # finals, alerts, the session's end: POSTed, signed
    captions: tuple[CaptionTarget, ...] = ()   # YouTube Live, Zoom, OBS caption outputs of the finals
    diarize: bool = False              # finals get speaker labels (S1, S2...) from the voice
    max_speakers: int | None = None    # diarize: at most this many (files: exactly this many, when given)

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
        out["endpointing"] = endpointing_summary(self.endpointing)
        out["hotwords"] = [{"phrase": h.phrase, "boost": h.boost} for h in self.hotwords]
        out["watch"] = [w.to_wire() for w in self.watch]
        if self.countdown:
            out["countdown"] = True
        if self.labelled:
            out["channels"] = self.channels
            out["channel_labels"] = [self.speaker(c) for c in range(self.channels)]
        if self.redact:
            out["redact"] = sorted(self.redact)
        if self.diarize:
            out["diarize"] = True
            if self.max_speakers:
                out["max_speakers"] = self.max_speakers
        if self.room:
            out["room"] = self.room
        if self.webhooks:
            out["webhooks"] = [w.to_wire() for w in self.webhooks]
        if self.captions:
            out["captions"] = [c.to_wire() for c in self.captions]
        return out


@dataclass(frozen=True)
class Start:
    config: StartConfig


@dataclass(frozen=True)
class Update:
    """Mid-stream changes (`configure`; `update` takes the first two): None keeps what is."""
    hotwords: tuple[Hotword, ...] | None = None
    watch: tuple[WatchPhrase, ...] | None = None
    endpointing: object = None             # as sent: applied over the stream's own (parse_endpointing)
    utterance_end_ms: int | None = None    # 0: off
    vad_events: bool | None = None


@dataclass(frozen=True)
class Audio:
    data: bytes
    channel: int | None = None         # None: all channels, interleaved; else this channel's samples only


DTMF_DIGITS = frozenset("0123456789*#ABCD")
MAX_MARK_CHARS = 128   # Twilio echoes the name the app gave its mark; apps use ids and short labels


@dataclass(frozen=True)
class Dtmf:
    """A phone key press reported by a telephony platform. Checked here, so every
    codec's keys are: one of the sixteen DTMF keys, nothing else reaches history."""
    digit: str
    channel: int | None = None

    def __post_init__(self):
        require(isinstance(self.digit, str) and self.digit in DTMF_DIGITS,
                f"a DTMF digit must be one key (0-9, *, #, A-D), got {str(self.digit)[:8]!r}")


@dataclass(frozen=True)
class Mark:
    """A platform's named marker (Twilio), checked here for every codec: stored and
    passed on, so short text without control characters (PostgreSQL refuses NUL)."""
    name: str

    def __post_init__(self):
        text = isinstance(self.name, str)
        require(text and 0 < len(self.name) <= MAX_MARK_CHARS and self.name.isprintable(),
                f"a mark name must be 1 to {MAX_MARK_CHARS} printable characters (no control characters), got "
                + (f"{len(self.name)} characters" if text else type(self.name).__name__))


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
                 "endpointing", "word_timestamps", "hotwords", "watch", "countdown", "itn", "itn_partials", "channels",
                 "channel_labels", "redact", "vad_events", "utterance_end_ms", "room", "webhooks", "captions",
                 "diarize", "max_speakers"}
_CONFIGURE_FIELDS = {"type", "hotwords", "watch", "endpointing", "utterance_end_ms", "vad_events"}
LIVE_ONLY = ("endpointing", "vad_events", "utterance_end_ms")

# Endpointing per use: how long a pause ends an utterance, after the speculative
# final's text ends a sentence, stops mid-clause, or gives no sign (silence_ms).
ENDPOINTING_PRESETS = {
    # live captions: lines committed soon after each sentence
    "captions": EndpointConfig(),
    # agent-assist: whole clauses, so numbers and amounts are not split across finals
    "agent_assist": EndpointConfig(silence_ms=800, sentence_end_ms=500, mid_clause_ms=1200),
    # callouts ("hold", "T minus 10"): the shortest pauses end them
    "callouts": EndpointConfig(silence_ms=400, sentence_end_ms=200, mid_clause_ms=500, tail_ms=200,
                               max_utterance_ms=10000),
}
_ENDPOINT_FIELDS = {"preset", "silence_ms", "max_utterance_ms", "vad_aggressiveness", "speculative", "sentence_end_ms",
                    "mid_clause_ms", "tail_ms"}


def endpointing_summary(e: EndpointConfig) -> dict:
    return {"silence_ms": e.silence_ms, "max_utterance_ms": e.max_utterance_ms,
            "vad_aggressiveness": e.vad_aggressiveness, "speculative": e.speculative,
            "sentence_end_ms": e.sentence_end_ms, "mid_clause_ms": e.mid_clause_ms, "tail_ms": e.tail_ms}


def parse_endpointing(value, base: EndpointConfig) -> EndpointConfig:
    """`endpointing` as Deepgram spells it (ms of silence, or false: no silence
    ends an utterance), a preset's name, or a map of fields (over a preset)."""
    if value is False:
        return dataclasses.replace(base, silence_ms=0)
    if isinstance(value, int) and not isinstance(value, bool):
        return dataclasses.replace(base, silence_ms=bounded_int(value, "endpointing", 10, 10000))
    if isinstance(value, str):
        require(value in ENDPOINTING_PRESETS, f"endpointing preset {value!r} unknown; use one of "
                f"{', '.join(ENDPOINTING_PRESETS)}")
        return ENDPOINTING_PRESETS[value]
    require(isinstance(value, dict), "endpointing must be milliseconds of silence, false, a preset name "
            f"({', '.join(ENDPOINTING_PRESETS)}) or a map")
    unknown = set(value) - _ENDPOINT_FIELDS
    require(not unknown, f"unknown endpointing field(s): {', '.join(sorted(unknown))}")
    if "preset" in value:
        require(isinstance(value["preset"], str), "endpointing.preset must be a preset name")
        base = parse_endpointing(value["preset"], base)
    silence = value.get("silence_ms", base.silence_ms)
    if silence is not False:
        silence = bounded_int(silence, "endpointing.silence_ms", 10, 10000) if silence else 0
    return dataclasses.replace(
        base,
        silence_ms=silence or 0,
        max_utterance_ms=bounded_int(value.get("max_utterance_ms", base.max_utterance_ms),
                                     "endpointing.max_utterance_ms", 1000, 28000),
        vad_aggressiveness=bounded_int(value.get("vad_aggressiveness", base.vad_aggressiveness),
                                       "endpointing.vad_aggressiveness", 0, 3),
        speculative=_bool(value.get("speculative", base.speculative), "endpointing.speculative"),
        sentence_end_ms=bounded_int(value.get("sentence_end_ms", base.sentence_end_ms),
                                    "endpointing.sentence_end_ms", 10, 10000),
        mid_clause_ms=bounded_int(value.get("mid_clause_ms", base.mid_clause_ms), "endpointing.mid_clause_ms",
                                  10, 10000),
        tail_ms=bounded_int(value.get("tail_ms", base.tail_ms), "endpointing.tail_ms", 90, 1000),
    )


def parse_utterance_end(value) -> int:
    """utterance_end_ms: 1000..10000 ms, or 0/false/null for none."""
    if value in (None, False, 0):
        return 0
    return bounded_int(value, "utterance_end_ms", 1000, 10000)


def parse_start(msg: dict) -> StartConfig:
    unknown = set(msg) - _START_FIELDS
    require(not unknown, f"unknown start field(s): {', '.join(sorted(unknown))}")
    d = StartConfig()
    mode = msg.get("mode", d.mode)
    require(mode in MODES, f"mode must be one of {', '.join(MODES)}")
    if mode == "offline":
        for name in ("sample_rate", "encoding", "partials", "partial_interval_ms", "itn_partials", "channels",
                     "channel_labels", "vad_events", "utterance_end_ms", "room", "captions"):
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
    endpointing = parse_endpointing(msg.get("endpointing", {}), EndpointConfig())
    channels = bounded_int(msg.get("channels", 1), "channels", 1, MAX_CHANNELS)
    labels = msg.get("channel_labels", [])
    require(isinstance(labels, list) and all(isinstance(x, str) and 0 < len(x) <= MAX_LABEL_CHARS for x in labels),
            f"channel_labels must be a list of names of 1..{MAX_LABEL_CHARS} characters")
    require(not labels or len(labels) == channels, f"channel_labels names {len(labels)} channel(s); "
            f"the stream has {channels}")
    diarize = _bool(msg.get("diarize", False), "diarize")
    require(not (diarize and (channels > 1 or labels)), "diarize labels the speakers of one channel; a stream of "
            "several channels (or channel_labels) already names its speakers")
    max_speakers = msg.get("max_speakers")
    if max_speakers is not None:
        require(diarize, "max_speakers goes with diarize")
        max_speakers = bounded_int(max_speakers, "max_speakers", 1, MAX_SPEAKERS)
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
        vad_events=_bool(msg.get("vad_events", d.vad_events), "vad_events"),
        utterance_end_ms=parse_utterance_end(msg.get("utterance_end_ms")) or None,
        countdown=_bool(msg.get("countdown", d.countdown), "countdown"),
        diarize=diarize,
        max_speakers=max_speakers,
        room=parse_room(msg.get("room")),
        webhooks=parse_webhooks(msg.get("webhooks", [])),
        captions=parse_captions(msg.get("captions", [])),
    )


def parse_configure(msg: dict) -> Update:
    """configure: any of hotwords, watch, endpointing, utterance_end_ms, vad_events, mid-stream.
    Endpointing given as a map changes only the fields it names (over the start's)."""
    unknown = set(msg) - _CONFIGURE_FIELDS
    require(not unknown, f"unknown configure field(s): {', '.join(sorted(unknown))}")
    require(len(msg) > 1, f"configure needs one of {', '.join(sorted(_CONFIGURE_FIELDS - {'type'}))}")
    if "endpointing" in msg:
        parse_endpointing(msg["endpointing"], EndpointConfig())     # its mistakes are found here
    return Update(hotwords=parse_hotwords(msg["hotwords"]) if "hotwords" in msg else None,
                  watch=parse_watch(msg["watch"]) if "watch" in msg else None,
                  endpointing=msg.get("endpointing"),
                  utterance_end_ms=parse_utterance_end(msg["utterance_end_ms"]) if "utterance_end_ms" in msg else None,
                  vad_events=_bool(msg["vad_events"], "vad_events") if "vad_events" in msg else None)


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
        require(not unknown, f"unknown update field(s): {', '.join(sorted(unknown))}; configure takes more")
        require("hotwords" in msg or "watch" in msg, "update needs hotwords and/or watch")
        return parse_configure(msg)
    if kind == "configure":
        return parse_configure(msg)
    if kind == "audio":
        data = msg.get("data")
        require(isinstance(data, (bytes, bytearray)), "audio.data must be binary")
        return Audio(bytes(data))
    simple = {"flush": Flush, "clear": Clear, "keepalive": KeepAlive, "stop": Stop}
    if kind in simple:
        return simple[kind]()
    known = "start, configure, update, audio, flush, clear, keepalive, stop"
    raise ProtocolError(ErrorCode.BAD_MESSAGE, f"unknown message type {kind!r}; known: {known}")


def load_json(frame: str):
    try:
        return json.loads(frame)
    except ValueError as exc:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"text frame is not valid JSON: {exc}") from None
    except RecursionError:   # "[[[[..." deeper than the parser goes
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "text frame nests too deeply to be a message") from None

