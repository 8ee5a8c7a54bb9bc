"""lingting: command-line client for a Lingting server."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from .audio import decode_file
from .client import DEFAULT_URL, LingtingClient, LingtingError, StreamOptions


def _clock(ms: int) -> str:
    s, ms = divmod(int(ms), 1000)
    m, s = divmod(s, 60)
    return f"{m:02d}:{s:02d}.{ms // 10:02d}"


async def _stream(args) -> int:
    try:
        pcm = decode_file(args.file)
    except (ValueError, OSError) as exc:
        print(f"lingting: {exc}", file=sys.stderr)
        return 2
    options = StreamOptions(language=args.language, speed=args.speed, partials=not args.no_partials)
    client = LingtingClient(args.url, use_msgpack=args.msgpack)
    tty = sys.stdout.isatty() and not args.json
    partial_shown = False
    try:
        async for event in client.stream(pcm, options):
            event.pop("received_at", None)
            kind = event["type"]
            if args.json:
                print(json.dumps(event, ensure_ascii=False), flush=True)
            elif kind == "partial" and tty:
                sys.stdout.write("\r\033[K\033[2m" + event["text"][-(120):] + "\033[0m")
                sys.stdout.flush()
                partial_shown = True
            elif kind == "final":
                if partial_shown:
                    sys.stdout.write("\r\033[K")
                    partial_shown = False
                print(f"[{_clock(event['start_ms'])} -> {_clock(event['end_ms'])}] {event['text']}", flush=True)
            if kind == "error":
                print(f"lingting: server error {event['code']}: {event['message']}", file=sys.stderr)
    except LingtingError as exc:
        if partial_shown:
            sys.stdout.write("\n")
        print(f"lingting: {exc}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lingting", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("stream", help="stream an audio file to the server and print captions")
    s.add_argument("file", help="any audio file FFmpeg can read (wav, mp3, flac, ogg, m4a, ...)")
    s.add_argument("--url", default=DEFAULT_URL, help=f"server stream URL (default: {DEFAULT_URL})")
    s.add_argument("--speed", type=float, default=1.0,
                   help="pace at X times real time; 0 sends as fast as possible (default: 1)")
    s.add_argument("--language", default="auto", help="auto, en, zh or ja (default: auto)")
    s.add_argument("--json", action="store_true", help="print every server event as one JSON object per line")
    s.add_argument("--no-partials", action="store_true", help="ask for finals only")
    s.add_argument("--msgpack", action="store_true", help="use the msgpack subprotocol")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.speed < 0:
        print("lingting: --speed must be 0 or more", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_stream(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
