"""Alert benchmark: radio callouts streamed in real time, alerts scored.

    python -m bench.alert_bench [--model whisper-base] [--per-script 3] [--snr 15 | 10-20]
        [--match exact|sounds_like] [--no-steer] [--streams 2] [--url ws://...]

Callouts ("Hold. Hold. Hold.", "T minus twenty-one seconds", "Abort", "倒计时十秒",
"暂停") are generated with espeak-ng (tests/lingting_testkit/callouts.py) in several voices and
speeds, band-passed like a radio and mixed with noise, then streamed with 1 s
of silence between them, with `watch` = the callout phrases and the
`callouts` endpointing preset. Beside them, streams of non-callout speech
(the shared corpus's real English and Mandarin, and the same sentences spoken
by espeak-ng through the same radio, the hard case) count false alerts.

Reports per phrase: recall (a callout alerted at least once), confirmed recall
(the final kept it), number accuracy (the final's alert has the spoken
number), latency from the end of the spoken phrase to its first alert
(p50/p95), and false alerts per hour of non-callout speech. Numbers, not
assertions. --match exact with steering on an older server measures "before"."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench import REPO
from bench.stream_bench import pct
from lingting_client import LingtingClient, StreamOptions
from lingting_testkit.callouts import EN_VOICES, RATE, WATCH, Callout, callouts, have_espeak, radio, speak
from lingting_testkit.corpus import dev_clips, read_wav
from lingting_testkit.servers import start_server, stop_server

GAP_S = 1.0


@dataclass
class Placed:
    """A piece of audio in a stream: a callout (or None for non-callout speech) at its offset."""
    callout: Callout | None
    start_s: float
    seconds: float


@dataclass
class Stream:
    language: str
    kind: str = ""           # non-callout streams: which speech (en, en-synthetic, zh)
    pieces: list[Placed] = field(default_factory=list)
    chunks: list[np.ndarray] = field(default_factory=list)
    length_s: float = 0.0

    def add(self, audio: np.ndarray, callout: Callout | None) -> None:
        silence = np.zeros(int(GAP_S * RATE), np.float32)
        self.chunks += [silence, audio]
        self.pieces.append(Placed(callout, self.length_s + GAP_S, len(audio) / RATE))
        self.length_s += GAP_S + len(audio) / RATE

    def pcm(self) -> bytes:
        audio = np.concatenate(self.chunks + [np.zeros(int(1.5 * RATE), np.float32)])
        return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()

    def heard(self, piece: Placed, events: list[dict]) -> list[str]:
        """The finals of a piece's audio."""
        return [e["text"] for e in events if e["type"] == "final" and self.piece_at(e["end_ms"]) is piece]

    def piece_at(self, audio_ms: int) -> Placed | None:
        """The piece an event of this audio time belongs to (it may come in the gap after it)."""
        t = audio_ms / 1000
        for piece in reversed(self.pieces):
            if piece.start_s - 0.3 <= t:
                return piece
        return None


def negatives(languages, synthetic: bool, seed: int) -> dict[str, list[np.ndarray]]:
    """Non-callout speech: the shared corpus's clips, and (synthetic) their
    transcripts spoken by espeak-ng through the same radio channel."""
    rng, noise = random.Random(seed), np.random.default_rng(seed)
    out: dict[str, list[np.ndarray]] = {}
    for language in languages:
        clips = dev_clips(language)
        out[language] = [read_wav(c.path)[0].astype(np.float32) / 32768 for c in clips]
        if synthetic and language == "en":
            out["en-synthetic"] = [radio(speak(c.transcript, rng.choice(EN_VOICES), rng.choice([140, 160, 175])),
                                         rng.uniform(10, 20), noise) for c in clips]
    return out


def watch_list(match: str, steer: bool) -> list:
    if match == "exact" and steer:
        return list(WATCH)       # plain strings: what any server version takes
    return [{"phrase": p, "sounds_like": match == "sounds_like", "steer": steer} for p in WATCH]


async def run_stream(url: str, stream: Stream, watch: list, endpointing) -> tuple[list[dict], float]:
    client = LingtingClient(url)
    options = StreamOptions(language=stream.language, speed=1.0, watch=watch, endpointing=endpointing)
    events = [e async for e in client.stream(stream.pcm(), options)]
    return events, client.audio_started_at


