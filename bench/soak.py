"""Soak: hundreds of connect / stream / disconnect cycles on loopback, and
the server's memory before and after. Numbers, not assertions.

    python -m bench.soak [--cycles 1000] [--concurrency 4] [--kind stream|offline|refused] [--model M]
    python -m bench.soak --hold 50 100 200 [--seconds 30]

--kind stream (default): each cycle streams the first 1.5 s of real speech
(one final decode) and leaves one of three ways: stop and wait for `stopped`,
close the socket without stop, or drop the TCP connection. offline: each cycle
uploads the same 1.5 s as a WAV file and waits for its transcript. refused:
each cycle is turned away at the handshake (an unknown path). Prints server RSS
after the warm-up and every 250 cycles, and the slope in bytes per connection.

--hold N: N connections at once, each streaming room noise (silence with a
little hiss, as an idle call-center line) at real time; reports how many the
server took, refusals, event-loop lag (keepalive round trip) and CPU/RSS."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

import psutil
import websockets

from lingting_testkit.corpus import audio_dir
from lingting_testkit.servers import start_server, stop_server
from lingting_testkit.soak import CYCLES, soak, speech


def rss_mb(pid: int) -> dict:
    process = psutil.Process(pid)
    out = {"server": round(process.memory_info().rss / 2**20, 1)}
    for child in process.children():
        out[f"worker {child.pid}"] = round(child.memory_info().rss / 2**20, 1)
    return out


async def hold(url: str, streams: int, seconds: float, pid: int) -> dict:
    import numpy as np
    rng = np.random.default_rng(1)
    chunk = (rng.normal(0, 30, 1600)).astype("<i2").tobytes()     # 100 ms of faint noise
    refused, lags = 0, []

    async def one():
        nonlocal refused
        try:
            ws = await websockets.connect(url, open_timeout=60)
        except websockets.InvalidStatus:
            refused += 1
            return
        async with ws:
            await ws.send(json.dumps({"type": "start"}))
            await ws.recv()
            started = time.monotonic()
            for n in range(int(seconds * 10)):
                await asyncio.sleep(max(0, started + (n + 1) * 0.1 - time.monotonic()))
                await ws.send(chunk)
            t = time.perf_counter()
            await ws.send(json.dumps({"type": "stop"}))
            async for message in ws:
                if json.loads(message)["type"] == "stopped":
                    lags.append(time.perf_counter() - t)
                    break

    process = psutil.Process(pid)
    process.cpu_percent()
    await asyncio.gather(*(one() for _ in range(streams)))
    lags.sort()
    return {"streams": streams, "held": len(lags), "refused": refused,
            "stop_to_stopped_p50_ms": round(1000 * lags[len(lags) // 2]) if lags else None,
            "p95_ms": round(1000 * lags[int(len(lags) * 0.95)]) if lags else None,
            "server_cpu_cores": round(process.cpu_percent() / 100, 2),
            "server_rss_mb": round(process.memory_info().rss / 2**20)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cycles", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--hold", type=int, nargs="*", help="instead: hold this many streams at once")
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--kind", choices=tuple(CYCLES), default="stream", help="what each cycle does (default: stream)")
    p.add_argument("--model", default="whisper-base")
    args = p.parse_args()
    if args.hold:
        server = start_server("--model", args.model, "--history-db", "off", "--max-connections", str(max(args.hold)),
                              "--max-connections-per-ip", str(max(args.hold)))
        try:
            for n in args.hold:
                print(asyncio.run(hold(server.url, n, args.seconds, server.process.pid)), flush=True)
        finally:
            stop_server(server)
        return
    if audio_dir() is None:
        sys.exit("shared corpus not found (LINGTING_AUDIO_DIR or ../shared/audio)")
    server = start_server("--model", args.model, "--history-db", "off", "--max-connections-per-ip", "64",
                          *os.environ.get("SOAK_SERVER_ARGS", "").split())
    pid = server.process.pid
    try:
        pcm = speech()
        print(f"{args.kind} cycles, {args.model}: start", rss_mb(pid), flush=True)
        asyncio.run(soak(server.url, args.warmup, args.concurrency, pcm, kind=args.kind))
        warm = rss_mb(pid)["server"]
        print(f"after {args.warmup} warm-up cycles", rss_mb(pid), flush=True)
        started = time.perf_counter()
        done = 0

        def progress(n):
            nonlocal done
            done += 1
            if done % 250 == 0:
                print(f"  {done} cycles", rss_mb(pid), flush=True)
        result = asyncio.run(soak(server.url, args.cycles, args.concurrency, pcm, progress, kind=args.kind))
        result["seconds"] = round(time.perf_counter() - started, 1)
        end = rss_mb(pid)["server"]
        result["bytes_per_connection"] = round((end - warm) * 2**20 / args.cycles, 1)
        print(f"after {args.cycles} more cycles", rss_mb(pid), result, flush=True)
    finally:
        stop_server(server)


if __name__ == "__main__":
    main()
