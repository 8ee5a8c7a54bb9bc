"""The start message's settings: `StartConfig`, each field declared once with
`start_option` (default, parser, where it applies, what history keeps, its
phone-platform spelling, whether configure changes it), and `parse_start`,
which follows from those declarations. Pure, no I/O."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

from ..text.alerts import WatchPhrase, parse_watch
from ..wire.errors import ErrorCode, ProtocolError, require
from ..text.hotwords import Hotword, parse_hotwords
from ..wire.languages import AUTO, LANGUAGES
from .outputs import CaptionTarget, WebhookTarget, parse_captions, parse_room, parse_webhooks
from ..text.redaction import parse_redact
from ..wire.audio import ENCODINGS, MODEL_RATE
from ..wire.endpointing import EndpointConfig

MIN_RATE, MAX_RATE = 8000, 48000
MODES = ("stream", "offline")
MAX_FILENAME_CHARS = 255
MAX_CHANNELS = 8
MAX_LABEL_CHARS = 40
MAX_SPEAKERS = 10


def bounded_int(value, name: str, low: int, high: int) -> int:
    require(isinstance(value, int) and not isinstance(value, bool), f"{name} must be an integer")
    require(low <= value <= high, f"{name} must be between {low} and {high}, got {value}")
    return value


def true_or_false(value, name: str) -> bool:
    require(isinstance(value, bool), f"{name} must be true or false")
    return value


# ---- endpointing: parsed once into a change, applied over a start's default or a stream's own
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


def _silence(value, name: str) -> int:
    return bounded_int(value, name, 10, 10000) if value else 0      # 0 or false: no silence ends an utterance


def _between(low: int, high: int) -> Callable[[Any, str], int]:
    return lambda value, name: bounded_int(value, name, low, high)


# The fields of an endpointing map, in the order they are checked.
_ENDPOINT_FIELDS = {"silence_ms": _silence, "max_utterance_ms": _between(1000, 28000),
                    "vad_aggressiveness": _between(0, 3), "speculative": true_or_false,
                    "sentence_end_ms": _between(10, 10000), "mid_clause_ms": _between(10, 10000),
                    "tail_ms": _between(90, 1000)}


@dataclass(frozen=True)
class EndpointingChange:
    """A checked `endpointing`: a preset that replaces the endpointing it is applied
    over (None: keep that one), then the fields it names."""
    preset: EndpointConfig | None = None
    fields: tuple[tuple[str, Any], ...] = ()

    def over(self, base: EndpointConfig) -> EndpointConfig:
        return dataclasses.replace(base if self.preset is None else self.preset, **dict(self.fields))


def endpointing_summary(e: EndpointConfig) -> dict:
    return {"silence_ms": e.silence_ms, "max_utterance_ms": e.max_utterance_ms,
            "vad_aggressiveness": e.vad_aggressiveness, "speculative": e.speculative,
            "sentence_end_ms": e.sentence_end_ms, "mid_clause_ms": e.mid_clause_ms, "tail_ms": e.tail_ms}


def parse_endpointing_change(value) -> EndpointingChange:
    """`endpointing` as Deepgram spells it (ms of silence, or false: no silence
    ends an utterance), a preset's name, or a map of fields (over a preset)."""
    if value is False:
        return EndpointingChange(fields=(("silence_ms", 0),))
    if isinstance(value, int) and not isinstance(value, bool):
        return EndpointingChange(fields=(("silence_ms", bounded_int(value, "endpointing", 10, 10000)),))
    if isinstance(value, str):
        require(value in ENDPOINTING_PRESETS, f"endpointing preset {value!r} unknown; use one of "
                f"{', '.join(ENDPOINTING_PRESETS)}")
        return EndpointingChange(preset=ENDPOINTING_PRESETS[value])
    require(isinstance(value, dict), "endpointing must be milliseconds of silence, false, a preset name "
            f"({', '.join(ENDPOINTING_PRESETS)}) or a map")
    unknown = set(value) - {"preset", *_ENDPOINT_FIELDS}
    require(not unknown, f"unknown endpointing field(s): {', '.join(sorted(unknown))}")
    preset = None
    if "preset" in value:
        require(isinstance(value["preset"], str), "endpointing.preset must be a preset name")
        preset = parse_endpointing_change(value["preset"]).preset
    named = {name: check(value[name], f"endpointing.{name}") for name, check in _ENDPOINT_FIELDS.items()
             if name in value}
    return EndpointingChange(preset, tuple(named.items()))


