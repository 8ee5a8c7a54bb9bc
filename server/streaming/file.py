"""A file transcription: the bytes of a media file arrive (kept by the edge),
then its decoded audio is fed back as fast as decodes go; finals only, in the
background lane, with progress events."""

from __future__ import annotations

from ..wire.errors import ErrorCode, ProtocolError
from ..protocols.messages import StartConfig
from ..text.speakers import cluster
from ..wire import events
from ..wire.audio import samples_to_ms as ms
from .commands import Decode, Output, Store
from .segmenter import SpeechEnded, SpeechStarted
from .utterances import Utterances

UPLOAD_PROGRESS_BYTES = 1 << 20   # a progress event per MiB received


class FileTranscription(Utterances):
    background = True

    def __init__(self, session_id: str, config: StartConfig, max_file_bytes: int | None):
        super().__init__(session_id, config)
        self.max_file_bytes = max_file_bytes
        self.received = 0
        self.duration_ms: int | None = None
        self._onset = 0

    # ---- the upload ---------------------------------------------------
    def file_bytes(self, data: bytes) -> Output:
        before = self.received
        self.received += len(data)
        if self.max_file_bytes is not None and self.received > self.max_file_bytes:
            raise ProtocolError(ErrorCode.TOO_LARGE, f"file is over this server's limit of {self.max_file_bytes} "
                                "bytes", fatal=True)
        out = Output().add(Store(data))
        if before // UPLOAD_PROGRESS_BYTES != self.received // UPLOAD_PROGRESS_BYTES:
            out.send(self.upload_progress())
        return out

    def upload_progress(self) -> events.UploadProgress:
        return events.UploadProgress(self.received, self.config.file_bytes)

    # ---- its audio ----------------------------------------------------
    def opened(self, duration_ms: int | None) -> Output:
        self.duration_ms = duration_ms
        return Output().send(self.progress())

    def audio(self, samples) -> Output:
        """Decoded samples of the file (16 kHz float32)."""
        self.audio_samples += len(samples)
        return self._segmented(self.segmenter.feed(samples)).send(self.progress())

    def ended(self) -> Output:
        return self._segmented(self.segmenter.flush("end_of_file"))

    def _segmented(self, segments: list) -> Output:
        out = Output()
        for segment in segments:
            if isinstance(segment, SpeechStarted):
                self._onset = segment.start_sample
            elif isinstance(segment, SpeechEnded):
                language = None if self.config.language == "auto" else self.config.language
                out.add(Decode(self.final_job(segment, language)))
        return out

    def relabelled(self) -> list[events.Event]:
        """diarize: the whole file's speakers, clustered once every final is out."""
        if self.speakers is None or not self.voices:
            return []
        voices = sorted(self.voices, key=lambda v: (v[1], v[0]))    # in time order: S1 spoke first
        labels = cluster([v[3] for v in voices], self.config.max_speakers)
        segments = tuple({"utterance": u, "start_ms": start, "end_ms": end, "speaker": speaker}
                         for (u, start, end, _), speaker in zip(voices, labels))
        return [events.Speakers(len(set(labels)), segments)]

    def progress(self, done: bool = False) -> events.TranscribeProgress:
        """How far transcription has got; done_ms: every utterance before it has its final delivered."""
        clock = self.segmenter.clock
        upto = clock
        if not done:
            if self.segmenter.in_speech:
                upto = min(upto, self._onset)
            if self._finals_pending:
                upto = min(upto, min(job.start_sample for job in self._finals_pending.values()))
        duration = self.duration_ms
        return events.TranscribeProgress(ms(clock), ms(upto), duration,
                                         round(min(1.0, ms(upto) / duration), 4) if duration else None)
