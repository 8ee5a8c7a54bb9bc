"""History and file benchmarks: numbers, not assertions.

    python -m bench.history_bench [--utterances 100000] [--files long/en_ljspeech_LJ001-0001_0016.wav]
                                  [--repeat 3] [--long-minutes 60] [--url ws://...]

1. Offline transcription speed: each file through the server's offline mode
   (its own server unless --url), reported as audio seconds per wall second,
   with WER against the manifest. --long-minutes N also sends an N-minute FLAC
   (the long corpus file looped) and reports the server's peak RSS during it.
2. History query time with N stored utterances (built in a temp SQLite file from
   the corpus transcripts): list, phrase search (FTS5 trigram), short-query
   scan, one session, SRT export; and the cost of storing one final durably."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import REPO
from lingting_client import FileOptions, LingtingClient
from lingting_server.text.export import render
from lingting_server.services.history.store import HistoryStore
from lingting_testkit.corpus import audio_dir, encode_audio, error_rate, load_manifest
from lingting_testkit.servers import start_server, stop_server


def pct(values, q):
    return round(float(np.percentile(values, q)) * 1000, 2)


async def offline_speed(url: str, files: list[str], repeat: int) -> list[dict]:
    rows = []
    manifest = {c.file: c for c in load_manifest()}
    for name in files:
        clip = manifest[name]
        for run in range(repeat):
            started = time.perf_counter()
            events = [e async for e in LingtingClient(url).transcribe(str(clip.path), FileOptions(language=clip.language))]
            wall = time.perf_counter() - started
            text = " ".join(e["text"] for e in events if e["type"] == "final")
            rows.append({"file": name, "run": run, "audio_s": clip.seconds, "wall_s": round(wall, 2),
                         "audio_s_per_s": round(clip.seconds / wall, 1),
                         "utterances": sum(e["type"] == "final" for e in events),
                         "wer": round(error_rate([clip.transcript], [text], clip.language), 4)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def looped_flac(minutes: float, directory: str) -> tuple[str, float, str]:
    """The long corpus file repeated to `minutes`, as FLAC; (path, seconds, reference)."""
    clip = next(c for c in load_manifest() if c.file == "long/en_ljspeech_LJ001-0001_0016.wav")
    path = str(Path(directory) / f"looped-{minutes:g}min.flac")
    loops = max(1, round(minutes * 60 / clip.seconds))
    encode_audio([clip.path] * loops, path, "flac")
    return path, loops * clip.seconds, " ".join([clip.transcript] * loops)


async def long_file(url: str, pid: int | None, minutes: float) -> dict:
    import os

    import psutil
    with tempfile.TemporaryDirectory() as tmp:
        path, seconds, reference = looped_flac(minutes, tmp)
        process = psutil.Process(pid) if pid else None
        rss = [process.memory_info().rss] if process else []
        started = time.perf_counter()
        texts, last = [], time.perf_counter()
        async for event in LingtingClient(url).transcribe(path, FileOptions(language="en")):
            if event["type"] == "final":
                texts.append(event["text"])
            if process and time.perf_counter() - last > 0.5:
                rss.append(process.memory_info().rss)
                last = time.perf_counter()
        wall = time.perf_counter() - started
        row = {"file": f"{minutes:g} min looped FLAC", "file_mb": round(os.path.getsize(path) / 2**20, 1),
               "audio_s": round(seconds, 1), "wall_s": round(wall, 1),
               "audio_s_per_s": round(seconds / wall, 1), "utterances": len(texts),
               "wer": round(error_rate([reference], [" ".join(texts)], "en"), 4)}
        if rss:
            row |= {"server_rss_mb_start": round(rss[0] / 2**20), "server_rss_mb_peak": round(max(rss) / 2**20)}
        print(json.dumps(row), flush=True)
        return row


def fill(store: HistoryStore, utterances: int, per_session: int = 100) -> None:
    sentences = [c.transcript for c in load_manifest() if c.language in ("en", "zh")]
    rng = random.Random(7)
    db = store._db()
    now = time.time() - utterances
    db.execute("BEGIN")
    for n in range(utterances // per_session):
        sid = f"bench{n:06d}"
        db.execute("INSERT INTO sessions (id, kind, started_at, ended_at, status, audio_ms) VALUES (?, 'stream', ?, ?, 'stopped', ?)",
                   (sid, now + n * per_session, now + n * per_session + 600, per_session * 5000))
        for i in range(per_session):
            text = rng.choice(sentences)
            db.execute("INSERT INTO utterances (session_id, idx, start_ms, end_ms, text, raw_text, created_at)"
                       " VALUES (?, ?, ?, ?, ?, ?, ?)", (sid, i, i * 5000, i * 5000 + 4000, text, text, now))
    db.execute("COMMIT")


def timed(fn, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def query_times(utterances: int, runs: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        store = HistoryStore(Path(tmp) / "history.sqlite3")
        t = time.perf_counter()
        fill(store, utterances)
        build = time.perf_counter() - t
        middle = f"bench{utterances // 200:06d}"
        cases = {
            "list 50 newest sessions": lambda: store.list_sessions(50),
            "search phrase 'ask not what your country' (FTS)": lambda: store.search("ask not what your country"),
            "search common word 'the' (FTS, 50 hits)": lambda: store.search("the"),
            "search rare phrase, no hit (FTS)": lambda: store.search("zebra crossing quartz"),
            "search 2 chars '模型' (scan, stops at 50 hits)": lambda: store.search("模型"),
            "search 2 chars, no hit (full scan)": lambda: store.search("鲸鱼"),
            "get one session (100 utterances)": lambda: store.get_session(middle),
            "export one session as SRT": lambda: render(store.get_session(middle), "srt"),
        }
        result = {"utterances": utterances, "build_s": round(build, 1),
                  "db_mb": round(store.size_bytes() / 2**20, 1), "queries_ms": {}}
        for name, fn in cases.items():
            fn()   # warm the page cache, as a running server would be
            times = timed(fn, runs)
            result["queries_ms"][name] = {"p50": pct(times, 50), "p95": pct(times, 95)}
        store.open_session("durable", "stream")
        final = {"utterance": 0, "start_ms": 0, "end_ms": 1000, "text": "one final", "raw_text": "one final"}
        commits = []
        for i in range(200):
            final["utterance"] = i
            t = time.perf_counter()
            store.add_utterance("durable", final)
            commits.append(time.perf_counter() - t)
        result["store_one_final_ms"] = {"p50": pct(commits, 50), "p95": pct(commits, 95)}
        store.close()
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--utterances", type=int, default=100_000)
    p.add_argument("--runs", type=int, default=20, help="runs per history query")
    p.add_argument("--files", nargs="*", default=["long/en_ljspeech_LJ001-0001_0016.wav"])
    p.add_argument("--repeat", type=int, default=3, help="runs per file")
    p.add_argument("--long-minutes", type=float, default=0, help="also transcribe a looped file this long")
    p.add_argument("--url", help="use a running server instead of starting one")
    p.add_argument("--server-args", nargs="*", default=[], help="extra args for the server this starts")
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "history_bench.json"))
    args = p.parse_args()
    report = {}
    if (args.files or args.long_minutes) and audio_dir() is None:
        print("shared corpus not found (LINGTING_AUDIO_DIR or ../shared/audio): skipping offline speed")
    elif args.files or args.long_minutes:
        server = None if args.url else start_server(*args.server_args)
        try:
            report["offline"] = asyncio.run(offline_speed(args.url or server.url, args.files, args.repeat))
            if args.long_minutes:
                report["offline"].append(asyncio.run(long_file(args.url or server.url,
                                                               server.process.pid if server else None,
                                                               args.long_minutes)))
        finally:
            if server:
                stop_server(server)
    if args.utterances:
        report["history"] = query_times(args.utterances, args.runs)
        print(json.dumps(report["history"], indent=2, ensure_ascii=False))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2, ensure_ascii=False))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