def score(streams: list[Stream], results: list[tuple[list[dict], float]]) -> dict:
    per_phrase: dict[str, dict] = {}
    false_alerts, negative_s, wrong_phrase, retracted = {}, {}, 0, 0
    false_examples = []
    for stream, (events, t0) in zip(streams, results):
        alerts = [e for e in events if e["type"] == "alert"]
        finals = {e["utterance"]: e["text"] for e in events if e["type"] == "final"}
        retracted += sum(1 for a in alerts if a["status"] == "retracted")
        by_piece: dict[int, list[dict]] = {}
        for a in alerts:
            piece = stream.piece_at(a["audio_ms"])
            if piece is not None:
                by_piece.setdefault(id(piece), []).append(a)
        for piece in stream.pieces:
            found = by_piece.get(id(piece), [])
            if piece.callout is None:
                kind = stream.kind
                negative_s[kind] = negative_s.get(kind, 0) + piece.seconds
                fired = [a for a in found if a["status"] == "detected"]
                false_alerts[kind] = false_alerts.get(kind, 0) + len(fired)
                false_examples += [f"{a['phrase']} in {finals.get(a['utterance'], '')!r}" for a in fired]
                continue
            expected_phrases = {e.phrase for e in piece.callout.script.expected}
            wrong_phrase += sum(1 for a in found if a["status"] == "detected" and a["phrase"] not in expected_phrases)
            seen = set()
            for expected, end_s in zip(piece.callout.script.expected, piece.callout.phrase_end_s):
                if expected.phrase in seen:
                    continue
                seen.add(expected.phrase)
                row = per_phrase.setdefault(expected.phrase, {"callouts": 0, "alerted": 0, "confirmed": 0,
                                                              "numbers": 0, "numbers_right": 0, "latency": [],
                                                              "missed": []})
                row["callouts"] += 1
                mine = [a for a in found if a["phrase"] == expected.phrase]
                detected = [a for a in mine if a["status"] == "detected"]
                confirmed = [a for a in mine if a["status"] == "confirmed"]
                if detected or confirmed:
                    row["alerted"] += 1
                    first = min(a["received_at"] for a in detected or confirmed)
                    row["latency"].append(first - (t0 + piece.start_s + end_s))
                else:
                    row["missed"].append(f"{piece.callout.script.text} ({piece.callout.voice}) heard: "
                                         f"{' / '.join(stream.heard(piece, events))!r}")
                row["confirmed"] += bool(confirmed)
                if expected.number is not None:
                    row["numbers"] += 1
                    row["numbers_right"] += any(a["number"] == expected.number for a in confirmed)
    phrases = {}
    for phrase, row in per_phrase.items():
        phrases[phrase] = {
            "callouts": row["callouts"],
            "recall": round(row["alerted"] / row["callouts"], 3),
            "confirmed_recall": round(row["confirmed"] / row["callouts"], 3),
            "number_accuracy": round(row["numbers_right"] / row["numbers"], 3) if row["numbers"] else None,
            "latency_p50": pct(row["latency"], 50), "latency_p95": pct(row["latency"], 95),
            "missed": row["missed"][:6],
        }
    return {
        "phrases": phrases,
        "false_alerts": false_alerts,
        "negative_minutes": {k: round(v / 60, 2) for k, v in negative_s.items()},
        "false_alerts_per_hour": {k: round(false_alerts[k] / (negative_s[k] / 3600), 1) for k in negative_s},
        "false_alert_examples": false_examples[:10],
        "wrong_phrase_alerts": wrong_phrase,
        "retracted": retracted,
    }


def snr_range(text: str) -> tuple[float, float]:
    low, _, high = text.partition("-")
    return float(low), float(high or low)


def build_streams(args) -> list[Stream]:
    corpus = callouts(seed=args.seed, snr_db=args.snr,
                      languages=args.languages, per_script=args.per_script)
    streams: list[Stream] = []
    for language in args.languages:
        mine = [c for c in corpus if c.script.language == language]
        count = max(1, args.streams if language == "en" else 1)
        group = [Stream(language) for _ in range(count)]
        for i, c in enumerate(mine):
            group[i % count].add(c.audio, c)
        streams += group
    for kind, clips in (negatives(args.languages, args.synthetic_negatives, args.seed) if args.negatives else {}).items():
        stream = Stream(kind.split("-")[0], kind)
        for clip in clips:
            stream.add(clip, None)
        streams.append(stream)
    return streams


