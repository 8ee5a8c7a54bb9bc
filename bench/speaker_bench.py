"""Speaker labels: word-speaker accuracy live and as files, on conversations
built from ../shared/audio clips of different real speakers
(tests/lingting_testkit/conversations.py, as tests/test_e2e_speakers.py uses), plus turns of one voice.

    python -m bench.speaker_bench [--url WS_URL] [--speed 1]

Accuracy: the share of words (characters for Mandarin) whose speaker label is
right after the best mapping of labels onto the true speakers; also how many
labels each run made. Numbers, not assertions."""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from lingting_client import FileOptions, LingtingClient, StreamOptions
from lingting_testkit.conversations import ENGLISH, MANDARIN, ONE_SPEAKER, accuracy, conversation, labelled_units
from lingting_testkit.corpus import audio_dir
from lingting_testkit.servers import start_server, stop_server
from lingting_testkit.streams import stream_events, wav_file


def file_labels(events: list[dict]) -> dict:
    (speakers,) = [e for e in events if e["type"] == "speakers"]
    return {(s["utterance"], s["start_ms"]): s["speaker"] for s in speakers["segments"]}

TALKS = {"english, 3 speakers": (ENGLISH, "en", False), "mandarin, 2 speakers": (MANDARIN, "zh", True),
         "english, 1 speaker": (ONE_SPEAKER, "en", False)}


async def run(url: str, speed: float) -> list[dict]:
    root = audio_dir()
    rows = []
    for name, (parts, language, chars) in TALKS.items():
        talk = conversation(root, parts)
        live = await stream_events(url, talk.pcm, StreamOptions(language=language, diarize=True, speed=speed))
        finals = [e for e in live if e["type"] == "final" and e["text"]]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "talk.wav"
            path.write_bytes(wav_file(talk.pcm))
            events = [e async for e in LingtingClient(url).transcribe(str(path), FileOptions(language=language,
                                                                                              diarize=True))]
        relabel = file_labels(events)
        file_finals = [e for e in events if e["type"] == "final" and e["text"]]
        rows.append({"talk": name, "seconds": round(len(talk.pcm) / 32000, 1),
                     "live_accuracy": round(accuracy(labelled_units(finals, chars=chars), talk), 3),
                     "live_labels": len({f.get("speaker") for f in finals}),
                     "live_turn_splits": sum(1 for f in finals if f.get("turns")),
                     "file_accuracy": round(accuracy(labelled_units(file_finals, relabel, chars=chars), talk), 3),
                     "file_labels": len(set(relabel.values()))})
        print(rows[-1], flush=True)
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="an already running server's ws://.../v1/stream")
    p.add_argument("--speed", type=float, default=1.0, help="live streams at this times real time (0: at once)")
    args = p.parse_args()
    if audio_dir() is None:
        print("speaker_bench: the shared corpus is not found (LINGTING_AUDIO_DIR or ../shared/audio)")
        return 2
    server = None if args.url else start_server()
    try:
        rows = asyncio.run(run(args.url or server.url, args.speed))
    finally:
        if server:
            stop_server(server)
    print(f"\n{'talk':<22} {'s':>5} {'live acc':>8} {'labels':>6} {'splits':>6} {'file acc':>8} {'labels':>6}")
    for r in rows:
        print(f"{r['talk']:<22} {r['seconds']:>5} {r['live_accuracy']:>8} {r['live_labels']:>6} "
              f"{r['live_turn_splits']:>6} {r['file_accuracy']:>8} {r['file_labels']:>6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
