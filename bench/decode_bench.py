"""Final decodes alone: each shared dev clip decoded as one final, the way the
server decodes an utterance, with each beam size and CPU thread count asked for.

    python -m bench.decode_bench [--model whisper-base] [--languages en zh] [--beams 5 1] [--threads 1 2]

Prints WER (English) or CER (Chinese, Japanese) and seconds per clip for each
setting: the ground for choosing greedy or beam search for finals, and the
threads a model worker gets. Numbers, not assertions."""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from lingting_testkit.corpus import audio_dir, dev_clips, error_rate, read_wav


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.decode_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="whisper-base")
    p.add_argument("--languages", nargs="+", default=["en", "zh"])
    p.add_argument("--beams", type=int, nargs="+", default=[5, 1])
    p.add_argument("--threads", type=int, nargs="+", default=[1])
    args = p.parse_args()
    if audio_dir() is None:
        print("speech corpus not found: set LINGTING_AUDIO_DIR or put it at ../shared/audio", file=sys.stderr)
        return 2
    from lingting_models import resolve_model
    from lingting_server.wire.recognition import DecodeRequest
    from lingting_server.engines.whisper import WhisperEngine, WhisperOptions

    spec = resolve_model(args.model)
    print("model | language | clips | threads | beam | error rate | s per clip")
    for threads in args.threads:
        for beam in args.beams:
            engine = WhisperEngine(spec.path, "cpu", 0, WhisperOptions(final_beam_size=beam, cpu_threads=threads),
                                   name=spec.name)
            for language in args.languages:
                if language not in engine.languages:
                    continue
                clips = dev_clips(language)
                audio = [read_wav(c.path)[0].astype(np.float32) / 32768 for c in clips]
                engine.decode([DecodeRequest(audio[0], "final", language)])        # warm-up
                started = time.perf_counter()
                texts = [engine.decode([DecodeRequest(a, "final", language, word_timestamps=True)])[0].text
                         for a in audio]
                seconds = (time.perf_counter() - started) / len(clips)
                rate = error_rate([c.transcript for c in clips], texts, language)
                print(f"{spec.name} | {language} | {len(clips)} | {threads} | {beam} | {rate:.4f} | {seconds:.3f}",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
