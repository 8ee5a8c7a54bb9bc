"""One stream's whole lifecycle, sans I/O: client messages, decode results and
the edge's observations (idle, quota, shutdown, a client gone) in; Output
commands out (Send, Decode, Store, Transcribe, Close). Like h11's Connection,
it decides everything about the stream; the edge only executes.

    NEW --start--> STREAMING --stop--> STOPPING --last final--> (stopped) CLOSED
                       |  offline: stop --> TRANSCRIBING --end of file--> STOPPING
                       +-- fatal error, or an end with nothing to finish --> CLOSED

Time is the stream's own audio clock (samples at MODEL_RATE)."""

from __future__ import annotations

import enum

from ..wire.errors import ErrorCode, ProtocolError
from ..wire.languages import AUTO
from ..text.postprocess import Recognized
from ..protocols.messages import Audio, ClientMessage, Clear, Dtmf, Flush, KeepAlive, Mark, Start, StartConfig, Stop, Update
from ..wire import events
from ..wire.audio import samples_to_ms as ms
from .channels import Channels
from .commands import GOING_AWAY, INTERNAL_ERROR, NORMAL, POLICY, Close, DecodeJob, Output, Transcribe
from .file import FileTranscription
from .live import LiveStream
from .signals import MAX_SIGNALS, Signals


class State(enum.StrEnum):
    NEW = "new"                    # waiting for start
    STREAMING = "streaming"        # taking audio (live) or the file's bytes (offline)
    TRANSCRIBING = "transcribing"  # offline: the file is being read and decoded
    STOPPING = "stopping"          # no more input; finals still being decoded
    CLOSED = "closed"              # Close given: nothing more happens


class End(enum.Enum):
    """Why a stream ends before its client says stop: (final reason, close code, close reason)."""
    SHUTDOWN = ("shutdown", GOING_AWAY, "server shutting down")
    IDLE = ("idle", POLICY, "idle timeout")
    QUOTA = ("quota", POLICY, "quota exceeded")
    DISCONNECT = ("disconnect", GOING_AWAY, "client left")

    def __init__(self, final_reason: str, code: int, close_reason: str):
        self.final_reason, self.code, self.close_reason = final_reason, code, close_reason


