"""FSMN-VAD (the optional second stage) against the webrtcvad segmenter on
the real speech corpus: how well their speech regions agree, and what each
costs.

    .venv/bin/python -m bench.vad_bench [--languages en zh ja] [--long]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np

from bench.corpus import dev_clips, read_wav

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
    from server.streaming.segmenter import Segmenter, SpeechEnded
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


def main() -> None:
    parser = argparse.ArgumentParser(description="FSMN-VAD vs the webrtcvad segmenter on the corpus")
    parser.add_argument("--languages", nargs="+", default=["en", "zh", "ja"])
    parser.add_argument("--long", action="store_true", help="include the long clips")
    args = parser.parse_args()
    from server.engines.vad_stage import FsmnVad
    started = time.perf_counter()
    vad = FsmnVad()
    print(f"FSMN-VAD loaded in {time.perf_counter() - started:.2f} s")
    vad.segments(np.zeros(RATE, np.float32))
    audio_s = webrtc_s = fsmn_s = 0.0
    ious = []
    for language in args.languages:
        for clip in dev_clips(language, include_long=args.long):
            audio = read_wav(clip.path)[0].astype(np.float32) / 32768
            result = compare(audio, vad)
            audio_s += len(audio) / RATE
            webrtc_s += result.webrtc_s
            fsmn_s += result.fsmn_s
            ious.append(result.iou)
            print(f"{clip.file:45s} {len(audio) / RATE:6.1f} s  IoU {result.iou:.2f}  onset {result.onset_ms:+5d} ms  "
                  f"utterances webrtc {len(result.webrtc)} fsmn {len(result.fsmn)}")
    print(f"{len(ious)} clips, {audio_s:.0f} s of audio: IoU mean {np.mean(ious):.2f}, min {min(ious):.2f}; "
          f"RTF webrtcvad segmenter {webrtc_s / audio_s:.4f}, FSMN-VAD {fsmn_s / audio_s:.4f} "
          f"({fsmn_s / audio_s * 1000:.1f} ms per s of audio)")


if __name__ == "__main__":
    main()
