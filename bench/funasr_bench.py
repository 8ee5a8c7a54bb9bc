"""Cost of the funasr engine per 600 ms chunk for 1, 2, 4, 8 streams batched
together, and of finals, on random-weight Paraformers at the published size
(streaming: 50 + 16 blocks of 512; offline the same with SANMEncoder). Random
weights cost what trained ones do: same shapes, same operations.

    .venv/bin/python -m bench.funasr_bench [--size real] [--batches 1 2 4 8] [--models DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from lingting_testkit.corpus import dev_clips, read_wav

CHUNK = 9600


def rss_mb() -> float:
    import psutil
    return psutil.Process().memory_info().rss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description="funasr engine: cost per chunk and per final")
    parser.add_argument("--size", choices=("tiny", "real"), default="real")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--rounds", type=int, default=8, help="timed chunks per stream (default: 8)")
    parser.add_argument("--models", default=None, help="reuse model dirs built here (default: a temp dir)")
    args = parser.parse_args()

    import torch
    from lingting_testkit.funasr_checkpoints import build_pair
    from lingting_server.wire.recognition import DecodeRequest
    from lingting_server.engines.funasr_engine import FunasrEngine

    root = Path(args.models or tempfile.mkdtemp(prefix="lingting-funasr-"))
    online, offline = root / f"paraformer-online-{args.size}", root / f"paraformer-offline-{args.size}"
    if not (online / "model.pt").exists() or not (offline / "model.pt").exists():
        started = time.perf_counter()
        online, offline = build_pair(root, args.size)
        print(f"built random-weight checkpoints in {root} in {time.perf_counter() - started:.1f} s")
    before = rss_mb()
    started = time.perf_counter()
    engine = FunasrEngine(str(offline), str(online))
    params = sum(p.numel() for p in engine._online.model.parameters()) / 1e6
    print(f"loaded in {time.perf_counter() - started:.1f} s; streaming model {params:.0f} M parameters; "
          f"RSS +{rss_mb() - before:.0f} MB; torch threads {torch.get_num_threads()}, cores {os.cpu_count()}")

    clips = [read_wav(c.path)[0].astype(np.float32) / 32768 for c in dev_clips("en", include_long=True)]
    audio = np.concatenate(clips)
    warm = 5                     # chunks before timing: the encoder look-back (4 chunks) is full
    need = (warm + args.rounds) * CHUNK
    print(f"\npartials: one 600 ms chunk of every stream per step, after {warm} warm-up chunks")
    print("streams | ms per step (median) | ms per stream-chunk | RTF per stream | streams 2 cores keep up with")
    for batch in args.batches:
        engine._partials.streams.clear()
        streams = [audio[(i * 7 * CHUNK) % (len(audio) - need):][:need] for i in range(batch)]
        for k in range(1, warm + 1):
            engine.decode([DecodeRequest(s[:k * CHUNK], "partial", stream=f"b{i}") for i, s in enumerate(streams)])
        times = []
        for k in range(warm + 1, warm + args.rounds + 1):
            started = time.perf_counter()
            engine.decode([DecodeRequest(s[:k * CHUNK], "partial", stream=f"b{i}") for i, s in enumerate(streams)])
            times.append(time.perf_counter() - started)
        step = statistics.median(times)
        per = step / batch
        print(f"{batch:7d} | {step * 1000:20.0f} | {per * 1000:19.0f} | {per / 0.6:14.3f} | {int(0.6 / per):d}")
    cache_mb = sum(t.numel() * t.element_size() for s in engine._partials.streams.values()
                   for t in _tensors(s.cache)) / 2**20 / max(1, len(engine._partials.streams))
    print(f"caches per stream: {cache_mb:.1f} MB")

    print("\nfinals: 5 s utterances, offline model")
    print("batch | s per batch | s per utterance | RTF")
    utterance = audio[:5 * 16000]
    for batch in args.batches:
        requests = [DecodeRequest(np.roll(utterance, i * 997), "final") for i in range(batch)]
        engine.decode(requests)
        started = time.perf_counter()
        engine.decode(requests)
        took = time.perf_counter() - started
        print(f"{batch:5d} | {took:11.2f} | {took / batch:15.3f} | {took / batch / 5:.3f}")
    print(f"\nRSS {rss_mb():.0f} MB")


def _tensors(value):
    import torch
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors(v)
    elif isinstance(value, list):
        for v in value:
            yield from _tensors(v)


if __name__ == "__main__":
    main()
