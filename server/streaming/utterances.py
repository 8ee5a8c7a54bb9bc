"""What live streams and file transcriptions share: audio cut into utterances
by the segmenter, a final decode for each, finals delivered in utterance order
whatever order their decodes end in, each right after its alert verdicts."""

from __future__ import annotations

from collections import deque

from ..alerts import AlertTracker
from ..engines.base import DecodeRequest
from ..errors import ErrorCode
from ..hotwords import prompt_order
from ..postprocess import Recognized, TextWork
from ..protocol import StartConfig, Update
from . import events
from .audio import samples_to_ms as ms
from .commands import DecodeJob, Output
from .segmenter import Segmenter, SpeechEnded, UtteranceNumbers


class Utterances:
    background = False            # file finals yield to live ones in the batch collector

    def __init__(self, session_id: str, config: StartConfig, numbers: UtteranceNumbers | None = None,
                 channel: int | None = None):
        self.id = session_id
        self.config = config
        self.channel = channel                 # which channel of the stream this is (None: the only one)
        self.segmenter = Segmenter(config.endpointing, numbers)
        self.hotwords = config.hotwords
        self.watch = config.watch
        self.alerts = AlertTracker()
        self.audio_samples = 0                 # audio heard so far: the stream's clock
        self.utterances = 0
        self._seq = 0
        self._finals_pending: dict[int, DecodeJob] = {}
        self._finals_ready: dict[int, list[events.Event]] = {}   # utterance -> its alert verdicts and final
        self._order: deque[int] = deque()    # this stream's utterances, in the order they ended

    @property
    def finals_pending(self) -> int:
        return len(self._finals_pending)

    @property
    def in_speech(self) -> bool:
        return self.segmenter.in_speech

    @property
    def all_delivered(self) -> bool:
        return not (self._finals_pending or self._finals_ready)

    def update(self, update: Update) -> Output:
        """New hotwords and/or watch phrases, from the next decode request on."""
        if update.hotwords is not None:
            self.hotwords = update.hotwords
        if update.watch is not None:
            self.watch = update.watch
        return Output().send(events.Updated([h.phrase for h in self.hotwords], [w.phrase for w in self.watch]))

    # ---- decode requests ----------------------------------------------
    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def request(self, kind: str, audio, language: str | None, stream: str) -> DecodeRequest:
        return DecodeRequest(audio=audio, kind=kind, language=language, hotwords=prompt_order(self.hotwords),
                             word_timestamps=kind == "final" and self.config.word_timestamps, stream=stream)

    def text_work(self) -> TextWork:
        return TextWork(self.hotwords, self.watch, self.config.itn, self.config.itn_partials, self.config.redact)

    def final_job(self, ended: SpeechEnded, language: str | None) -> DecodeJob:
        request = self.request("final", ended.audio, language, f"{self.id}/{ended.utterance}")
        job = DecodeJob(self.id, ended.utterance, self.next_seq(), request, ended.start_sample, ended.end_sample,
                        ended.audio_start, ended.reason, background=self.background, text=self.text_work(),
                        channel=self.channel)
        self._finals_pending[ended.utterance] = job
        self._order.append(ended.utterance)
        self.utterances = max(self.utterances, ended.utterance + 1)
        return job

    # ---- finals, in order ---------------------------------------------
    def on_final(self, job: DecodeJob, recognized: Recognized | None, error: str | None) -> Output:
        self._finals_pending.pop(job.utterance, None)
        result = recognized.result if recognized else None
        offset = ms(job.audio_start)
        words = tuple(events.Word(w.word, offset + w.start_ms, offset + w.end_ms, w.probability)
                      for w in result.words) if result and result.words else None
        final = events.Final(job.utterance, ms(job.start_sample), ms(job.end_sample), job.reason,
                             text=recognized.text if recognized else "",
                             raw_text=recognized.raw_text if recognized else "",
                             language=result.language if result else None, words=words,
                             hotwords=job.request.hotwords, error=error)
        out = Output()
        if error:
            out.send(events.Error(ErrorCode.DECODE_FAILED, f"utterance {job.utterance} could not be decoded: {error}"))
        found = recognized.occurrences if recognized else ()
        self._finals_ready[job.utterance] = [*self.alerts.on_final(found, job.utterance, ms(job.end_sample)), final]
        return self._release(out)

    def skip(self, utterance: int) -> Output:
        """An utterance that will have no final (cleared): later ones need not wait for it."""
        self._finals_ready[utterance] = []
        self._order.append(utterance)
        return self._release(Output())

    def _release(self, out: Output) -> Output:
        while self._order and self._order[0] in self._finals_ready:
            utterance = self._order.popleft()
            out.send(*self._finals_ready.pop(utterance))
            self.delivered(utterance)
        return out

    def delivered(self, utterance: int) -> None:
        """An utterance's final is out (subclasses forget what they kept for it)."""
