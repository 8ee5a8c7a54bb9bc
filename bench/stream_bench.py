"""Streaming benchmark: N concurrent clients stream real speech in real time.

    python -m bench.stream_bench --streams 1 2 4 8 [--batch-sizes 8 1] [--model whisper-base] [--same]
        [--endpointing captions|MS|JSON] [--server-arg=--model-workers=1 ...]

Starts its own server per batch size (or uses --url), streams English dev clips
from the shared corpus (joined with 1 s pauses, rotated per client) and reports
WER, first-partial latency, final latency (end of utterance audio -> final
received), partial cadence, caption lag, lost utterances, finals that look
hallucinated (a repeated tail, or words no audio backs), and server CPU/RSS.
Prints a table and writes JSON. Numbers, not assertions."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import urllib.request
import sys
import time
from pathlib import Path

import numpy as np

from bench import REPO
from lingting_client import LingtingClient, StreamOptions
from lingting_server.wire.recognition import DecodeResult, Word
from lingting_server.engines.guard import looks_hallucinated
from lingting_testkit.corpus import audio_dir, dev_clips, error_rate, read_wav
from lingting_testkit.servers import start_server, stop_server  # the tests' own server launcher


def hallucinated(final: dict) -> bool:
    """The server's own guard, on a final as the client got it (times are the stream's)."""
    words = [Word(w["word"], w["start_ms"], w["end_ms"], w.get("probability", 0)) for w in final.get("words") or []]
    return looks_hallucinated(DecodeResult(final["text"], final.get("language"), words or None), final["end_ms"])


def playlist(offset: int, seconds: float) -> tuple[bytes, str]:
    clips = dev_clips("en")
    clips = clips[offset % len(clips):] + clips[:offset % len(clips)]
    pieces, words, total = [], [], 0.0
    gap = np.zeros(16000, np.int16)
    for clip in clips:
        if total >= seconds:
            break
        data, _ = read_wav(clip.path)
        pieces += [data, gap]
        words.append(clip.transcript)
        total += len(data) / 16000 + 1
    return np.concatenate(pieces).tobytes(), " ".join(words)


def endpointing_option(text: str):
    try:
        return json.loads(text)       # 500, false, {"speculative": false}
    except ValueError:
        return text                   # a preset's name


def pct(values, q):
    return round(float(np.percentile(values, q)), 3) if values else None


async def one_client(url: str, index: int, seconds: float, language: str = "en", same: bool = False,
                     endpointing=None) -> dict:
    pcm, reference = playlist(0 if same else index * 5, seconds)
    client = LingtingClient(url)
    events = [e async for e in client.stream(pcm, StreamOptions(language=language, speed=1.0,
                                                                endpointing=endpointing))]
    t0 = client.audio_started_at
    finals = [e for e in events if e["type"] == "final"]
    started = {e["utterance"]: e for e in events if e["type"] == "speech_started"}
    partials: dict[int, list] = {}
    for e in events:
        if e["type"] == "partial":
            partials.setdefault(e["utterance"], []).append(e)
    first_partial = [ps[0]["received_at"] - (t0 + started[u]["start_ms"] / 1000)
                     for u, ps in partials.items() if u in started]
    cadence = [b["received_at"] - a["received_at"] for ps in partials.values() for a, b in zip(ps, ps[1:])]
    return {
        "reference": reference,
        "hypothesis": " ".join(f["text"] for f in finals if f["text"]),
        "final_latency": [f["received_at"] - (t0 + f["end_ms"] / 1000) for f in finals if f["reason"] != "stop"],
        "first_partial": first_partial,
        "cadence": cadence,
        "partial_lag": [p["received_at"] - (t0 + p["end_ms"] / 1000) for ps in partials.values() for p in ps],
        "lost": len(started) - len(finals),
        "tail": events[-1]["received_at"] - (t0 + len(pcm) / 32000),
        "utterances": len(finals),
        "hallucinated": sum(1 for f in finals if f["text"] and hallucinated(f)),
        "audio_s": len(pcm) / 32000,
    }


async def sample_process(pid: int, stop: asyncio.Event) -> dict:
    """CPU and memory of the server and its model worker together."""
    import psutil
    procs = [psutil.Process(pid), *psutil.Process(pid).children()]
    cpu_of = lambda: sum(sum(p.cpu_times()[:2]) for p in procs)    # noqa: E731
    cpu0, t0, rss = cpu_of(), time.monotonic(), []
    while not stop.is_set():
        rss.append(sum(p.memory_info().rss for p in procs))
        try:
            await asyncio.wait_for(stop.wait(), 0.5)
        except asyncio.TimeoutError:
            pass
    cpu = cpu_of() - cpu0
    return {"cpu_cores": round(cpu / (time.monotonic() - t0), 2),
            "rss_mb_start": round(rss[0] / 2**20), "rss_mb_peak": round(max(rss) / 2**20)}


async def run_level(url: str, pid: int | None, n: int, seconds: float, language: str = "en",
                    same: bool = False, endpointing=None) -> dict:
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_process(pid, stop)) if pid else None
    results = await asyncio.gather(*(one_client(url, i, seconds, language, same, endpointing) for i in range(n)))
    stop.set()
    server = await sampler if sampler else {}
    merged = {k: [v for r in results for v in r[k]] for k in ("final_latency", "first_partial", "cadence", "partial_lag")}
    return {
        "streams": n,
        "wer": round(error_rate([r["reference"] for r in results], [r["hypothesis"] for r in results], "en"), 4),
        "final_latency_p50": pct(merged["final_latency"], 50), "final_latency_p95": pct(merged["final_latency"], 95),
        "first_partial_p50": pct(merged["first_partial"], 50), "first_partial_p95": pct(merged["first_partial"], 95),
        "partial_cadence_p50": pct(merged["cadence"], 50),
        "partial_lag_p95": pct(merged["partial_lag"], 95),
        "utterances": sum(r["utterances"] for r in results), "lost": sum(r["lost"] for r in results),
        "hallucinated": sum(r["hallucinated"] for r in results),
        "stopped_after_audio_end_p95": pct([r["tail"] for r in results], 95),
        **server,
    }


COLUMNS = ["streams", "wer", "first_partial_p50", "first_partial_p95", "final_latency_p50", "final_latency_p95",
           "partial_cadence_p50", "partial_lag_p95", "utterances", "lost", "hallucinated", "stopped_after_audio_end_p95",
           "cpu_cores", "rss_mb_peak"]


def print_table(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    print(" | ".join(COLUMNS))
    for row in rows:
        print(" | ".join(str(row.get(c, "")) for c in COLUMNS), flush=True)


async def main_async(args) -> dict:
    report = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "platform": platform.platform()},
              "model": args.model, "seconds_per_stream": args.seconds, "same_clips": args.same,
              "endpointing": args.endpointing, "server_args": args.server_arg, "runs": []}
    for batch in (args.batch_sizes if not args.url else [None]):
        server = None
        if args.url:
            url, pid = args.url, None
            http = url.replace("ws", "http", 1).split("/v1/")[0]
            args.model = json.loads(urllib.request.urlopen(http + "/health").read())["model"]
            report["model"] = args.model
        else:
            server = start_server("--model", args.model, "--max-batch-size", str(batch),
                                  "--max-connections", str(max(args.streams) + 4), *args.server_arg)
            url, pid = server.url, server.process.pid
        rows = []
        try:
            for n in args.streams:
                rows.append(await run_level(url, pid, n, args.seconds, args.language, args.same, args.endpointing))
                print_table(f"model {args.model}, max batch size {batch}", rows[-1:])
        finally:
            if server:
                health = json.loads(urllib.request.urlopen(server.http + "/health").read())
                stop_server(server)
        report["runs"].append({"max_batch_size": batch, "rows": rows,
                               "batching": health.get("batching") if server else None})
        print_table(f"== model {args.model}, max batch size {batch}", rows)
    return report


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.stream_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 1],
                   help="server --max-batch-size values to compare (1 = batching off)")
    p.add_argument("--seconds", type=float, default=60, help="audio per stream (default: 60)")
    p.add_argument("--model", default="whisper-base")
    p.add_argument("--url", help="benchmark a running server instead of starting one")
    p.add_argument("--language", default="en",
                   help="language the streams ask for (default: en; e.g. zh for a Mandarin-only FunASR server)")
    p.add_argument("--same", action="store_true",
                   help="worst case: every stream plays the same clips, started together (all finals due at once)")
    p.add_argument("--endpointing", type=endpointing_option, default=None,
                   help="the streams' endpointing: ms of silence, a preset (captions, agent_assist, callouts), "
                        "false, or a JSON map, e.g. '{\"speculative\": false}' (default: the server's)")
    p.add_argument("--server-arg", action="append", default=[],
                   help="a flag for the server this bench starts, e.g. --server-arg=--model-workers=1; repeat for more")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = p.parse_args()
    if audio_dir() is None:
        print("speech corpus not found: set LINGTING_AUDIO_DIR or put it at ../shared/audio", file=sys.stderr)
        return 2
    report = asyncio.run(main_async(args))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"stream_bench-{args.model}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
