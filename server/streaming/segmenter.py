"""Incremental VAD and endpointing: 16 kHz samples in, utterance events out.

webrtcvad classifies 30 ms frames; hysteresis turns those flags into
utterances: speech starts once enough frames of a short window are voiced,
and ends after a run of trailing silence, at the maximum utterance length
(cut at the quietest recent pause), or when the client flushes.

Once the trailing silence reaches the tail kept after speech, the audio the
final would decode is known: Paused hands it out (a speculative final can be
decoded while the endpoint is still awaited), Resumed says speech came back
first. The endpoint's silence can change mid-utterance (set_endpoint)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import webrtcvad
from ..wire.audio import MODEL_RATE
from ..wire.endpointing import EndpointConfig

RATE = MODEL_RATE


@dataclass(frozen=True)
class SpeechStarted:
    utterance: int
    start_sample: int        # onset: the first voiced frame


@dataclass(frozen=True)
class Paused:
    """Trailing silence reached the tail: `audio` is what the final will be if no speech comes back."""
    utterance: int
    start_sample: int
    end_sample: int          # end of the last voiced audio
    audio: np.ndarray
    audio_start: int
    reason: str = "silence"  # what ends it, if nothing comes back


@dataclass(frozen=True)
class Resumed:
    """Speech came back after a Paused: that audio is not the final's."""
    utterance: int


@dataclass(frozen=True)
class SpeechEnded:
    utterance: int
    start_sample: int
    end_sample: int          # end of the last voiced audio (or the cut)
    audio: np.ndarray        # what the recognizer should decode
    audio_start: int         # where `audio` begins (before the onset: pre-roll)
    reason: str              # "silence" | "max_length" | "flush" | "stop"


class UtteranceNumbers:
    """Hands out utterance indices; the channels of one stream share one, so
    an index names one utterance of the stream whatever channel spoke it."""

    def __init__(self):
        self.taken = 0

    def take(self) -> int:
        self.taken += 1
        return self.taken - 1


