"""Wire protocol v1: message parsing and validation.

Pure functions and dataclasses, no I/O. Two subprotocols carry the same
messages: lingting.v1.json (control as JSON text frames, audio as binary
frames) and lingting.v1.msgpack (every message a msgpack map); their codec
is v1_codec.py."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from ..text.alerts import WatchPhrase, parse_watch
from ..wire.errors import ErrorCode, ProtocolError, require
from ..text.hotwords import Hotword, parse_hotwords
# The start message's settings are declared in start_config.py; StartConfig, parse_start,
# bounded_int and MAX_FILENAME_CHARS are imported from here too, as part of the protocol.
from .start import CONFIGURE_FIELDS, LIVE_ONLY, MAX_FILENAME_CHARS, EndpointingChange, StartConfig, bounded_int, parse_endpointing_change, parse_start, parse_utterance_end, true_or_false

SUBPROTOCOL_JSON = "lingting.v1.json"
SUBPROTOCOL_MSGPACK = "lingting.v1.msgpack"
SUBPROTOCOLS = (SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK)


@dataclass(frozen=True)
class Start:
    config: StartConfig


@dataclass(frozen=True)
class Update:
    """Mid-stream changes (`configure`; `update` takes the first two), checked once and
    applied by `apply_update`: None keeps what is."""
    hotwords: tuple[Hotword, ...] | None = None
    watch: tuple[WatchPhrase, ...] | None = None
    endpointing: EndpointingChange | None = None   # applied over the stream's own
    utterance_end_ms: int | None = None    # 0: off
    vad_events: bool | None = None

    @property
    def for_live_streams(self) -> bool:
        """It changes what only a live stream has (LIVE_ONLY): a file refuses it."""
        return any(getattr(self, name) is not None for name in LIVE_ONLY)


def apply_update(config: StartConfig, update: Update) -> StartConfig:
    """A stream's settings after a configure (or update): what it names, the rest kept."""
    changes: dict = {name: getattr(update, name) for name in ("hotwords", "watch", "vad_events")
                     if getattr(update, name) is not None}
    if update.endpointing is not None:
        changes["endpointing"] = update.endpointing.over(config.endpointing)
    if update.utterance_end_ms is not None:
        changes["utterance_end_ms"] = update.utterance_end_ms or None
    return dataclasses.replace(config, **changes)


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


def parse_configure(msg: dict) -> Update:
    """configure: any of hotwords, watch, endpointing, utterance_end_ms, vad_events, mid-stream.
    Endpointing given as a map changes only the fields it names (over the stream's own)."""
    unknown = set(msg) - CONFIGURE_FIELDS
    require(not unknown, f"unknown configure field(s): {', '.join(sorted(unknown))}")
    require(len(msg) > 1, f"configure needs one of {', '.join(sorted(CONFIGURE_FIELDS - {'type'}))}")
    endpointing = parse_endpointing_change(msg["endpointing"]) if "endpointing" in msg else None
    return Update(hotwords=parse_hotwords(msg["hotwords"]) if "hotwords" in msg else None,
                  watch=parse_watch(msg["watch"]) if "watch" in msg else None,
                  endpointing=endpointing,
                  utterance_end_ms=parse_utterance_end(msg["utterance_end_ms"]) if "utterance_end_ms" in msg else None,
                  vad_events=true_or_false(msg["vad_events"], "vad_events") if "vad_events" in msg else None)


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

