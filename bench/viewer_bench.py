"""Caption delay to viewers: one speaker streams real English speech in real
time into a room; 1, 10, 100 viewers watch it over /v1/rooms/ROOM/events.

    python -m bench.viewer_bench [--viewers 1 10 100] [--seconds 60] [--model whisper-base] [--url WS_URL]
        [--no-outputs]

Delay of a final = when a client received it - when the end of its speech was
sent (the audio is paced in real time, so that is audio start + final.end_ms).
Reported for the speaker itself and over every viewer's copy (p50/p95/max),
with the spread between the first and the last viewer to get each final, and
the server's CPU. The first level also sends each final to a local webhook
receiver and a YouTube caption stand-in (tests/lingting_testkit/receivers.py)
and reports their delay the same way. Numbers, not assertions."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import psutil
import websockets

from bench.stream_bench import pct, playlist
from lingting_client import LingtingClient, StreamOptions
from lingting_testkit.receivers import Receivers
from lingting_testkit.servers import start_server, stop_server


async def watch(url: str, got: list) -> None:
    async with websockets.connect(url, max_size=None) as ws:
        async for message in ws:
            event = json.loads(message)
            if event["type"] == "final":
                got.append((event["utterance"], time.monotonic()))
            elif event["type"] == "room_closed":
                return


SECRET = "viewer-bench-secret-0123"


async def run_level(url: str, viewers: int, seconds: float, pid: int | None, outputs: bool) -> dict:
    pcm, _ = playlist(0, seconds)
    room = f"bench-{viewers}"
    base = url.rsplit("/v1/", 1)[0]
    speaker = LingtingClient(url)
    finals, copies, tasks = [], [[] for _ in range(viewers)], []
    process = psutil.Process(pid) if pid else None
    if process:
        process.cpu_percent()
    options = StreamOptions(language="en", room=room)
    receivers = Receivers(SECRET) if outputs else None
    if receivers:
        await receivers.up()
        options.webhooks = [{"url": receivers.base + "/hook", "secret": SECRET, "events": ["final"]}]
        options.captions = [{"type": "youtube", "url": receivers.base + "/youtube/closedcaption?cid=bench"}]
    async for event in speaker.stream(pcm, options):
        if event["type"] == "ready":
            for n in range(viewers):
                tasks.append(asyncio.ensure_future(watch(f"{base}/v1/rooms/{room}/events", copies[n])))
        elif event["type"] == "final" and event["text"]:
            finals.append(event)
    await asyncio.wait_for(asyncio.gather(*tasks), 60)
    cpu = process.cpu_percent() if process else None
    spoken_end = {f["utterance"]: speaker.audio_started_at + f["end_ms"] / 1000 for f in finals}
    own = [f["received_at"] - spoken_end[f["utterance"]] for f in finals]
    seen = [t - spoken_end[u] for copy in copies for u, t in copy if u in spoken_end]
    spread = []
    for u in spoken_end:
        times = [t for copy in copies for v, t in copy if v == u]
        if len(times) == viewers:
            spread.append(max(times) - min(times))
    missing = sum(len(spoken_end) - len([u for u, _ in copy if u in spoken_end]) for copy in copies)
    delays = {}
    if receivers:
        await asyncio.sleep(2)          # the last deliveries
        await receivers.down()
        hooks = iter(t for service, t in receivers.got.arrivals if service == "webhook")
        hook_delay = [next(hooks) - spoken_end[body["event"]["utterance"]] for _, _, body in receivers.got.webhooks
                      if body["event"]["utterance"] in spoken_end]
        posts = [t for service, t in receivers.got.arrivals if service == "youtube"]
        caption_delay = [t - spoken_end[f["utterance"]] for t, f in zip(posts, finals)]
        delays = {"webhook_p50": pct(hook_delay, 50), "webhook_p95": pct(hook_delay, 95),
                  "youtube_p50": pct(caption_delay, 50), "youtube_p95": pct(caption_delay, 95)}
    return {"viewers": viewers, "finals": len(finals), "speaker_p50": pct(own, 50), "speaker_p95": pct(own, 95),
            "viewer_p50": pct(seen, 50), "viewer_p95": pct(seen, 95), "viewer_max": max(seen) if seen else None,
            "spread_p95": pct(spread, 95), "finals_missing": missing, "server_cpu_pct": cpu, **delays}


async def main_async(args) -> list[dict]:
    server = None
    url = args.url
    if url is None:
        server = start_server("--model", args.model, "--max-viewers", str(max(args.viewers) + 10),
                              "--webhook-allow-private")
        url = server.url
    try:
        rows = []
        for level, n in enumerate(args.viewers):
            outputs = level == 0 and not args.no_outputs
            rows.append(await run_level(url, n, args.seconds, server.process.pid if server else None, outputs))
            print(json.dumps(rows[-1]), flush=True)
        return rows
    finally:
        if server:
            stop_server(server)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--viewers", type=int, nargs="+", default=[1, 10, 100])
    p.add_argument("--seconds", type=float, default=60.0, help="speech per level (English dev clips, 1 s pauses)")
    p.add_argument("--model", default="whisper-base")
    p.add_argument("--url", help="an already running server's ws://.../v1/stream (started with "
                                 "--webhook-allow-private, or give --no-outputs)")
    p.add_argument("--no-outputs", action="store_true", help="no webhook and caption delays")
    args = p.parse_args()
    rows = asyncio.run(main_async(args))
    print(f"\n{'viewers':>8} {'finals':>6} {'speaker p50/p95 s':>18} {'viewers p50/p95/max s':>22} "
          f"{'spread p95':>10} {'missing':>7} {'cpu %':>6}")
    for r in rows:
        fmt = lambda v: "-" if v is None else f"{v:.2f}"   # noqa: E731
        print(f"{r['viewers']:>8} {r['finals']:>6} {fmt(r['speaker_p50']):>8}/{fmt(r['speaker_p95']):<9} "
              f"{fmt(r['viewer_p50']):>7}/{fmt(r['viewer_p95'])}/{fmt(r['viewer_max']):<6} "
              f"{fmt(r['spread_p95']):>10} {r['finals_missing']:>7} {fmt(r['server_cpu_pct']):>6}")
        if "webhook_p50" in r:
            print(f"{'':>8} webhook p50/p95 {fmt(r['webhook_p50'])}/{fmt(r['webhook_p95'])} s, "
                  f"YouTube caption p50/p95 {fmt(r['youtube_p50'])}/{fmt(r['youtube_p95'])} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
