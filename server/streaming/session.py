"""One stream's state machine: client messages and decode results in,
events to send and decode jobs to run out. No sockets, no clock: time is
the stream's own audio clock (samples at 16 kHz)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..alerts import AlertTracker
from ..engines.base import DecodeRequest, DecodeResult
from ..hotwords import apply_hotwords
from ..itn import inverse_normalize
from ..protocol import (Audio, ClientMessage, ErrorCode, Flush, KeepAlive, ProtocolError, Start,
                        StartConfig, Stop, Update)
from .audio import MODEL_RATE, AudioDecoder, AudioFormatError
from .segmenter import Segmenter, SpeechEnded, SpeechStarted
from .stabilizer import Stabilizer


FIRST_PARTIAL_RETRY_MS = 250
LANGUAGE_PIN_MS = 2000             # partial audio needed before its detected language sticks
UPLOAD_PROGRESS_BYTES = 1 << 20   # offline: a progress event per MiB received


def ms(samples: int) -> int:
    return samples * 1000 // MODEL_RATE


@dataclass
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

    @property
    def kind(self) -> str:
        return self.request.kind


@dataclass
class Output:
    events: list[dict] = field(default_factory=list)
    jobs: list[DecodeJob] = field(default_factory=list)
    close: bool = False
    file_data: list[bytes] = field(default_factory=list)   # offline: bytes of the file to keep
    file_complete: bool = False                            # offline: the whole file is in; decode it

    def extend(self, other: "Output") -> "Output":
        self.events += other.events
        self.jobs += other.jobs
        self.close = self.close or other.close
        self.file_data += other.file_data
        self.file_complete = self.file_complete or other.file_complete
        return self


class Session:
    def __init__(self, session_id: str, model: str, model_languages: tuple[str, ...] = (),
                 limits: dict | None = None):
        self.id = session_id
        self.model = model
        self.model_languages = model_languages
        self.limits = limits or {}
        # new -> streaming -> stopping -> stopped; offline mode goes
        # streaming (receiving the file) -> transcribing -> stopping -> stopped
        self.state = "new"
        self.config: StartConfig | None = None
        self._decoder: AudioDecoder | None = None
        self._segmenter: Segmenter | None = None
        self._stabilizer = Stabilizer()
        self._alerts = AlertTracker()
        self._hotwords: tuple = ()
        self._seq = 0
        self._last_partial_sample = 0   # utterance audio length at the last partial request
        self._onset = 0                 # speech onset of the open utterance
        self._shown_partial_seq = -1
        self._utterance_language: dict[int, str] = {}
        self._finals_pending: dict[int, DecodeJob] = {}
        self._finals_ready: dict[int, list[dict]] = {}   # utterance -> its alerts verdicts and final
        self._next_final = 0
        self.utterances = 0
        self.audio_samples = 0
        self.file_received = 0
        self.file_duration_ms: int | None = None

    @property
    def offline(self) -> bool:
        return self.config is not None and self.config.mode == "offline"

    # ---- client messages ----------------------------------------------
    def handle(self, message: ClientMessage) -> Output:
        if isinstance(message, Start):
            return self._start(message.config)
        if isinstance(message, KeepAlive):
            return Output()
        if self.state == "new":
            raise ProtocolError(ErrorCode.NOT_STARTED, "send a start message before audio, flush or stop")
        if self.state != "streaming":
            raise ProtocolError(ErrorCode.BAD_MESSAGE, "the stream is stopping: no more messages are taken")
        if isinstance(message, Audio):
            return self._audio(message.data)
        if isinstance(message, Update):
            return self._update(message)
        if isinstance(message, Flush):
            if self.offline:
                raise ProtocolError(ErrorCode.BAD_MESSAGE, "flush has no meaning in offline mode")
            return self._segment_events(self._segmenter.flush("flush"))
        if isinstance(message, Stop):
            return self._stop()
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"unhandled message {message!r}")

    def _start(self, config: StartConfig) -> Output:
        if self.state != "new":
            raise ProtocolError(ErrorCode.ALREADY_STARTED, "this stream has started already")
        if (config.language != "auto" and self.model_languages
                and config.language not in self.model_languages):
            raise ProtocolError(ErrorCode.UNSUPPORTED,
                                f"model {self.model} does not know language {config.language!r}")
        self.config = config
        self._hotwords = config.hotwords
        self._alerts.watch = config.watch
        if config.mode == "stream":
            self._decoder = AudioDecoder(config.encoding, config.sample_rate)
        elif config.file_bytes is not None and config.file_bytes > self.limits.get("max_file_bytes", config.file_bytes):
            raise ProtocolError(ErrorCode.TOO_LARGE, f"file of {config.file_bytes} bytes is over this "
                                f"server's limit of {self.limits['max_file_bytes']}", fatal=True)
        self._segmenter = Segmenter(config.endpointing)
        self.state = "streaming"
        ready = {"type": "ready", "session_id": self.id, "model": self.model, "mode": config.mode,
                 "language": config.language, "limits": self.limits}
        if config.mode == "stream":
            ready.update(sample_rate=config.sample_rate, encoding=config.encoding)
        return Output(events=[ready])

    def _update(self, update: Update) -> Output:
        # Takes effect from the next decode request on, partials included.
        if update.hotwords is not None:
            self._hotwords = update.hotwords
        if update.watch is not None:
            self._alerts.watch = update.watch
        return Output(events=[{"type": "updated", "hotwords": [h.phrase for h in self._hotwords],
                               "watch": [w.phrase for w in self._alerts.watch]}])

    def _audio(self, data: bytes) -> Output:
        if self.offline:
            return self._file_bytes(data)
        try:
            samples = self._decoder.decode(data)
        except AudioFormatError as exc:
            raise ProtocolError(ErrorCode.BAD_AUDIO, str(exc)) from None
        self.audio_samples += len(samples)
        out = self._segment_events(self._segmenter.feed(samples))
        return out.extend(self._maybe_partial())

    def _stop(self, reason: str = "stop") -> Output:
        if self.offline:
            self.state = "transcribing"
            return Output(events=[self._upload_progress()], file_complete=True)
        out = self._segment_events(self._segmenter.feed(self._decoder.flush()))
        out.extend(self._segment_events(self._segmenter.flush(reason)))
        self.state = "stopping"
        return out.extend(self._maybe_stopped())

    def shutdown(self, reason: str = "shutdown") -> Output:
        """The server is going away (or the client went): end the open
        utterance with `reason`, deliver every final, then `stopped`, as if
        the client had sent stop. An offline file being transcribed finishes."""
        if self.state == "streaming" and not self.offline:
            return self._stop(reason)
        if self.state in ("new", "streaming"):   # nothing to finish (an upload is cut short)
            self.state = "stopped"
            return Output(close=True)
        return Output()

    # ---- offline: a whole file, fed by the edge as fast as decodes go ----
    def _file_bytes(self, data: bytes) -> Output:
        before = self.file_received
        self.file_received += len(data)
        limit = self.limits.get("max_file_bytes")
        if limit is not None and self.file_received > limit:
            raise ProtocolError(ErrorCode.TOO_LARGE, f"file is over this server's limit of {limit} bytes",
                                fatal=True)
        out = Output(file_data=[data])
        if before // UPLOAD_PROGRESS_BYTES != self.file_received // UPLOAD_PROGRESS_BYTES:
            out.events.append(self._upload_progress())
        return out

    def _upload_progress(self) -> dict:
        return {"type": "progress", "stage": "upload", "received_bytes": self.file_received,
                "file_bytes": self.config.file_bytes}

    def file_opened(self, duration_ms: int | None) -> Output:
        self.file_duration_ms = duration_ms
        return Output(events=[self.progress()])

    def file_audio(self, samples) -> Output:
        """Decoded samples of the file (16 kHz float32): finals only, no partials."""
        self.audio_samples += len(samples)
        return self._segment_events(self._segmenter.feed(samples)).extend(Output(events=[self.progress()]))

    def file_ended(self) -> Output:
        out = self._segment_events(self._segmenter.flush("end_of_file"))
        self.state = "stopping"
        return out.extend(self._maybe_stopped())

    def progress(self) -> dict:
        """Offline: how far transcription has got. done_ms: every utterance
        before it has its final delivered."""
        done = self._segmenter.clock
        if self._segmenter.in_speech:
            done = min(done, self._onset)
        if self._finals_pending:
            done = min(done, min(job.start_sample for job in self._finals_pending.values()))
        if self.state == "stopped":
            done = self._segmenter.clock
        duration = self.file_duration_ms
        return {"type": "progress", "stage": "transcribe", "decoded_ms": ms(self._segmenter.clock),
                "done_ms": ms(done), "duration_ms": duration,
                "fraction": round(min(1.0, ms(done) / duration), 4) if duration else None}

    # ---- segmentation -------------------------------------------------
    def _segment_events(self, events: list) -> Output:
        out = Output()
        for event in events:
            if isinstance(event, SpeechStarted):
                self._stabilizer.reset()
                self._last_partial_sample = 0
                self._onset = event.start_sample
                if self.offline:
                    continue
                out.events.append({"type": "speech_started", "utterance": event.utterance,
                                   "start_ms": ms(event.start_sample)})
            elif isinstance(event, SpeechEnded):
                if not self.offline:
                    out.events.append({"type": "speech_ended", "utterance": event.utterance,
                                       "start_ms": ms(event.start_sample), "end_ms": ms(event.end_sample),
                                       "reason": event.reason})
                out.jobs.append(self._final_job(event))
        return out

    def _language(self, utterance: int, kind: str) -> str | None:
        if self.config.language != "auto":
            return self.config.language
        if kind == "final":    # the whole utterance is the surest ground to detect on
            return None
        return self._utterance_language.get(utterance)

    def _request(self, kind: str, audio, utterance: int) -> DecodeRequest:
        return DecodeRequest(
            audio=audio, kind=kind, language=self._language(utterance, kind),
            # The most boosted first: the engine's prompt may have to cut the tail.
            hotwords=tuple(h.phrase for h in sorted(self._hotwords, key=lambda h: -h.boost)),
            word_timestamps=kind == "final" and self.config.word_timestamps,
            stream=f"{self.id}/{utterance}",
        )

    def _final_job(self, ended: SpeechEnded) -> DecodeJob:
        self._seq += 1
        job = DecodeJob(self.id, ended.utterance, self._seq, self._request("final", ended.audio, ended.utterance),
                        ended.start_sample, ended.end_sample, ended.audio_start, ended.reason,
                        background=self.offline)
        self._finals_pending[ended.utterance] = job
        self.utterances = max(self.utterances, ended.utterance + 1)
        return job

    def _maybe_partial(self) -> Output:
        seg = self._segmenter
        if not (self.config.partials and seg.in_speech):
            return Output()
        length = seg.clock - seg.utterance_start
        interval = self.config.partial_interval_ms
        if not self._stabilizer.has_text:   # nothing on screen yet: ask again sooner
            interval = min(interval, FIRST_PARTIAL_RETRY_MS)
        if length - self._last_partial_sample < interval * MODEL_RATE // 1000:
            return Output()
        self._last_partial_sample = length
        self._seq += 1
        index = seg.utterance_index
        return Output(jobs=[DecodeJob(self.id, index, self._seq,
                                      self._request("partial", seg.utterance_audio(), index),
                                      self._onset, seg.clock, seg.utterance_start)])

    # ---- decode results -----------------------------------------------
    def on_result(self, job: DecodeJob, result: DecodeResult | None, error: str | None = None) -> Output:
        """A decode finished (result), failed (error) or was dropped as stale (both None)."""
        if job.kind == "partial":
            if error:   # say so, rather than fall silent; the next partial will try again
                return Output(events=[ProtocolError(ErrorCode.DECODE_FAILED,
                                                    f"a partial of utterance {job.utterance} failed: {error}").event()])
            return self._on_partial(job, result)
        return self._on_final(job, result, error)

    def _on_partial(self, job: DecodeJob, result: DecodeResult | None) -> Output:
        seg = self._segmenter
        current = seg.in_speech and seg.utterance_index == job.utterance
        if result is None or not current or job.seq < self._shown_partial_seq or self.state != "streaming":
            return Output()
        self._shown_partial_seq = job.seq
        # Later partials keep the language once it was heard on enough audio
        # (on half a second Whisper may take Mandarin for English).
        if (result.language and self.config.language == "auto"
                and job.end_sample - job.audio_start >= LANGUAGE_PIN_MS * MODEL_RATE // 1000):
            self._utterance_language.setdefault(job.utterance, result.language)
        if not result.text:
            return Output()
        hypothesis = apply_hotwords(result.text, self._hotwords)
        stable, text = self._stabilizer.update(hypothesis)
        event = {"type": "partial", "utterance": job.utterance,
                 "start_ms": ms(job.start_sample), "end_ms": ms(job.end_sample),
                 "text": text, "stable_text": stable, "language": result.language}
        if self.config.itn and self.config.itn_partials:
            event["itn_text"] = inverse_normalize(text, result.language)
        # Alerts read the newest hypothesis itself, not the caption's frozen prefix.
        return Output(events=[event, *self._alerts.on_partial(hypothesis, job.utterance, ms(job.end_sample))])

    def _on_final(self, job: DecodeJob, result: DecodeResult | None, error: str | None) -> Output:
        self._finals_pending.pop(job.utterance, None)
        offset = ms(job.audio_start)
        language = result.language if result else None
        raw = apply_hotwords(result.text, self._hotwords) if result else ""
        text = inverse_normalize(raw, language) if self.config.itn else raw
        event = {"type": "final", "utterance": job.utterance, "start_ms": ms(job.start_sample),
                 "end_ms": ms(job.end_sample), "reason": job.reason,
                 "text": text, "raw_text": raw, "language": language,
                 "words": [{"word": w.word, "start_ms": offset + w.start_ms, "end_ms": offset + w.end_ms,
                            "probability": w.probability} for w in result.words] if result and result.words else None}
        if job.request.hotwords:
            event["hotwords"] = list(job.request.hotwords)
        out = Output()
        if error:
            event["error"] = error
            out.events.append(ProtocolError(ErrorCode.DECODE_FAILED,
                                            f"utterance {job.utterance} could not be decoded: {error}").event())
        # Finals go out in utterance order, whatever order decodes end in;
        # an utterance's alert verdicts go right before its final.
        self._finals_ready[job.utterance] = [*self._alerts.on_final(raw, job.utterance, ms(job.end_sample)), event]
        while self._next_final in self._finals_ready:
            out.events.extend(self._finals_ready.pop(self._next_final))
            self._utterance_language.pop(self._next_final, None)
            self._next_final += 1
        stopped = self._maybe_stopped()
        if self.offline and not stopped.close:
            out.events.append(self.progress())
        return out.extend(stopped)

    def _maybe_stopped(self) -> Output:
        if self.state != "stopping" or self._finals_pending or self._finals_ready:
            return Output()
        self.state = "stopped"
        done = [self.progress()] if self.offline else []
        return Output(events=[*done, {"type": "stopped", "utterances": self.utterances,
                                      "audio_ms": ms(self.audio_samples)}], close=True)

    @property
    def finals_pending(self) -> int:
        return len(self._finals_pending)
