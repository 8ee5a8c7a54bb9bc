"""A live stream: wire audio in as it is spoken; VAD events, partials while
an utterance goes on, a final at each endpoint.

Speculative finals: when the trailing silence reaches the tail (the segmenter's
Paused), the final is decoded at once, while the endpoint is still awaited.
If speech comes back first, that decode is cancelled or its result ignored;
if the endpoint fires, its result is the final, out the moment it is in. Its
text also sets the endpoint: sooner when it ends a sentence, later mid-clause."""

from __future__ import annotations

from ..wire.errors import ErrorCode, ProtocolError
from ..text.postprocess import Recognized
from ..protocols.messages import StartConfig
from ..wire import events
from ..wire.audio import MODEL_RATE, samples_to_ms as ms
from .audio import AudioDecoder, AudioFormatError
from .commands import Cancel, Decode, DecodeJob, Expedite, Output
from .segmenter import Paused, Resumed, SpeechEnded, SpeechStarted, UtteranceNumbers
from .stabilizer import Stabilizer
from ..wire.words import clause_shape
from .utterances import Utterances

FIRST_PARTIAL_RETRY_MS = 250       # nothing on screen yet: ask again sooner
LANGUAGE_PIN_MS = 2000             # partial audio needed before its detected language sticks


class LiveStream(Utterances):
    speculates = True

    def __init__(self, session_id: str, config: StartConfig, numbers: UtteranceNumbers | None = None,
                 channel: int | None = None):
        super().__init__(session_id, config, numbers, channel)
        self.decoder = AudioDecoder(config.encoding, config.sample_rate)
        self.stabilizer = Stabilizer()
        self._last_partial_sample = 0   # utterance audio length at the last partial request
        self._last_partial_voice = -1   # the segmenter's last voiced sample then
        self._onset = 0                 # speech onset of the open utterance
        self._shown_partial_seq = -1
        self._utterance_language: dict[int, str] = {}
        self._speculation: DecodeJob | None = None      # the open utterance's final, decoded in its silence
        self._speculated: Recognized | None = None       # its result, once in
        self._utterance_end_due = False  # a final went out: utterance_end follows after enough silence

    def audio(self, data: bytes, channel: int | None = None) -> Output:
        if channel not in (None, 0, self.channel):
            raise ProtocolError(ErrorCode.BAD_MESSAGE, f"channel {channel} is not one of this stream's: it has one")
        try:
            samples = self.decoder.decode(data)
        except AudioFormatError as exc:
            raise ProtocolError(ErrorCode.BAD_AUDIO, str(exc)) from None
        self.audio_samples += len(samples)
        return (self._segmented(self.segmenter.feed(samples)).extend(self._maybe_partial())
                .extend(self._maybe_utterance_end()))

    def flush(self, reason: str = "flush") -> Output:
        return self._segmented(self.segmenter.flush(reason))

    def clear(self) -> Output:
        """Drop the open utterance undecoded; the finals before it still go out in order."""
        index = self.segmenter.discard()
        out = self._drop_speculation()
        if index is None:
            return out.send(events.Cleared(None))
        self.stabilizer.reset()
        return out.extend(self.skip(index)).send(events.Cleared(index))

    def stop(self, reason: str) -> Output:
        """The end of input: what the decoder holds, then the open utterance."""
        tail = self.decoder.flush()
        self.audio_samples += len(tail)
        return self._segmented(self.segmenter.feed(tail)).extend(self.flush(reason))

    def _segmented(self, segments: list) -> Output:
        out = Output()
        vad_events = self.config.vad_events
        for segment in segments:
            if isinstance(segment, SpeechStarted):
                self.stabilizer.reset()
                self._last_partial_sample = 0
                self._last_partial_voice = -1
                self._onset = segment.start_sample
                if vad_events:
                    out.send(events.SpeechStarted(segment.utterance, ms(segment.start_sample)))
            elif isinstance(segment, Paused):
                job = self.final_job(segment, self._language(segment.utterance, "final"), speculative=True)
                self._speculation, self._speculated = job, None
                out.add(Decode(job))
            elif isinstance(segment, Resumed):
                out.extend(self._drop_speculation())
            elif isinstance(segment, SpeechEnded):
                if vad_events:
                    out.send(events.SpeechEnded(segment.utterance, ms(segment.start_sample), ms(segment.end_sample),
                                                segment.reason))
                self._utterance_end_due = True
                job = self._speculation
                if job is not None and job.utterance == segment.utterance and segment.reason != "max_length":
                    out.extend(self._adopt(job, segment))
                else:
                    out.extend(self._drop_speculation())
                    out.add(Decode(self.final_job(segment, self._language(segment.utterance, "final"))))
        return out

    def endpointing_changed(self) -> Output:
        c, seg = self.config.endpointing, self.segmenter
        seg.config = c
        seg.set_vad_aggressiveness(c.vad_aggressiveness)
        out = Output()
        if not c.speculative:
            out.extend(self._drop_speculation())
        seg.pauses = c.speculative
        return out.extend(self._segmented(seg.set_endpoint(c.silence_ms)))

    # ---- speculative finals ---------------------------------------------
    def _adopt(self, job: DecodeJob, ended: SpeechEnded) -> Output:
        """The endpoint fired with no speech since the speculation: its result is the final."""
        job.start_sample, job.end_sample, job.reason = ended.start_sample, ended.end_sample, ended.reason
        result, self._speculation, self._speculated = self._speculated, None, None
        self.expect_final(job)
        if result is not None:
            return super().on_final(job, result, None)
        return Output().add(Expedite(job))

    def _drop_speculation(self) -> Output:
        job, self._speculation, self._speculated = self._speculation, None, None
        return Output().add(Cancel(job)) if job is not None else Output()

    def on_final(self, job: DecodeJob, recognized: Recognized | None, error: str | None) -> Output:
        if not job.speculative or self.is_expected(job):   # (a final, or a speculation that became one)
            return super().on_final(job, recognized, error).extend(self._maybe_utterance_end())
        if job is not self._speculation:
            return Output()             # speech came back: that text was never the final
        if error or recognized is None:
            self._speculation = None    # the endpoint decodes it afresh
            return Output()
        self._speculated = recognized
        c = self.config.endpointing
        endpoint = c.silence_ms
        if endpoint:                    # 0: only flush or max length end an utterance
            shape = clause_shape(recognized.raw_text)
            endpoint = {"sentence": c.sentence_end_ms, "open": c.mid_clause_ms}.get(shape, c.silence_ms)
        ended = self._segmented(self.segmenter.set_endpoint(endpoint))
        if ended.commands:
            return ended
        # Still waiting for the endpoint: the text need not wait to be seen.
        return self._show(job, recognized)

    def _language(self, utterance: int, kind: str) -> str | None:
        if self.config.language != "auto":
            return self.config.language
        if kind == "final":    # the whole utterance is the surest ground to detect on
            return None
        return self._utterance_language.get(utterance)

    def _maybe_partial(self) -> Output:
        seg = self.segmenter
        if not (self.config.partials and seg.in_speech) or self._speculation is not None:
            return Output()        # in the silence after speech the speculative final shows the text
        length = seg.clock - seg.utterance_start
        interval = self.config.partial_interval_ms
        if not self.stabilizer.has_text:
            interval = min(interval, FIRST_PARTIAL_RETRY_MS)
        if length - self._last_partial_sample < interval * MODEL_RATE // 1000:
            return Output()
        if seg.last_voiced_end == self._last_partial_voice:
            return Output()        # nothing said since the last one: it would say the same
        self._last_partial_sample = length
        self._last_partial_voice = seg.last_voiced_end
        index = seg.utterance_index
        request = self.request("partial", seg.utterance_audio(), self._language(index, "partial"),
                               f"{self.id}/{index}")
        job = DecodeJob(self.id, index, self.next_seq(), request, self._onset, seg.clock, seg.utterance_start,
                        text=self.text_work(), channel=self.channel, first=not self.stabilizer.has_text)
        return Output().add(Decode(job))

    def on_partial(self, job: DecodeJob, recognized: Recognized | None, error: str | None, taking_input: bool) -> Output:
        if error:   # say so, rather than fall silent; the next partial will try again
            return Output().send(events.Error(ErrorCode.DECODE_FAILED,
                                              f"a partial of utterance {job.utterance} failed: {error}"))
        seg = self.segmenter
        current = seg.in_speech and seg.utterance_index == job.utterance
        if recognized is None or not current or not taking_input:
            return Output()
        # Later partials keep the language once it was heard on enough audio
        # (on half a second Whisper may take Mandarin for English).
        result = recognized.result
        if (result.language and self.config.language == "auto"
                and job.end_sample - job.audio_start >= LANGUAGE_PIN_MS * MODEL_RATE // 1000):
            self._utterance_language.setdefault(job.utterance, result.language)
        return self._show(job, recognized)

    def _show(self, job: DecodeJob, recognized: Recognized) -> Output:
        """A hypothesis of the open utterance as a partial (unless a newer one was shown)."""
        if job.seq < self._shown_partial_seq:
            return Output()
        self._shown_partial_seq = job.seq
        if not recognized.raw_text:
            return Output()
        stable, text = self.stabilizer.update(recognized.raw_text)
        partial = events.Partial(job.utterance, ms(job.start_sample), ms(job.end_sample), text, stable,
                                 recognized.result.language, recognized.itn_text)
        # Alerts read the newest hypothesis itself, not the caption's frozen prefix.
        return Output().send(partial, *self.alerts.on_partial(recognized.occurrences, job.utterance,
                                                              ms(job.end_sample)))

    def _maybe_utterance_end(self) -> Output:
        """Deepgram's UtteranceEnd: this much silence after the last word, once
        that utterance's final is out."""
        wait = self.config.utterance_end_ms
        seg = self.segmenter
        if (not wait or not self._utterance_end_due or seg.in_speech or self.finals_pending
                or seg.trailing_silence_ms < wait):
            return Output()
        self._utterance_end_due = False
        return Output().send(events.UtteranceEnd(ms(seg.last_voiced_end)))

    def delivered(self, utterance: int) -> None:
        self._utterance_language.pop(utterance, None)
