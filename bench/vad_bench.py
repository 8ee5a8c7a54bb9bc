"""FSMN-VAD (the optional second stage) against the webrtcvad segmenter on
the real speech corpus: how well their speech regions agree, and what each
costs.

    .venv/bin/python -m bench.vad_bench [--languages en zh ja] [--long]
    .venv/bin/python -m bench.vad_bench --noise
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from lingting_testkit.corpus import dev_clips, read_wav
from lingting_testkit.vad_agreement import RATE, compare


def noises(seconds: float = 1.5, seed: int = 0) -> dict[str, np.ndarray]:
    """Sounds that are not speech, each between two seconds of silence."""
    rng = np.random.default_rng(seed)
    n = int(RATE * seconds)
    t = np.arange(n) / RATE
    hum = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 12)) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))
    brown = np.cumsum(rng.standard_normal(n))
    clicks = np.zeros(n)
    for at in rng.integers(0, n - 200, 12):          # keyboard-like impulses
        clicks[at:at + 200] += rng.standard_normal(200) * np.exp(-np.arange(200) / 30)
    sounds = {"harmonic hum": hum, "white noise": rng.standard_normal(n), "brown noise": brown - brown.mean(),
              "clicks": clicks}
    gap = np.zeros(RATE * 2)
    return {name: np.concatenate([gap, 0.3 * x / np.max(np.abs(x)), gap]).astype(np.float32)
            for name, x in sounds.items()}


def noise_check() -> None:
    """What Whisper makes of the finals webrtcvad cuts from noise, with and without the FSMN-VAD check."""
    from lingting_server.wire.recognition import DecodeRequest
    from lingting_server.engines.loader import WhisperLoad, WorkerOptions, load_engine
    from lingting_server.engines.vad_stage import VadCheckedEngine
    from lingting_server.streaming.segmenter import Segmenter, SpeechEnded
    whisper = load_engine(WorkerOptions("whisper", None, "cpu", WhisperLoad()))
    checked = VadCheckedEngine(whisper)
    print("sound | finals webrtcvad cut | with text: Whisper alone | with the FSMN-VAD check | Whisper said")
    for name, audio in noises().items():
        segmenter = Segmenter()
        events = segmenter.feed(audio) + segmenter.flush("stop")
        requests = [DecodeRequest(e.audio, "final", "en") for e in events if isinstance(e, SpeechEnded)]
        alone = [r.text for r in whisper.decode(requests)] if requests else []
        kept = [r.text for r in checked.decode(requests)] if requests else []
        print(f"{name} | {len(requests)} | {sum(map(bool, alone))} | {sum(map(bool, kept))} | {alone}")
    from lingting_testkit.corpus import error_rate
    print("\nspeech | finals | error rate Whisper alone | with the check (trimmed) | decode s alone | checked")
    for language in ("en", "zh"):
        clips = dev_clips(language)
        references, plain, trimmed, took = [], [], [], [0.0, 0.0]
        for clip in clips:
            segmenter = Segmenter()
            audio = read_wav(clip.path)[0].astype(np.float32) / 32768
            events = segmenter.feed(audio) + segmenter.flush("stop")
            requests = [DecodeRequest(e.audio, "final", language) for e in events if isinstance(e, SpeechEnded)]
            for i, engine in enumerate((whisper, checked)):
                started = time.perf_counter()
                texts = " ".join(r.text for r in engine.decode(requests))
                took[i] += time.perf_counter() - started
                (plain if i == 0 else trimmed).append(texts)
            references.append(clip.transcript)
        print(f"{language} ({len(clips)} clips) | {error_rate(references, plain, language):.4f} | "
              f"{error_rate(references, trimmed, language):.4f} | {took[0]:.1f} | {took[1]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description="FSMN-VAD vs the webrtcvad segmenter on the corpus")
    parser.add_argument("--languages", nargs="+", default=["en", "zh", "ja"])
    parser.add_argument("--long", action="store_true", help="include the long clips")
    parser.add_argument("--noise", action="store_true",
                        help="instead: Whisper on noise that webrtcvad lets through, with and without the check")
    args = parser.parse_args()
    if args.noise:
        return noise_check()
    from lingting_server.engines.vad_stage import FsmnVad
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