def parse_utterance_end(value) -> int:
    """utterance_end_ms: 1000..10000 ms, or 0/false/null for none."""
    if value in (None, False, 0):
        return 0
    return bounded_int(value, "utterance_end_ms", 1000, 10000)


# ---- start options: each declared once, on its StartConfig field ----------------------------------
Parse = Callable[[Any, str, dict], Any]          # (wire value, field name, the fields parsed before it)


@dataclass(frozen=True)
class StartOption:
    """What a start field means besides its default (see `start_option`)."""
    parse: Parse
    live_only: bool = False
    offline_only: bool = False
    kept: Callable[[StartConfig, Any], bool] | None = None
    kept_as: Callable[[StartConfig, Any], Any] | None = None
    phone: str | None = None
    configure: str | None = None

    def applies(self, mode: str) -> bool:
        return not (self.live_only and mode != "stream" or self.offline_only and mode != "offline")


def start_option(default: Any = None, parse: Parse | None = None, *, factory: Callable[[], Any] | None = None,
                 live_only: bool = False, offline_only: bool = False,
                 kept: Callable[[StartConfig, Any], bool] | None = None,
                 kept_as: Callable[[StartConfig, Any], Any] | None = None,
                 phone: str | None = None, configure: str | None = None) -> Any:
    """A start field: its default (or `factory`), `parse` for the value a client
    sends (absent: the default), where it applies (`live_only`: a file's start
    refuses it; `offline_only`: a live one does), what history keeps of it
    (`kept(config, value)` says when, `kept_as` as what plain value), its kind
    among a phone platform's string parameters (`phone`: "locale", "list" or
    "bool"), and whether `configure` changes it mid-stream ("any" stream, or
    "live" ones only)."""
    option = StartOption(parse, live_only, offline_only, kept, kept_as, phone, configure)
    if factory is not None:
        return field(default_factory=factory, metadata={"start": option})
    return field(default=default, metadata={"start": option})


def _always(config: StartConfig, value) -> bool:
    return True


def _when_set(config: StartConfig, value) -> bool:
    return bool(value)


def _when_labelled(config: StartConfig, value) -> bool:
    return config.labelled


def _wire_list(config: StartConfig, value) -> list:
    return [item.to_wire() for item in value]


def _flag(value, name: str, earlier: dict) -> bool:
    return true_or_false(value, name)


def _int_between(low: int, high: int) -> Parse:
    return lambda value, name, earlier: bounded_int(value, name, low, high)


def _checked(parse: Callable[[Any], Any]) -> Parse:
    """A parser that names its field in its own messages."""
    return lambda value, name, earlier: parse(value)


def _mode(value, name: str, earlier: dict) -> str:
    require(value in MODES, f"mode must be one of {', '.join(MODES)}")
    return value


def _filename(value, name: str, earlier: dict) -> str | None:
    require(value is None or (isinstance(value, str) and len(value) <= MAX_FILENAME_CHARS),
            f"filename must be a string of at most {MAX_FILENAME_CHARS} characters")
    return value


def _file_bytes(value, name: str, earlier: dict) -> int | None:
    return None if value is None else bounded_int(value, name, 0, 1 << 50)


def _sample_rate(value, name: str, earlier: dict) -> int:
    require(isinstance(value, int) and not isinstance(value, bool), "sample_rate must be an integer")
    if not MIN_RATE <= value <= MAX_RATE:
        raise ProtocolError(ErrorCode.UNSUPPORTED, f"sample_rate {value} not supported: use {MIN_RATE}..{MAX_RATE} Hz")
    return value


