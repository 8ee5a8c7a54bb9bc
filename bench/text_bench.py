"""Text benchmark: ITN, hotwords and alerts, on the shared corpus.

    python -m bench.text_bench [--runs 3] [--url ws://...]

Prints and writes JSON: English dev-clip WER with ITN on and off (normalized
scoring, and written-form scoring on the clips whose reference is written),
hotword hit rate on en/fw_hotwords_ComfyUI.wav with and without the hotword
(finals and partials), and alert latency on the countdown clip (audio time
of the number's word, from the final's word timings -> alert received)."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time

import numpy as np

from bench import REPO
from lingting_client import LingtingClient, StreamOptions
from lingting_testkit.corpus import audio_dir, dev_clips, error_rate, load_manifest, read_wav, written_words
from lingting_testkit.servers import start_server, stop_server

WRITTEN_REFERENCES = {  # clips whose reference is in written form
    "en/cheetah_test_en_norm_ITN.wav": None,
    "synthetic/en_itn_dates_money.wav": "On March 3, 2024, the invoice total was $1250.75.",
}


async def stream(url, path, **options):
    pcm = read_wav(path)[0].tobytes()
    client = LingtingClient(url)
    events = [e async for e in client.stream(pcm, StreamOptions(language="en", **options))]
    return events, client.audio_started_at


def finals(events, field="text"):
    return " ".join(e[field] for e in events if e["type"] == "final" and e[field])


async def itn_scores(url):
    clips = dev_clips("en")
    on = [await stream(url, c.path, speed=0, partials=False) for c in clips]
    refs = [c.transcript for c in clips]
    report = {"normalized_wer_itn_on": round(error_rate(refs, [finals(e) for e, _ in on], "en"), 4),
              "normalized_wer_itn_off": round(error_rate(refs, [finals(e, "raw_text") for e, _ in on], "en"), 4)}
    import jiwer
    manifest = {c.file: c for c in load_manifest()}
    root = audio_dir()
    written_refs, with_itn, without = [], [], []
    for file, reference in WRITTEN_REFERENCES.items():
        events, _ = await stream(url, root / file, speed=0, partials=False)
        written_refs.append(written_words(reference or manifest[file].transcript))
        with_itn.append(written_words(finals(events)))
        without.append(written_words(finals(events, "raw_text")))
    report["written_form_wer_itn_on"] = round(jiwer.wer(written_refs, with_itn), 4)
    report["written_form_wer_itn_off"] = round(jiwer.wer(written_refs, without), 4)
    report["written_form_outputs"] = with_itn
    return report


async def hotword_hits(url, runs):
    path = audio_dir() / "en" / "fw_hotwords_ComfyUI.wav"
    out = {}
    for label, hotwords in (("without", []), ("with", ["ComfyUI"])):
        final_hits, partial_hits, partial_total = 0, 0, 0
        for _ in range(runs):
            events, t0 = await stream(url, path, speed=1.0, hotwords=hotwords)
            final_hits += finals(events).count("ComfyUI")
            # Partials decoded after the word was first said (~1.2 s into the clip).
            late = [e for e in events if e["type"] == "partial" and e["end_ms"] >= 1500]
            partial_total += len(late)
            partial_hits += sum("ComfyUI" in e["text"] for e in late)
        out[label] = {"final_hit_rate": round(final_hits / (2 * runs), 3),
                      "partial_hit_rate": round(partial_hits / max(1, partial_total), 3),
                      "partials_considered": partial_total}
    return out


async def alert_latency(url, runs):
    pcm = read_wav(audio_dir() / "synthetic" / "en_countdown.wav")[0].tobytes()
    latencies, missing = [], 0
    for _ in range(runs):
        client = LingtingClient(url)
        options = StreamOptions(language="en", speed=1.0, watch=["<number>"], partial_interval_ms=300)
        events = [e async for e in client.stream(pcm, options)]
        start = client.audio_started_at
        words = [w for e in events if e["type"] == "final" for w in (e["words"] or [])]
        first = {}
        for e in events:
            if e["type"] == "alert" and e["status"] != "retracted":
                first.setdefault(e["number"], e)
        for number in range(10, 0, -1):
            alert = first.get(number)
            spoken = [w for w in words if re.sub(r"\W", "", w["word"]).lower() in
                      {str(number), ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"][number]}]
            if alert is None or not spoken:
                missing += 1
                continue
            latencies.append(alert["received_at"] - (start + spoken[0]["end_ms"] / 1000))
    return {"alert_latency_p50": round(float(np.percentile(latencies, 50)), 3) if latencies else None,
            "alert_latency_p95": round(float(np.percentile(latencies, 95)), 3) if latencies else None,
            "alerts_measured": len(latencies), "missing": missing}


async def main_async(args):
    server = None
    url = args.url
    if not url:
        server = start_server("--model", args.model)
        url = server.url
    try:
        return {"model": args.model, "itn": await itn_scores(url),
                "hotwords": await hotword_hits(url, args.runs), "alerts": await alert_latency(url, args.runs)}
    finally:
        if server:
            stop_server(server)


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.text_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--model", default="whisper-base")
    p.add_argument("--url")
    args = p.parse_args()
    if audio_dir() is None:
        print("speech corpus not found: set LINGTING_AUDIO_DIR or put it at ../shared/audio", file=sys.stderr)
        return 2
    report = asyncio.run(main_async(args))
    print(json.dumps(report, indent=2, ensure_ascii=False))
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"text_bench-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