async def main_async(args) -> dict:
    streams = build_streams(args)
    server = None
    url = args.url
    if not url:
        server = start_server("--model", args.model, *args.server_arg)
        url = server.url
    try:
        watch = watch_list(args.match, not args.no_steer)
        started = time.monotonic()
        # Callouts first, on their own, so their latency is that of a few live loops;
        # then the non-callout speech (false alerts do not depend on load).
        results = []
        for group in ([s for s in streams if not s.kind], [s for s in streams if s.kind]):
            results += await asyncio.gather(*(run_stream(url, s, watch, args.endpointing) for s in group))
        streams = [s for s in streams if not s.kind] + [s for s in streams if s.kind]
        wall = time.monotonic() - started
    finally:
        if server:
            stop_server(server)
    report = {"model": args.model, "match": args.match, "steer": not args.no_steer, "snr_db": args.snr,
              "per_script": args.per_script, "streams": len(streams), "wall_s": round(wall, 1),
              "server_args": args.server_arg, **score(streams, results)}
    return report


def print_report(report: dict) -> None:
    print(f"\nmodel {report['model']}, match {report['match']}, steer {report['steer']}, "
          f"SNR {'-'.join(f'{x:g}' for x in sorted(set(report['snr_db'])))} dB, {report['streams']} streams, "
          f"{report['wall_s']} s")
    print("phrase | callouts | recall | confirmed | numbers right | latency p50 | p95")
    for phrase, row in report["phrases"].items():
        print(f"{phrase} | {row['callouts']} | {row['recall']} | {row['confirmed_recall']} | "
              f"{row['number_accuracy']} | {row['latency_p50']} | {row['latency_p95']}")
    for kind, minutes in report["negative_minutes"].items():
        print(f"false alerts on {kind} non-callout speech: {report['false_alerts'][kind]} in {minutes} min "
              f"({report['false_alerts_per_hour'][kind]}/h)")
    print(f"wrong-phrase alerts in callouts: {report['wrong_phrase_alerts']}; retracted: {report['retracted']}")
    for phrase, row in report["phrases"].items():
        for text in row["missed"]:
            print(f"  missed {phrase}: {text}")
    for example in report["false_alert_examples"]:
        print(f"  false alert {example}")


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.alert_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="whisper-base")
    p.add_argument("--url", help="a running server instead of starting one")
    p.add_argument("--match", choices=["exact", "sounds_like"], default="sounds_like")
    p.add_argument("--no-steer", action="store_true", help="watch phrases do not steer decoding")
    p.add_argument("--per-script", type=int, default=3, help="renderings of each callout script (voices, speeds)")
    p.add_argument("--snr", type=snr_range, default=(15.0, 15.0),
                   help="SNR in dB, or a range each callout draws from, e.g. 10-20 (default: 15)")
    p.add_argument("--streams", type=int, default=2, help="English callout streams (default 2)")
    p.add_argument("--languages", nargs="+", default=None, help="en zh (default: zh too unless the model is .en)")
    p.add_argument("--no-synthetic-negatives", dest="synthetic_negatives", action="store_false",
                   help="count false alerts on the real corpus only")
    p.add_argument("--no-negatives", dest="negatives", action="store_false",
                   help="callouts only (latency and recall; no false-alert count)")
    p.add_argument("--endpointing", default="callouts")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--server-arg", action="append", default=[])
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = p.parse_args()
    if not have_espeak():
        print("espeak-ng is not installed (Debian package espeak-ng; `make alert-deps`)", file=sys.stderr)
        return 2
    if not dev_clips("en"):
        print("the shared audio corpus is missing (set LINGTING_AUDIO_DIR)", file=sys.stderr)
        return 2
    args.languages = args.languages or (["en"] if args.model.endswith(".en") else ["en", "zh"])
    report = asyncio.run(main_async(args))
    print_report(report)
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"alert-{args.model}-{args.match}{'-nosteer' if args.no_steer else ''}-{int(time.time())}.json"
    (args.out / name).write_text(json.dumps(report, indent=2, ensure_ascii=False))
    print(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