def _encoding(value, name: str, earlier: dict) -> str:
    if value not in ENCODINGS:
        raise ProtocolError(ErrorCode.UNSUPPORTED, f"encoding {value!r} not supported: use one of {', '.join(ENCODINGS)}")
    return value


def _language(value, name: str, earlier: dict) -> str:
    if value != AUTO and value not in LANGUAGES:
        raise ProtocolError(ErrorCode.UNSUPPORTED, f"language {value!r} not supported: use one of "
                            f"{', '.join((AUTO, *LANGUAGES))}")
    return value


def _endpointing(value, name: str, earlier: dict) -> EndpointConfig:
    return parse_endpointing_change(value).over(EndpointConfig())


def _channel_labels(value, name: str, earlier: dict) -> tuple[str, ...]:
    require(isinstance(value, list) and all(isinstance(x, str) and 0 < len(x) <= MAX_LABEL_CHARS for x in value),
            f"channel_labels must be a list of names of 1..{MAX_LABEL_CHARS} characters")
    require(not value or len(value) == earlier["channels"], f"channel_labels names {len(value)} channel(s); "
            f"the stream has {earlier['channels']}")
    return tuple(value)


def _utterance_end(value, name: str, earlier: dict) -> int | None:
    return parse_utterance_end(value) or None


def _diarize(value, name: str, earlier: dict) -> bool:
    diarize = true_or_false(value, name)
    require(not (diarize and (earlier["channels"] > 1 or earlier["channel_labels"])), "diarize labels the "
            "speakers of one channel; a stream of several channels (or channel_labels) already names its speakers")
    return diarize


def _max_speakers(value, name: str, earlier: dict) -> int | None:
    if value is None:
        return None
    require(earlier["diarize"], "max_speakers goes with diarize")
    return bounded_int(value, name, 1, MAX_SPEAKERS)