class Session:
    def __init__(self, session_id: str, model: str, model_languages: tuple[str, ...] = (),
                 limits: dict | None = None, max_errors: int = 20):
        self.id = session_id
        self.model = model
        self.model_languages = model_languages
        self.limits = limits or {}
        self.max_errors = max_errors
        self.state = State.NEW
        self.config: StartConfig | None = None
        self.stream: LiveStream | Channels | FileTranscription | None = None
        self.errors = 0
        self.signals = Signals(self.limits.get("max_signals", MAX_SIGNALS))
        self.ending: End | None = None
        # How it ended, for history: stopped (every final delivered), shutdown,
        # disconnected, or failed (closed on an error).
        self.outcome: str | None = None

    @property
    def offline(self) -> bool:
        return isinstance(self.stream, FileTranscription)

    @property
    def mode(self) -> str:
        return self.config.mode if self.config else "stream"

    @property
    def audio_samples(self) -> int:
        return self.stream.audio_samples if self.stream else 0

    @property
    def finals_pending(self) -> int:
        return self.stream.finals_pending if self.stream else 0

    @property
    def taking_input(self) -> bool:
        """The client owes us messages (what idle timeouts apply to)."""
        return self.state in (State.NEW, State.STREAMING) and self.ending is None

    # ---- client messages ----------------------------------------------
    def receive(self, message: ClientMessage) -> Output:
        if self.state is State.CLOSED or self.ending is not None:
            return Output()     # ending: what is in flight is finished, input is no longer taken
        try:
            return self._handle(message)
        except ProtocolError as exc:
            return self.reject(exc)

    def reject(self, error: ProtocolError) -> Output:
        """An error the client caused (also a frame its codec could not read)."""
        if self.state is State.CLOSED:
            return Output()
        self.errors += 1
        fatal = error.fatal or self.errors >= self.max_errors
        if fatal and not error.fatal:
            error = ProtocolError(error.code, f"{error.message} (too many errors: closing)", fatal=True)
        out = Output().send(error.event())
        return out.extend(self._close(POLICY, error.code)) if fatal else out

    def _handle(self, message: ClientMessage) -> Output:
        if isinstance(message, Start):
            return self._start(message.config)
        if isinstance(message, KeepAlive):
            return Output().send(events.Pong()) if message.reply else Output()
        if self.state is State.NEW:
            raise ProtocolError(ErrorCode.NOT_STARTED, "send a start message before audio, flush or stop")
        if self.state is not State.STREAMING:
            raise ProtocolError(ErrorCode.BAD_MESSAGE, "the stream is stopping: no more messages are taken")
        if isinstance(message, Audio):
            return self.stream.file_bytes(message.data) if self.offline else self.stream.audio(message.data,
                                                                                               message.channel)
        if isinstance(message, (Dtmf, Mark)):
            return self.signals.take(message, self.stream, self.config, ms(self.audio_samples))
        if isinstance(message, Update):
            return self.stream.update(message)
        if isinstance(message, (Flush, Clear)):
            if self.offline:
                raise ProtocolError(ErrorCode.BAD_MESSAGE, "flush and clear have no meaning in offline mode")
            if isinstance(message, Clear):
                return self.stream.clear()
            if message.require_speech and not self.stream.in_speech:
                raise ProtocolError(ErrorCode.NO_SPEECH, "no speech to commit: nothing was heard since the last "
                                    "utterance ended")
            return self.stream.flush()
        if isinstance(message, Stop):
            return self._stop(message.reason)
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"unhandled message {message!r}")

    def _start(self, config: StartConfig) -> Output:
        if self.state is not State.NEW:
            raise ProtocolError(ErrorCode.ALREADY_STARTED, "this stream has started already")
        if config.language != AUTO and self.model_languages and config.language not in self.model_languages:
            raise ProtocolError(ErrorCode.UNSUPPORTED, f"model {self.model} does not know language {config.language!r}")
        max_file = self.limits.get("max_file_bytes")
        if config.mode == "offline":
            if config.file_bytes is not None and max_file is not None and config.file_bytes > max_file:
                raise ProtocolError(ErrorCode.TOO_LARGE, f"file of {config.file_bytes} bytes is over this "
                                    f"server's limit of {max_file}", fatal=True)
            self.stream = FileTranscription(self.id, config, max_file)
        else:
            self.stream = Channels(self.id, config) if config.labelled else LiveStream(self.id, config)
        self.config = config
        self.state = State.STREAMING
        live = config.mode == "stream"
        labels = tuple(config.speaker(c) for c in range(config.channels)) if config.labelled else None
        return Output().send(events.Ready(self.id, self.model, config.mode, config.language, self.limits,
                                          config.sample_rate if live else None, config.encoding if live else None,
                                          labels, (config.room or self.id) if live else None))

    def _stop(self, reason: str) -> Output:
        if self.offline:
            if not self.stream.received:
                raise ProtocolError(ErrorCode.BAD_AUDIO, "no file was sent before stop", fatal=True)
            self.state = State.TRANSCRIBING
            return Output().send(self.stream.upload_progress()).add(Transcribe())
        out = self.stream.stop(reason)
        self.state = State.STOPPING
        return out.extend(self._maybe_stopped())

    # ---- the edge's observations ----------------------------------------
    def end(self, why: End, error: ProtocolError | None = None) -> Output:
        """End the stream from the server's side. A live stream's open utterance
        is decoded and every final delivered (stored, when the client is gone)
        before it closes; an upload is cut short; a file being transcribed
        finishes on shutdown and stops otherwise."""
        if self.state is State.CLOSED or self.ending is not None:
            return Output()
        self.ending = why
        if why in (End.SHUTDOWN, End.DISCONNECT):
            self.outcome = "shutdown" if why is End.SHUTDOWN else "disconnected"
        out = Output().send(error.event()) if error else Output()
        if self.state is State.STREAMING and not self.offline:
            return out.extend(self._stop(why.final_reason))
        if self.state in (State.NEW, State.STREAMING) or (self.state is State.TRANSCRIBING and why is not End.SHUTDOWN):
            return out.extend(self._close(why.code, why.close_reason))
        return out

    def abort(self, error: ProtocolError, code: int, reason: str) -> Output:
        """Close now with this error (a message too big, a full spool...)."""
        if self.state is State.CLOSED:
            return Output()
        return Output().send(error.event()).extend(self._close(code, reason))

    def fail(self) -> Output:
        """Something broke on the server's side."""
        return self.abort(ProtocolError(ErrorCode.INTERNAL, "internal server error", fatal=True),
                          INTERNAL_ERROR, "internal error")

    # ---- offline: the edge reads the file and feeds its audio -------------
    def file_opened(self, duration_ms: int | None) -> Output:
        return self.stream.opened(duration_ms) if self.state is State.TRANSCRIBING else Output()

    def file_audio(self, samples) -> Output:
        return self.stream.audio(samples) if self.state is State.TRANSCRIBING else Output()

    def file_ended(self) -> Output:
        if self.state is not State.TRANSCRIBING:
            return Output()
        out = self.stream.ended()
        self.state = State.STOPPING
        return out.extend(self._maybe_stopped())

    # ---- decode results -----------------------------------------------
    def on_result(self, job: DecodeJob, recognized: Recognized | None, error: str | None = None) -> Output:
        """A decode finished (recognized), failed (error) or was dropped as stale (both None)."""
        if self.state is State.CLOSED:
            return Output()
        if job.kind == "partial":
            return self.stream.on_partial(job, recognized, error, self.state is State.STREAMING)
        out = self.stream.on_final(job, recognized, error)
        stopped = self._maybe_stopped()
        if self.offline and not stopped.commands:
            out.send(self.stream.progress())
        return out.extend(stopped)

    def _maybe_stopped(self) -> Output:
        if self.state is not State.STOPPING or not self.stream.all_delivered:
            return Output()
        out = Output()
        if self.offline:
            out.send(*self.stream.relabelled(), self.stream.progress(done=True))
        out.send(events.Stopped(self.stream.utterances, ms(self.stream.audio_samples)))
        self.outcome = self.outcome or "stopped"
        why = self.ending
        return out.extend(self._close(why.code, why.close_reason) if why else self._close(NORMAL, "stopped"))

    def _close(self, code: int, reason: str) -> Output:
        self.state = State.CLOSED
        self.outcome = self.outcome or "failed"
        return Output().add(Close(code, reason))
