"""The events a stream sends, as typed values. `to_wire()` is the only place
the wire schema of protocol v1 lives (docs/protocol.md describes it); codecs
(JSON, msgpack, FunASR's replies) and observers (history, metrics) work from
these values."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar


@dataclass(frozen=True)
class Event:
    type: ClassVar[str]

    def to_wire(self) -> dict:
        wire = {"type": self.type, **asdict(self)}
        for tag in ("channel", "speaker"):      # only a stream of several channels (or labelled ones) says
            if tag in wire and wire[tag] is None:
                del wire[tag]
        return wire


@dataclass(frozen=True)
class Ready(Event):
    type: ClassVar[str] = "ready"
    session_id: str
    model: str
    mode: str
    language: str
    limits: dict
    sample_rate: int | None = None     # live streams only
    encoding: str | None = None
    channels: tuple[str, ...] | None = None   # the channels' speaker labels, when start named channels
    room: str | None = None            # live streams: the room viewers watch it in...
    viewer_token: str | None = None    # ...and the token that lets one read that room only

    def to_wire(self) -> dict:
        wire = super().to_wire()
        for name in ("room", "viewer_token"):
            if wire[name] is None:
                del wire[name]
        if self.mode != "stream":
            del wire["sample_rate"], wire["encoding"]
        if self.channels is None:
            del wire["channels"]
        else:
            wire["channels"] = list(self.channels)
        return wire


@dataclass(frozen=True)
class Updated(Event):
    """The answer to configure (or update): what applies now."""
    type: ClassVar[str] = "updated"
    hotwords: list[str]
    watch: list                        # phrases, or maps where options were set
    settings: dict | None = None       # live streams: endpointing, utterance_end_ms, vad_events

    def to_wire(self) -> dict:
        wire = {"type": self.type, "hotwords": self.hotwords, "watch": self.watch}
        return {**wire, **(self.settings or {})}


@dataclass(frozen=True)
class SpeechStarted(Event):
    type: ClassVar[str] = "speech_started"
    utterance: int
    start_ms: int
    channel: int | None = None
    speaker: str | None = None


@dataclass(frozen=True)
class SpeechEnded(Event):
    type: ClassVar[str] = "speech_ended"
    utterance: int
    start_ms: int
    end_ms: int
    reason: str
    channel: int | None = None
    speaker: str | None = None


@dataclass(frozen=True)
class UtteranceEnd(Event):
    """Deepgram's UtteranceEnd: utterance_end_ms of silence followed the last word (and its final)."""
    type: ClassVar[str] = "utterance_end"
    last_word_end_ms: int
    channel: int | None = None
    speaker: str | None = None


@dataclass(frozen=True)
class Cleared(Event):
    """The open utterance was dropped undecoded (None: none was open)."""
    type: ClassVar[str] = "cleared"
    utterance: int | None
    channel: int | None = None
    speaker: str | None = None


@dataclass(frozen=True)
class Partial(Event):
    type: ClassVar[str] = "partial"
    utterance: int
    start_ms: int
    end_ms: int
    text: str
    stable_text: str
    language: str | None
    itn_text: str | None = None        # only when the client asked for ITN on partials
    channel: int | None = None
    speaker: str | None = None

    def to_wire(self) -> dict:
        wire = super().to_wire()
        if self.itn_text is None:
            del wire["itn_text"]
        return wire


@dataclass(frozen=True)
class Word:
    word: str
    start_ms: int                      # on the stream's clock
    end_ms: int
    probability: float