@dataclass(frozen=True)
class StartConfig:
    """A stream's settings, from its start message. Each field declares the rest
    of what it means with `start_option`; the start's parsing (field by field, in
    this order), the offline refusals, history's summary, the phone platforms'
    options and configure follow from it. docs/protocol.md's start table lists
    the same fields (a test checks)."""
    # offline: the frames are a media file, decoded after stop
    mode: str = start_option("stream", _mode, kept=_always)
    filename: str | None = start_option(None, _filename, offline_only=True, kept=_always)   # shown in history
    file_bytes: int | None = start_option(None, _file_bytes, offline_only=True, kept=_always)   # if the client knows
    sample_rate: int = start_option(MODEL_RATE, _sample_rate, live_only=True, kept=_always)
    encoding: str = start_option("pcm_s16le", _encoding, live_only=True, kept=_always)
    language: str = start_option(AUTO, _language, kept=_always, phone="locale")
    endpointing: EndpointConfig = start_option(factory=EndpointConfig, parse=_endpointing, kept=_always,
                                               kept_as=lambda c, e: endpointing_summary(e), configure="live")
    # interleaved in each audio frame; each its own utterances
    channels: int = start_option(1, _int_between(1, MAX_CHANNELS), live_only=True, kept=_when_labelled)
    # who speaks on each channel ("agent", "customer")
    channel_labels: tuple[str, ...] = start_option(
        (), _channel_labels, live_only=True, kept=_when_labelled, phone="list",
        kept_as=lambda c, labels: [c.speaker(n) for n in range(c.channels)])
    # finals get speaker labels (S1, S2...) from the voice
    diarize: bool = start_option(False, _diarize, kept=_when_set)
    # diarize: at most this many (files: exactly this many, when given)
    max_speakers: int | None = start_option(None, _max_speakers, kept=lambda c, n: bool(c.diarize and n))
    partials: bool = start_option(True, _flag, live_only=True, kept=_always, phone="bool")
    partial_interval_ms: int = start_option(500, _int_between(100, 10000), live_only=True)
    word_timestamps: bool = start_option(True, _flag, kept=_always, phone="bool")
    hotwords: tuple[Hotword, ...] = start_option(
        (), _checked(parse_hotwords), kept=_always, phone="list", configure="any",
        kept_as=lambda c, hotwords: [{"phrase": h.phrase, "boost": h.boost} for h in hotwords])
    watch: tuple[WatchPhrase, ...] = start_option((), _checked(parse_watch), kept=_always, kept_as=_wire_list,
                                                  phone="list", configure="any")
    itn: bool = start_option(True, _flag, kept=_always, phone="bool")
    itn_partials: bool = start_option(False, _flag, live_only=True)
    # what is masked before anything is sent or stored
    redact: frozenset[str] = start_option(frozenset(), _checked(parse_redact), kept=_when_set, phone="list",
                                          kept_as=lambda c, kinds: sorted(kinds))
    # speech_started / speech_ended events
    vad_events: bool = start_option(True, _flag, live_only=True, configure="live")
    # utterance_end after this much silence past the last word
    utterance_end_ms: int | None = start_option(None, _utterance_end, live_only=True, configure="live")
    # countdown events: a launch-style clock tracked from the finals
    countdown: bool = start_option(False, _flag, kept=_when_set)
    # the name viewers find this stream by (its session id works too)
    room: str | None = start_option(None, _checked(parse_room), live_only=True, kept=_when_set)
    # finals, alerts, the session's end: POSTed, signed
    webhooks: tuple[WebhookTarget, ...] = start_option((), _checked(parse_webhooks), kept=_when_set,
                                                       kept_as=_wire_list)
    # YouTube Live, Zoom, OBS caption outputs of the finals
    captions: tuple[CaptionTarget, ...] = start_option((), _checked(parse_captions), live_only=True,
                                                       kept=_when_set, kept_as=_wire_list)

    @property
    def labelled(self) -> bool:
        """Events name their channel and speaker."""
        return self.channels > 1 or bool(self.channel_labels)

    def speaker(self, channel: int) -> str:
        return self.channel_labels[channel] if self.channel_labels else f"ch{channel}"

    def summary(self) -> dict:
        """The settings as plain values, for history: what each field's `kept` keeps, where it applies."""
        out = {}
        for name, option in START_OPTIONS.items():
            value = getattr(self, name)
            if option.kept and option.applies(self.mode) and option.kept(self, value):
                out[name] = option.kept_as(self, value) if option.kept_as else value
        return out


START_OPTIONS: dict[str, StartOption] = {f.name: f.metadata["start"] for f in dataclasses.fields(StartConfig)}
_START_FIELDS = {"type", *START_OPTIONS}
CONFIGURE_FIELDS = {"type", *(name for name, option in START_OPTIONS.items() if option.configure)}
LIVE_ONLY = tuple(name for name, option in START_OPTIONS.items() if option.configure == "live")   # configure on a file
_REFUSED_OFFLINE = tuple(name for name, option in START_OPTIONS.items() if option.live_only)
_OFFLINE_ONLY = tuple(name for name, option in START_OPTIONS.items() if option.offline_only)
_DEFAULT = StartConfig()


def parse_start(msg: dict) -> StartConfig:
    unknown = set(msg) - _START_FIELDS
    require(not unknown, f"unknown start field(s): {', '.join(sorted(unknown))}")
    mode = START_OPTIONS["mode"].parse(msg.get("mode", "stream"), "mode", {})
    if mode == "offline":
        for name in _REFUSED_OFFLINE:
            require(name not in msg, f"{name} does not apply to offline mode: the file says how it is encoded")
    elif any(name in msg for name in _OFFLINE_ONLY):
        require(False, f"{' and '.join(_OFFLINE_ONLY)} apply to offline mode only")
    values: dict = {"mode": mode}
    for name, option in START_OPTIONS.items():
        if name not in values:
            values[name] = option.parse(msg[name], name, values) if name in msg else getattr(_DEFAULT, name)
    values["partials"] = values["partials"] and mode == "stream"      # a file has no partials
    return StartConfig(**values)
