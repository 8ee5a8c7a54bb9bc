"""Streams held with 1 and 2 recognizer replicas on Ray Serve, against the
single-process server with as many model workers.

    python -m bench.cluster_bench [--model whisper-tiny.en] [--streams 2 4 6 8] [--seconds 40] [--replicas 1 2]

For each count R: the single server with --model-workers R, then a local Ray
cluster (a head and a second node, `ray start` each) with a plain edge
(`lingting-server --cluster ... --replicas R`, one CPU and one decode thread per
replica). Each level streams N different English clip playlists in real time
(bench/stream_bench.py's client) and reports final latency (end of speech to
final), first partial, lost utterances, and the memory of everything the setup
runs (edge + model workers, or edge + every Ray process: GCS, raylets, Serve's
controller, replicas). "Held": the most streams with no utterance lost and a
final p95 under --held-p95 seconds. Numbers, not assertions."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import psutil

from bench import REPO
from bench.stream_bench import run_level
from lingting_testkit.ray_cluster import ENV, running_ray_cluster
from lingting_testkit.servers import start_server, stop_server

COLUMNS = ["setup", "streams", "final_latency_p50", "final_latency_p95", "first_partial_p50", "lost", "wer",
           "rss_mb", "rss_mb_per_stream"]


def rss_mb(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            total += psutil.Process(pid).memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return round(total / 2**20)


def server_pids(pid: int) -> list[int]:
    return [pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))]


def ray_pids() -> list[int]:
    """Every process of the local Ray cluster (GCS, raylets, workers, Serve's actors)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "name"]):
        line = " ".join(proc.info["cmdline"] or ())
        if "ray::" in line or "/ray/" in line or proc.info["name"] in ("gcs_server", "raylet"):
            found.append(proc.pid)
    return found


async def measure(setup: str, url: str, pids, levels: list[int], seconds: float) -> list[dict]:
    idle = rss_mb(pids())
    rows = []
    for n in levels:
        row = await run_level(url, None, n, seconds)
        used = rss_mb(pids())
        row.update(setup=setup, rss_mb=used, rss_mb_per_stream=round((used - idle) / n, 1))
        rows.append(row)
        print(" | ".join(str(row.get(c, "")) for c in COLUMNS), flush=True)
    return rows


def held(rows: list[dict], p95: float) -> int:
    ok = [r["streams"] for r in rows if r["lost"] == 0 and (r["final_latency_p95"] or 0) <= p95]
    return max(ok, default=0)


async def main_async(args) -> dict:
    report = {"model": args.model, "seconds": args.seconds, "held_p95": args.held_p95, "runs": []}
    print(" | ".join(COLUMNS))
    for replicas in args.replicas:
        flags = ("--model", args.model, "--max-connections", "64", "--max-connections-per-ip", "64",
                 "--history-db", "off")
        server = start_server(*flags, "--model-workers", str(replicas))
        try:
            rows = await measure(f"single, {replicas} worker(s)", server.url,
                                 lambda: server_pids(server.process.pid), args.streams, args.seconds)
        finally:
            stop_server(server)
        report["runs"].append({"setup": "single", "replicas": replicas, "held": held(rows, args.held_p95),
                               "rows": rows})
        with running_ray_cluster() as cluster:
            started = time.monotonic()
            edge = start_server(*flags, "--cluster", cluster.address, "--replicas", str(replicas), env=ENV,
                                timeout=600)
            ready_s = round(time.monotonic() - started, 1)
            try:
                rows = await measure(f"ray, {replicas} replica(s)", edge.url,
                                     lambda: server_pids(edge.process.pid) + ray_pids(), args.streams, args.seconds)
            finally:
                stop_server(edge)
        report["runs"].append({"setup": "ray", "replicas": replicas, "held": held(rows, args.held_p95),
                               "edge_ready_s": ready_s, "rows": rows})
    print("\nstreams held (no utterance lost, final p95 <= %.1f s):" % args.held_p95)
    for run in report["runs"]:
        print(f"  {run['setup']:<6} {run['replicas']} replica(s)/worker(s): {run['held']}")
    return report


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.cluster_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="whisper-tiny.en")
    p.add_argument("--streams", type=int, nargs="+", default=[2, 4, 6, 8])
    p.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    p.add_argument("--seconds", type=float, default=40, help="audio per stream (default: 40)")
    p.add_argument("--held-p95", type=float, default=2.0)
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = p.parse_args()
    report = asyncio.run(main_async(args))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"cluster_{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"\nwritten: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
