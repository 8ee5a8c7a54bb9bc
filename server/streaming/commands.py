"""What a session asks its edge to do. The edge executes them in order and
nothing else: it never decides a stream's fate itself."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from ..wire.recognition import DecodeRequest
from ..text.postprocess import TextWork
from ..wire.events import Event

# WebSocket close codes (RFC 6455), by what they mean here.
NORMAL, GOING_AWAY, POLICY, TOO_BIG, INTERNAL_ERROR, TRY_LATER = 1000, 1001, 1008, 1009, 1011, 1013


class Priority(enum.IntEnum):
    """The deadline a decode serves, most urgent first (the batch collector's order)."""
    FINAL = 0          # an endpoint fired: the client waits for this now
    SPECULATIVE = 1    # trailing silence began: due when the endpoint fires
    FIRST_PARTIAL = 2  # nothing on screen for this utterance yet
    PARTIAL = 3        # refreshes text already shown


@dataclass(eq=False)
class DecodeJob:
    session_id: str
    utterance: int
    seq: int                      # per session, increasing: newer partials win
    request: DecodeRequest
    start_sample: int             # speech onset, for the events
    end_sample: int
    audio_start: int              # where the request's audio begins (word timings count from it)
    reason: str = ""
    background: bool = False      # an offline file's final: live streams go first
    text: TextWork = TextWork()   # hotwords, ITN, watch phrases for its result
    channel: int | None = None    # of a stream of several channels
    speculative: bool = False     # a final decoded before its endpoint (it may still be discarded)
    first: bool = False           # a partial of an utterance that shows no text yet

    @property
    def kind(self) -> str:
        return self.request.kind

    @property
    def priority(self) -> Priority:
        if self.kind == "final":
            return Priority.SPECULATIVE if self.speculative else Priority.FINAL
        return Priority.FIRST_PARTIAL if self.first else Priority.PARTIAL

    @property
    def lane(self) -> tuple[str, int | None]:
        """Whose partials replace each other: one stream's one channel."""
        return self.session_id, self.channel


@dataclass(frozen=True)
class Send:
    """Deliver an event: stored in history first (finals), then written to the client."""
    event: Event


@dataclass(frozen=True)
class Decode:
    """Run a job through the batch collector; its result goes to session.on_result."""
    job: DecodeJob


@dataclass(frozen=True)
class Expedite:
    """The endpoint of a speculative final fired: it is a final now (if it still waits, it goes first)."""
    job: DecodeJob


@dataclass(frozen=True)
class Cancel:
    """Speech resumed: this speculative final is not needed (its result, if one comes, is ignored)."""
    job: DecodeJob


@dataclass(frozen=True)
class Store:
    """Offline: keep these bytes of the uploaded file (on disk, under the spool budget)."""
    data: bytes


@dataclass(frozen=True)
class Transcribe:
    """Offline: the whole file is in; read it and feed its audio back (file_opened, file_audio, file_ended)."""


@dataclass(frozen=True)
class Close:
    """End the connection with this close code and reason. The last command a session gives."""
    code: int
    reason: str


Command = Send | Decode | Expedite | Cancel | Store | Transcribe | Close


@dataclass
class Output:
    commands: list[Command] = field(default_factory=list)

    def send(self, *events: Event) -> "Output":
        self.commands += [Send(e) for e in events]
        return self

    def add(self, *commands: Command) -> "Output":
        self.commands += commands
        return self

    def extend(self, other: "Output") -> "Output":
        self.commands += other.commands
        return self

    # Views, for tests and logs.
    @property
    def events(self) -> list[Event]:
        return [c.event for c in self.commands if isinstance(c, Send)]

    @property
    def jobs(self) -> list[DecodeJob]:
        return [c.job for c in self.commands if isinstance(c, Decode)]

    @property
    def close(self) -> Close | None:
        return next((c for c in self.commands if isinstance(c, Close)), None)
