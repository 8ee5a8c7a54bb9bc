"""How well FSMN-VAD's speech regions agree with the webrtcvad segmenter's on
the same audio, and what each costs (tests/test_vad_stage.py, bench/vad_bench.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

RATE = 16000


@dataclass
class Agreement:
    webrtc: list[tuple[int, int]]       # speech spans in ms (onset .. end of the last voiced frame)
    fsmn: list[tuple[int, int]]
    iou: float                          # intersection over union of the speech time
    onset_ms: int                       # first onset, fsmn minus webrtc
    webrtc_s: float                     # seconds each stage took
    fsmn_s: float


def webrtc_spans(audio: np.ndarray) -> list[tuple[int, int]]:
    from lingting_server.streaming.segmenter import Segmenter, SpeechEnded
    segmenter = Segmenter()
    events = []
    for i in range(0, len(audio), 1600):            # 100 ms frames, like a live client
        events += segmenter.feed(audio[i:i + 1600])
    events += segmenter.flush("stop")
    return [(e.start_sample * 1000 // RATE, e.end_sample * 1000 // RATE) for e in events
            if isinstance(e, SpeechEnded)]


def _covered(spans: list[tuple[int, int]], total_ms: int) -> np.ndarray:
    mask = np.zeros(total_ms + 1, bool)
    for start, end in spans:
        mask[max(0, start):min(total_ms, end)] = True
    return mask


def compare(audio: np.ndarray, vad) -> Agreement:
    started = time.perf_counter()
    webrtc = webrtc_spans(audio)
    middle = time.perf_counter()
    fsmn = vad.segments(audio)
    done = time.perf_counter()
    total = len(audio) * 1000 // RATE
    a, b = _covered(webrtc, total), _covered(fsmn, total)
    union = (a | b).sum()
    return Agreement(webrtc, fsmn, float((a & b).sum() / union) if union else 1.0,
                     (fsmn[0][0] - webrtc[0][0]) if webrtc and fsmn else 0, middle - started, done - middle)