class Segmenter:
    def __init__(self, config: EndpointConfig | None = None, numbers: UtteranceNumbers | None = None,
                 pauses: bool = False):
        self.config = config or EndpointConfig()
        self.pauses = pauses                         # announce Paused / Resumed
        self.config.validate()
        c = self.config
        self._vad = webrtcvad.Vad(c.vad_aggressiveness)
        self._frame = RATE * c.frame_ms // 1000
        self._pending = np.zeros(0, np.float32)      # samples short of a whole frame
        self._clock = 0                              # samples classified so far
        self._window = deque(maxlen=max(1, c.start_window_ms // c.frame_ms))
        self._history: deque[np.ndarray] = deque(maxlen=(c.preroll_ms + c.start_window_ms) // c.frame_ms + 1)
        self._numbers = numbers or UtteranceNumbers()
        self._index = -1                             # the open (or the last) utterance's index
        # Open utterance: frames and their voiced flags.
        self.in_speech = False
        self._frames: list[np.ndarray] = []
        self._flags: list[bool] = []
        self._start = 0
        self._onset = 0
        self._last_voiced_end = 0
        self._paused = False
        self.endpoint_ms = c.silence_ms              # this utterance's endpoint (set_endpoint changes it)

    # ---- public API -------------------------------------------------
    @property
    def clock(self) -> int:
        return self._clock + len(self._pending)

    @property
    def utterance_index(self) -> int | None:
        """Index of the open utterance; None when none is open."""
        return self._index if self.in_speech else None

    def utterance_audio(self) -> np.ndarray:
        """Audio of the open utterance so far (for partial decodes)."""
        return np.concatenate(self._frames) if self._frames else np.zeros(0, np.float32)

    @property
    def utterance_start(self) -> int:
        """Where the open utterance's audio begins (pre-roll included)."""
        return self._start

    @property
    def trailing_silence_ms(self) -> int:
        """Silence since the last voiced frame (of the open utterance, or the last one)."""
        return (self.clock - self._last_voiced_end) * 1000 // RATE

    @property
    def last_voiced_end(self) -> int:
        return self._last_voiced_end

    def set_endpoint(self, silence_ms: int) -> list:
        """This utterance ends after `silence_ms` of trailing silence (0: none
        ends it); if that much has passed already, it ends now."""
        self.endpoint_ms = silence_ms
        if self.in_speech and silence_ms and self._silent_for(silence_ms):
            return [self._close_on_silence()]
        return []

    def _silent_for(self, ms: int) -> bool:
        return self._clock - self._last_voiced_end >= ms * RATE // 1000

    def set_vad_aggressiveness(self, mode: int) -> None:
        self._vad.set_mode(mode)

    def feed(self, samples: np.ndarray) -> list:
        events: list = []
        buf = np.concatenate([self._pending, samples]) if len(self._pending) else samples
        n = len(buf) // self._frame * self._frame
        for i in range(0, n, self._frame):
            events.extend(self._on_frame(buf[i:i + self._frame]))
        self._pending = buf[n:].copy()
        return events

    def flush(self, reason: str = "flush") -> list:
        """Force an endpoint now; the partial frame counts as audio."""
        if not self.in_speech:
            self._clock += len(self._pending)
            self._pending = np.zeros(0, np.float32)
            return []
        if len(self._pending):
            self._frames.append(self._pending)
            self._flags.append(False)
            self._clock += len(self._pending)
            self._pending = np.zeros(0, np.float32)
        return [self._close(len(self._frames), reason, end_sample=self._clock)]

    def discard(self) -> int | None:
        """Drop the open utterance (its index), or None when none is open; the
        audio counts as heard, and the next start decision begins afresh."""
        self._clock += len(self._pending)
        self._pending = np.zeros(0, np.float32)
        self._history.clear()
        self._window.clear()
        if not self.in_speech:
            return None
        self.in_speech = False
        self._frames, self._flags = [], []
        return self._index

    # ---- internals --------------------------------------------------
    def _on_frame(self, frame: np.ndarray) -> list:
        pcm = (np.clip(frame, -1, 1) * 32767).astype("<i2").tobytes()
        voiced = self._vad.is_speech(pcm, RATE)
        self._clock += len(frame)
        if not self.in_speech:
            return self._while_silent(frame, voiced)
        self._frames.append(frame)
        self._flags.append(voiced)
        events: list = []
        if voiced:
            self._last_voiced_end = self._clock
            if self._paused:
                self._paused = False
                events.append(Resumed(self._index))
        c = self.config
        if self.endpoint_ms and self._silent_for(self.endpoint_ms):
            return events + [self._close_on_silence()]
        if self._clock - self._start >= c.max_utterance_ms * RATE // 1000:
            return events + self._cut_at_pause()
        if self.pauses and not self._paused and self._silent_for(c.tail_ms):
            self._paused = True
            events.append(Paused(self._index, self._onset, self._last_voiced_end, np.concatenate(self._frames),
                                 self._start))
        return events

    def _close_on_silence(self) -> SpeechEnded:
        """End at the last voiced frame plus the tail: what Paused handed out."""
        c = self.config
        keep = len(self._frames) - (self._clock - self._last_voiced_end) // self._frame + c.tail_ms // c.frame_ms
        return self._close(min(keep, len(self._frames)), "silence", end_sample=self._last_voiced_end)

    def _while_silent(self, frame: np.ndarray, voiced: bool) -> list:
        self._history.append(frame)
        self._window.append(voiced)
        window = self._window
        if len(window) < window.maxlen or sum(window) < self.config.start_ratio * window.maxlen:
            return []
        onset = self._clock - (len(window) - list(window).index(True)) * self._frame
        frames = list(self._history)
        self._history.clear()
        self._window.clear()
        return [self._open(frames, self._clock - sum(len(f) for f in frames), onset)]

    def _open(self, frames: list[np.ndarray], start: int, onset: int,
              flags: list[bool] | None = None) -> SpeechStarted:
        self.in_speech = True
        self._onset = onset
        self._frames = list(frames)
        self._flags = list(flags) if flags is not None else [True] * len(frames)
        self._start = start
        self._last_voiced_end = self._clock
        self._paused = False
        self.endpoint_ms = self.config.silence_ms
        self._index = self._numbers.take()
        return SpeechStarted(self._index, onset)

    def _close(self, keep: int, reason: str, end_sample: int) -> SpeechEnded:
        audio = np.concatenate(self._frames[:keep]) if keep else np.zeros(0, np.float32)
        event = SpeechEnded(self._index, self._onset, end_sample, audio, self._start, reason)
        # Frames after the cut are silence history for the next start decision.
        for frame in self._frames[keep:][-self._history.maxlen:]:
            self._history.append(frame)
        self.in_speech = False
        self._frames, self._flags = [], []
        return event

    def _cut_at_pause(self) -> list:
        """Max length reached: end at the longest pause of the last 3 s, keep
        the rest as the start of the next utterance, so no word is split."""
        c = self.config
        look = min(len(self._flags), 3000 // c.frame_ms)
        best_len, best_end, run = 0, len(self._flags), 0
        for i in range(len(self._flags) - look, len(self._flags)):
            run = 0 if self._flags[i] else run + 1
            if run > best_len:
                best_len, best_end = run, i + 1
        cut = best_end - best_len // 2 if best_len else len(self._flags)
        rest, rest_flags = self._frames[cut:], self._flags[cut:]
        cut_sample = self._start + sum(len(f) for f in self._frames[:cut])
        ended = self._close(cut, "max_length", end_sample=cut_sample)
        self._history.clear()
        started = self._open(rest, cut_sample, cut_sample, rest_flags)
        return [ended, started]
