"""A live stream: wire audio in as it is spoken; VAD events, partials while
an utterance goes on, a final at each endpoint."""

from __future__ import annotations

from ..errors import ErrorCode, ProtocolError
from ..postprocess import Recognized
from ..protocol import StartConfig
from . import events
from .audio import MODEL_RATE, AudioDecoder, AudioFormatError, samples_to_ms as ms
from .commands import Decode, DecodeJob, Output
from .segmenter import SpeechEnded, SpeechStarted, UtteranceNumbers
from .stabilizer import Stabilizer
from .utterances import Utterances

FIRST_PARTIAL_RETRY_MS = 250       # nothing on screen yet: ask again sooner
LANGUAGE_PIN_MS = 2000             # partial audio needed before its detected language sticks


class LiveStream(Utterances):
    def __init__(self, session_id: str, config: StartConfig, numbers: UtteranceNumbers | None = None,
                 channel: int | None = None):
        super().__init__(session_id, config, numbers, channel)
        self.decoder = AudioDecoder(config.encoding, config.sample_rate)
        self.stabilizer = Stabilizer()
        self._last_partial_sample = 0   # utterance audio length at the last partial request
        self._onset = 0                 # speech onset of the open utterance
        self._shown_partial_seq = -1
        self._utterance_language: dict[int, str] = {}

    def audio(self, data: bytes, channel: int | None = None) -> Output:
        if channel not in (None, 0, self.channel):
            raise ProtocolError(ErrorCode.BAD_MESSAGE, f"channel {channel} is not one of this stream's: it has one")
        try:
            samples = self.decoder.decode(data)
        except AudioFormatError as exc:
            raise ProtocolError(ErrorCode.BAD_AUDIO, str(exc)) from None
        self.audio_samples += len(samples)
        return self._segmented(self.segmenter.feed(samples)).extend(self._maybe_partial())

    def flush(self, reason: str = "flush") -> Output:
        return self._segmented(self.segmenter.flush(reason))

    def clear(self) -> Output:
        """Drop the open utterance undecoded; the finals before it still go out in order."""
        index = self.segmenter.discard()
        if index is None:
            return Output().send(events.Cleared(None))
        self.stabilizer.reset()
        return self.skip(index).send(events.Cleared(index))

    def stop(self, reason: str) -> Output:
        """The end of input: what the decoder holds, then the open utterance."""
        tail = self.decoder.flush()
        self.audio_samples += len(tail)
        return self._segmented(self.segmenter.feed(tail)).extend(self.flush(reason))

    def _segmented(self, segments: list) -> Output:
        out = Output()
        for segment in segments:
            if isinstance(segment, SpeechStarted):
                self.stabilizer.reset()
                self._last_partial_sample = 0
                self._onset = segment.start_sample
                out.send(events.SpeechStarted(segment.utterance, ms(segment.start_sample)))
            elif isinstance(segment, SpeechEnded):
                out.send(events.SpeechEnded(segment.utterance, ms(segment.start_sample), ms(segment.end_sample),
                                            segment.reason))
                out.add(Decode(self.final_job(segment, self._language(segment.utterance, "final"))))
        return out

    def _language(self, utterance: int, kind: str) -> str | None:
        if self.config.language != "auto":
            return self.config.language
        if kind == "final":    # the whole utterance is the surest ground to detect on
            return None
        return self._utterance_language.get(utterance)

    def _maybe_partial(self) -> Output:
        seg = self.segmenter
        if not (self.config.partials and seg.in_speech):
            return Output()
        length = seg.clock - seg.utterance_start
        interval = self.config.partial_interval_ms
        if not self.stabilizer.has_text:
            interval = min(interval, FIRST_PARTIAL_RETRY_MS)
        if length - self._last_partial_sample < interval * MODEL_RATE // 1000:
            return Output()
        self._last_partial_sample = length
        index = seg.utterance_index
        request = self.request("partial", seg.utterance_audio(), self._language(index, "partial"),
                               f"{self.id}/{index}")
        job = DecodeJob(self.id, index, self.next_seq(), request, self._onset, seg.clock, seg.utterance_start,
                        text=self.text_work(), channel=self.channel)
        return Output().add(Decode(job))

    def on_partial(self, job: DecodeJob, recognized: Recognized | None, error: str | None, taking_input: bool) -> Output:
        if error:   # say so, rather than fall silent; the next partial will try again
            return Output().send(events.Error(ErrorCode.DECODE_FAILED,
                                              f"a partial of utterance {job.utterance} failed: {error}"))
        seg = self.segmenter
        current = seg.in_speech and seg.utterance_index == job.utterance
        if recognized is None or not current or job.seq < self._shown_partial_seq or not taking_input:
            return Output()
        self._shown_partial_seq = job.seq
        result = recognized.result
        # Later partials keep the language once it was heard on enough audio
        # (on half a second Whisper may take Mandarin for English).
        if (result.language and self.config.language == "auto"
                and job.end_sample - job.audio_start >= LANGUAGE_PIN_MS * MODEL_RATE // 1000):
            self._utterance_language.setdefault(job.utterance, result.language)
        if not recognized.raw_text:
            return Output()
        stable, text = self.stabilizer.update(recognized.raw_text)
        partial = events.Partial(job.utterance, ms(job.start_sample), ms(job.end_sample), text, stable,
                                 result.language, recognized.itn_text)
        # Alerts read the newest hypothesis itself, not the caption's frozen prefix.
        return Output().send(partial, *self.alerts.on_partial(recognized.occurrences, job.utterance,
                                                              ms(job.end_sample)))

    def delivered(self, utterance: int) -> None:
        self._utterance_language.pop(utterance, None)