@dataclass(frozen=True)
class Final(Event):
    type: ClassVar[str] = "final"
    utterance: int
    start_ms: int
    end_ms: int
    reason: str
    text: str
    raw_text: str
    language: str | None
    words: tuple[Word, ...] | None = None
    hotwords: tuple[str, ...] = ()     # in force for this utterance
    error: str | None = None           # the decode failed: the final is empty
    channel: int | None = None
    speaker: str | None = None
    turns: tuple[dict, ...] | None = None   # diarize: the final holds a speaker change: who said which part

    def to_wire(self) -> dict:
        wire = super().to_wire()
        wire["words"] = [asdict(w) for w in self.words] if self.words else None
        if self.turns is None:
            del wire["turns"]
        else:
            wire["turns"] = [dict(t) for t in self.turns]
        if self.hotwords:
            wire["hotwords"] = list(self.hotwords)
        else:
            del wire["hotwords"]
        if self.error is None:
            del wire["error"]
        return wire


@dataclass(frozen=True)
class Alert(Event):
    type: ClassVar[str] = "alert"
    alert_id: str
    status: str                        # detected | confirmed | retracted
    phrase: str
    text: str
    number: int | None
    utterance: int
    audio_ms: int
    channel: int | None = None
    speaker: str | None = None
    confidence: float = 1.0            # below 1: a sound-alike of the phrase (watch sounds_like)


@dataclass(frozen=True)
class Countdown(Event):
    """A launch-style countdown's clock (start.countdown): t_minus_s at audio_ms,
    running down while status is counting or resumed, standing while holding."""
    type: ClassVar[str] = "countdown"
    t_minus_s: float | None            # None: a hold heard before any time was
    status: str                        # counting | holding | resumed | zero
    utterance: int
    text: str                          # what was said
    audio_ms: int
    channel: int | None = None
    speaker: str | None = None


@dataclass(frozen=True)
class Speakers(Event):
    """A file's speakers, clustered over the whole file once its last final is
    out: the labels every utterance (and turn) keeps; they replace those its
    final carried."""
    type: ClassVar[str] = "speakers"
    count: int
    segments: tuple[dict, ...]         # {utterance, start_ms, end_ms, speaker}, in time order

    def to_wire(self) -> dict:
        return {"type": self.type, "count": self.count, "segments": [dict(s) for s in self.segments]}


@dataclass(frozen=True)
class Dtmf(Event):
    """A key pressed on a phone (Twilio, AudioSocket, AudioHook). Under PCI
    redaction the digit is withheld: callers type card numbers this way."""
    type: ClassVar[str] = "dtmf"
    digit: str | None
    audio_ms: int
    channel: int | None = None
    speaker: str | None = None
    redacted: bool = False


@dataclass(frozen=True)
class Mark(Event):
    """A platform's marker in the stream (Twilio's mark), passed on by name."""
    type: ClassVar[str] = "mark"
    name: str
    audio_ms: int


@dataclass(frozen=True)
class Pong(Event):
    """The answer to a keepalive that asked for one."""
    type: ClassVar[str] = "pong"


@dataclass(frozen=True)
class UploadProgress(Event):
    type: ClassVar[str] = "progress"
    received_bytes: int
    file_bytes: int | None

    def to_wire(self) -> dict:
        return {"type": self.type, "stage": "upload", **asdict(self)}


@dataclass(frozen=True)
class TranscribeProgress(Event):
    type: ClassVar[str] = "progress"
    decoded_ms: int
    done_ms: int                       # every utterance before it has its final delivered
    duration_ms: int | None
    fraction: float | None

    def to_wire(self) -> dict:
        return {"type": self.type, "stage": "transcribe", **asdict(self)}


@dataclass(frozen=True)
class Stopped(Event):
    type: ClassVar[str] = "stopped"
    utterances: int
    audio_ms: int


@dataclass(frozen=True)
class Error(Event):
    type: ClassVar[str] = "error"
    code: str
    message: str
    fatal: bool = False


# What one stream may send, in the grammar tests check against.
ALL = (Ready, Updated, SpeechStarted, SpeechEnded, UtteranceEnd, Cleared, Partial, Final, Alert, Countdown, Speakers, Dtmf, Mark, Pong, UploadProgress,
       TranscribeProgress, Stopped, Error)
TYPES = frozenset(e.type for e in ALL)
