"""lingting: command-line client for a Lingting server."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from .audio import decode_file
from .client import DEFAULT_URL, FileOptions, LingtingClient, LingtingError, StreamOptions, http_base

EXPORT_FORMATS = ("txt", "json", "srt", "vtt")


def _clock(ms: int) -> str:
    s, ms = divmod(int(ms), 1000)
    m, s = divmod(s, 60)
    return f"{m:02d}:{s:02d}.{ms // 10:02d}"


def _callout_line(event: dict) -> str:
    if event["type"] == "countdown":
        t = event["t_minus_s"]
        clock = "T-?" if t is None else f"T-{int(t) // 3600:02d}:{int(t) // 60 % 60:02d}:{int(t) % 60:02d}"
        return f"  countdown {clock} {event['status']}"
    sure = f" (sounds like, {event['confidence']:.2f})" if event.get("confidence", 1) < 1 else ""
    number = f" = {event['number']}" if event.get("number") is not None else ""
    return f"  alert {event['status']}: {event['phrase']} \"{event['text']}\"{number}{sure}"


async def _stream(args) -> int:
    try:
        pcm = decode_file(args.file)
    except (ValueError, OSError) as exc:
        print(f"lingting: {exc}", file=sys.stderr)
        return 2
    endpointing = int(args.endpointing) if args.endpointing and args.endpointing.isdigit() else args.endpointing
    watch = [{"phrase": w, "sounds_like": True} if args.sounds_like else w for w in args.watch or []]
    options = StreamOptions(language=args.language, speed=args.speed, partials=not args.no_partials,
                            endpointing=endpointing, watch=watch, countdown=args.countdown, room=args.room,
                            diarize=args.diarize)
    client = LingtingClient(args.url, use_msgpack=args.msgpack, api_key=args.api_key)
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
                for part in event.get("turns") or [event]:
                    who = f"{part['speaker']}: " if part.get("speaker") else ""
                    print(f"[{_clock(part['start_ms'])} -> {_clock(part['end_ms'])}] {who}{part['text']}", flush=True)
            elif kind in ("alert", "countdown") and event.get("status") != "detected":
                if partial_shown:
                    sys.stdout.write("\r\033[K")
                    partial_shown = False
                print(_callout_line(event), flush=True)
            if kind == "error":
                print(f"lingting: server error {event['code']}: {event['message']}", file=sys.stderr)
            elif kind == "ready" and event.get("room") and args.room:
                page = f"{http_base(args.url)}/watch/{event['room']}#token={event['viewer_token']}"
                print(f"lingting: viewers: {page}  (or: lingting watch {event['room']} --token "
                      f"{event['viewer_token']})", file=sys.stderr)
    except LingtingError as exc:
        if partial_shown:
            sys.stdout.write("\n")
        print(f"lingting: {exc}", file=sys.stderr)
        return 1
    return 0


async def _watch(args) -> int:
    """A live room's finals (and alerts) as they come, the finals so far first.
    Waits for a room that is not live yet, and for a speaker who dropped."""
    client = LingtingClient(args.url, api_key=args.api_key)
    waiting = ({"http_404", "http_401"} if args.token else {"http_404"})  # a token's room may not be live yet
    said_waiting = False
    while True:
        try:
            async for event in client.watch(args.room, args.token):
                event.pop("received_at", None)
                kind = event["type"]
                if args.json:
                    print(json.dumps(event, ensure_ascii=False), flush=True)
                elif kind == "room":
                    print(f"lingting: watching {event['room']} ({event['backlog']} finals so far)", file=sys.stderr)
                elif kind == "final" and event["text"]:
                    who = f"{event['speaker']}: " if event.get("speaker") else ""
                    print(f"[{_clock(event['start_ms'])}] {who}{event['text']}", flush=True)
                elif kind in ("alert", "countdown") and event.get("status") != "detected":
                    print(_callout_line(event), flush=True)
                elif kind == "room_closed":
                    print(f"lingting: the stream ended ({event['reason']})", file=sys.stderr)
                    if event["reason"] != "disconnected":
                        return 0
                said_waiting = False
        except LingtingError as exc:
            if exc.code not in waiting:
                print(f"lingting: {exc}", file=sys.stderr)
                return 1
            if not said_waiting:
                print(f"lingting: waiting for room {args.room} to go live (Ctrl+C to stop)", file=sys.stderr)
                said_waiting = True
        await asyncio.sleep(2)


class _Progress:
    """A bar per file and one for the batch (tqdm, on stderr)."""

    def __init__(self, files: list[str], enabled: bool):
        from tqdm import tqdm
        self.tqdm = tqdm
        self.enabled = enabled
        self.total = tqdm(total=len(files), desc="all files", unit="file", position=0, disable=not enabled,
                          bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.2f}/{total} files [{elapsed}<{remaining}]")
        self.done: dict[str, float] = {}

    def file_bar(self, path: str, position: int):
        return self.tqdm(total=100, desc=Path(path).name[:30], unit="%", position=position, leave=True,
                         disable=not self.enabled, bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")

    def update(self, path: str, bar, fraction: float, stage: str) -> None:
        bar.n = round(fraction * 100, 1)
        bar.set_postfix_str(stage, refresh=True)
        self.done[path] = fraction
        self.total.n = round(sum(self.done.values()), 2)
        self.total.refresh()


def _fraction(event: dict) -> tuple[float, str]:
    """Upload counts as the first 10 %, transcription as the rest."""
    if event.get("stage") == "upload":
        size = event.get("file_bytes") or 0
        return (0.1 * event["received_bytes"] / size if size else 0.0), "uploading"
    return 0.1 + 0.9 * (event.get("fraction") or 0.0), "transcribing"


async def _transcribe_one(client: LingtingClient, path: str, args, progress: _Progress,
                          position: int) -> str | None:
    """Returns an error message, or None when the output was written."""
    bar = progress.file_bar(path, position)
    options = FileOptions(language=args.language, hotwords=args.hotword or [],
                          itn=False if args.no_itn else None, diarize=args.diarize, speakers=args.speakers)
    session_id = None
    try:
        async for event in client.transcribe(path, options):
            kind = event["type"]
            if kind == "ready":
                session_id = event["session_id"]
            elif kind == "progress":
                progress.update(path, bar, *_fraction(event))
            elif kind == "error":
                progress.tqdm.write(f"lingting: {path}: server error {event['code']}: {event['message']}",
                                    file=sys.stderr)
        text = await asyncio.to_thread(client.export, session_id, args.format)
    except (LingtingError, OSError) as exc:
        progress.update(path, bar, 1.0, "failed")
        bar.close()
        return f"{path}: {exc}"
    progress.update(path, bar, 1.0, "done")
    bar.close()
    if args.out == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        out = Path(args.out) / f"{Path(path).stem}.{args.format}"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    return None


async def _transcribe(args) -> int:
    missing = [f for f in args.files if not os.path.isfile(f)]
    if missing:
        print(f"lingting: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    client = LingtingClient(args.url, api_key=args.api_key)
    progress = _Progress(args.files, enabled=not args.quiet)
    slots = asyncio.Semaphore(args.parallel)

    async def one(index: int, path: str):
        async with slots:
            return await _transcribe_one(client, path, args, progress, index + 1)

    errors = [e for e in await asyncio.gather(*(one(i, f) for i, f in enumerate(args.files))) if e]
    progress.total.close()
    for error in errors:
        print(f"lingting: {error}", file=sys.stderr)
    if not errors and args.out != "-" and not args.quiet:
        print(f"lingting: {len(args.files)} file(s) transcribed to {args.out}/ as .{args.format}", file=sys.stderr)
    return 1 if errors else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lingting", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("stream", help="stream an audio file to the server and print captions")
    s.add_argument("file", help="any audio file FFmpeg can read (wav, mp3, flac, ogg, m4a, ...)")
    s.add_argument("--url", default=DEFAULT_URL, help=f"server stream URL (default: {DEFAULT_URL})")
    s.add_argument("--api-key", default=None, help="the server's API key (default: $LINGTING_API_KEY)")
    s.add_argument("--speed", type=float, default=1.0,
                   help="pace at X times real time; 0 sends as fast as possible (the server reads live audio at "
                        "most 4x real time after 30 s; `transcribe` is for whole files) (default: 1)")
    s.add_argument("--language", default="auto", help="auto, en, zh or ja (default: auto)")
    s.add_argument("--json", action="store_true", help="print every server event as one JSON object per line")
    s.add_argument("--no-partials", action="store_true", help="ask for finals only")
    s.add_argument("--endpointing", default=None, metavar="MS|PRESET",
                   help="silence that ends an utterance, in ms, or a preset: captions, agent_assist, callouts "
                        "(default: the server's, captions)")
    s.add_argument("--watch", action="append", metavar="PHRASE",
                   help="alert on a phrase, e.g. --watch hold --watch 'T minus <number>' (repeat for more)")
    s.add_argument("--sounds-like", action="store_true", help="watch phrases also match words that sound like them")
    s.add_argument("--countdown", action="store_true", help="track a launch countdown and print its clock")
    s.add_argument("--diarize", action="store_true", help="label who speaks (S1, S2...) from the voice")
    s.add_argument("--room", default=None, help="a room name others can watch the stream by (prints their link)")
    s.add_argument("--msgpack", action="store_true", help="use the msgpack subprotocol")
    w = sub.add_parser("watch", help="follow a live room's captions (as a viewer)")
    w.add_argument("room", help="the room's name or session id")
    w.add_argument("--token", default=None, help="the room's viewer token (else the API key is used)")
    w.add_argument("--url", default=DEFAULT_URL, help=f"server stream URL (default: {DEFAULT_URL})")
    w.add_argument("--api-key", default=None, help="the server's API key (default: $LINGTING_API_KEY)")
    w.add_argument("--json", action="store_true", help="print every event as one JSON object per line")
    t = sub.add_parser("transcribe", help="transcribe whole files as fast as the server can, with progress")
    t.add_argument("files", nargs="+", metavar="FILE", help="media files FFmpeg can read (the server decodes them)")
    t.add_argument("--url", default=DEFAULT_URL, help=f"server stream URL (default: {DEFAULT_URL})")
    t.add_argument("--api-key", default=None, help="the server's API key (default: $LINGTING_API_KEY)")
    t.add_argument("--format", choices=EXPORT_FORMATS, default="txt", help="output format (default: txt)")
    t.add_argument("--out", default=".", help="directory for FILE-STEM.FORMAT outputs, or - for stdout (default: .)")
    t.add_argument("--language", default="auto", help="auto, en, zh or ja (default: auto)")
    t.add_argument("--hotword", action="append", help="a phrase to favour; repeat for more")
    t.add_argument("--no-itn", action="store_true", help="keep numbers and dates as spoken words")
    t.add_argument("--diarize", action="store_true", help="label who speaks (S1, S2...), clustered over each file")
    t.add_argument("--speakers", type=int, default=None, help="with --diarize: how many speakers (default: estimated)")
    t.add_argument("--parallel", type=int, default=2, help="files in flight at once (default: 2)")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "stream" and args.speed < 0:
        print("lingting: --speed must be 0 or more", file=sys.stderr)
        return 2
    if args.command == "transcribe" and args.parallel < 1:
        print("lingting: --parallel must be 1 or more", file=sys.stderr)
        return 2
    try:
        run = {"stream": _stream, "transcribe": _transcribe, "watch": _watch}[args.command]
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
