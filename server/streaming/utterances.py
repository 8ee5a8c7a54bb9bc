"""What live streams and file transcriptions share: audio cut into utterances
by the segmenter, a final decode for each, finals delivered in utterance order
whatever order their decodes end in, each right after its alert verdicts."""

from __future__ import annotations

import dataclasses
from collections import deque

from ..text.alerts import AlertTracker, prompt_terms
from ..text.countdown import CountdownTracker
from ..wire.recognition import DecodeRequest
from ..wire.errors import ErrorCode, ProtocolError
from ..text.hotwords import prompt_order
from ..text.postprocess import Recognized, TextWork
from ..protocols.messages import Update, apply_update
from ..text.speakers import OnlineSpeakers, turns
from ..protocols.start import LIVE_ONLY, StartConfig, endpointing_summary
from ..wire import events
from ..wire.audio import samples_to_ms as ms
from .commands import DecodeJob, Output
from .segmenter import Paused, Segmenter, SpeechEnded, UtteranceNumbers
from ..wire.words import join_units


class Utterances:
    background = False            # file finals yield to live ones in the batch collector
    speculates = False            # live streams decode a final when its silence begins (segmenter's Paused)

    def __init__(self, session_id: str, config: StartConfig, numbers: UtteranceNumbers | None = None,
                 channel: int | None = None):
        self.id = session_id
        self.config = config
        self.channel = channel                 # which channel of the stream this is (None: the only one)
        self.segmenter = Segmenter(config.endpointing, numbers,
                                   pauses=self.speculates and config.endpointing.speculative)
        self.alerts = AlertTracker()
        self.countdown = CountdownTracker() if config.countdown else None
        self.speakers = OnlineSpeakers(config.max_speakers) if config.diarize else None
        self.voices: list[tuple[int, int, int, object]] = []   # diarized files: (utterance, start_ms, end_ms, embedding)
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
        """configure (or update): new hotwords and watch phrases from the next
        decode request on; endpointing from the next frame on (the open
        utterance included)."""
        if self.background and update.for_live_streams:
            raise ProtocolError(ErrorCode.INVALID_FIELD, f"{', '.join(LIVE_ONLY)} apply to live streams only")
        self.config = c = apply_update(self.config, update)
        out = Output()
        if update.endpointing is not None:
            out.extend(self.endpointing_changed())
        settings = {"endpointing": endpointing_summary(c.endpointing), "utterance_end_ms": c.utterance_end_ms,
                    "vad_events": c.vad_events} if update.for_live_streams else None
        return out.send(events.Updated([h.phrase for h in c.hotwords], [w.to_wire() for w in c.watch], settings))

    def endpointing_changed(self) -> Output:
        """The segmenter follows the stream's new endpointing (live streams)."""
        return Output()

    # ---- decode requests ----------------------------------------------
    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def request(self, kind: str, audio, language: str | None, stream: str | None) -> DecodeRequest:
        # Watch phrases steer the decode as hotwords do; only hotwords correct the text.
        steering = tuple(dict.fromkeys(prompt_order(self.config.hotwords) + prompt_terms(self.config.watch)))
        final = kind == "final"
        return DecodeRequest(audio=audio, kind=kind, language=language, hotwords=steering,
                             word_timestamps=final and (self.config.word_timestamps or self.config.diarize),
                             stream=stream, speaker_embedding=final and self.config.diarize)

    def text_work(self) -> TextWork:
        c = self.config
        return TextWork(c.hotwords, c.watch, c.itn, c.itn_partials, c.redact)

    def final_job(self, ended: SpeechEnded | Paused, language: str | None, speculative: bool = False) -> DecodeJob:
        """The final decode of an ended utterance; a speculative one (of a
        Paused) is expected only once its endpoint fires (expect_final)."""
        # A speculation names no stream: engines keep a stream's state (FunASR's
        # partial caches) past it, as speech may come back.
        request = self.request("final", ended.audio, language, None if speculative else f"{self.id}/{ended.utterance}")
        job = DecodeJob(self.id, ended.utterance, self.next_seq(), request, ended.start_sample, ended.end_sample,
                        ended.audio_start, ended.reason, background=self.background,
                        text=self.text_work(), channel=self.channel, speculative=speculative)
        if not speculative:
            self.expect_final(job)
        return job

    def expect_final(self, job: DecodeJob) -> None:
        """The utterance ended: its final is this job's result, delivered in utterance order."""
        self._finals_pending[job.utterance] = job
        self._order.append(job.utterance)
        self.utterances = max(self.utterances, job.utterance + 1)

    def is_expected(self, job: DecodeJob) -> bool:
        return self._finals_pending.get(job.utterance) is job

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
                             hotwords=prompt_order(job.text.hotwords), error=error)
        if self.speakers is not None and result is not None and "speaker" in result.extra:
            final = self._who_spoke(final, result.extra["speaker"], offset)
        out = Output()
        if error:
            out.send(events.Error(ErrorCode.DECODE_FAILED, f"utterance {job.utterance} could not be decoded: {error}"))
        found = recognized.occurrences if recognized else ()
        self._finals_ready[job.utterance] = [*self.alerts.on_final(found, job.utterance, ms(job.end_sample)), final]
        return self._release(out)

    def _who_spoke(self, final: events.Final, voice: dict, offset_ms: int) -> events.Final:
        """The final's speaker; where its voice changes part-way, its turns
        (split between words), each labelled."""
        duration = len(voice["windows"]) and voice["windows"][-1][1]
        parts = turns(voice["windows"], voice["embedding"], max(duration, final.end_ms - offset_ms))
        words = final.words or ()
        labelled = []
        for n, part in enumerate(parts):
            start, end = offset_ms + part.start_ms, offset_ms + part.end_ms
            mine = [w for w in words if start <= (w.start_ms + w.end_ms) // 2 < end or (n == len(parts) - 1 and
                                                                                      (w.start_ms + w.end_ms) // 2 >= end)]
            if len(parts) > 1 and not mine:
                continue          # a side without words says nothing: no turn
            speaker = self.speakers.assign(part.embedding, (part.end_ms - part.start_ms) / 1000)
            if self.background:      # a file: kept for clustering the whole file at its end
                self.voices.append((final.utterance, start, end, part.embedding))
            labelled.append({"speaker": speaker, "start_ms": max(start, final.start_ms) if n else final.start_ms,
                             "end_ms": end if n < len(parts) - 1 else final.end_ms,
                             "text": join_units([w.word.strip() for w in mine])})
        if not labelled:
            return final
        if len(labelled) == 1 or len({t["speaker"] for t in labelled}) == 1:
            return dataclasses.replace(final, speaker=labelled[0]["speaker"])
        return dataclasses.replace(final, speaker=labelled[0]["speaker"], turns=tuple(labelled))

    def skip(self, utterance: int) -> Output:
        """An utterance that will have no final (cleared): later ones need not wait for it."""
        self._finals_ready[utterance] = []
        self._order.append(utterance)
        return self._release(Output())

    def _release(self, out: Output) -> Output:
        while self._order and self._order[0] in self._finals_ready:
            utterance = self._order.popleft()
            ready = self._finals_ready.pop(utterance)
            out.send(*ready)
            # The countdown reads finals in utterance order: its clock runs from one to the next.
            if self.countdown and ready and isinstance(ready[-1], events.Final):
                final = ready[-1]
                out.send(*self.countdown.on_final(final.raw_text, utterance, final.end_ms))
            self.delivered(utterance)
        return out

    def delivered(self, utterance: int) -> None:
        """An utterance's final is out (subclasses forget what they kept for it)."""
