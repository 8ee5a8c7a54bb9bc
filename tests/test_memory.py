"""Memory held per connection (issue 21): hundreds of in-process connections of
every kind, and what the server still holds afterwards must not grow with
their number. The model is a small stand-in engine (this is about the edge);
the sockets are real."""

from __future__ import annotations

import asyncio
import gc
import json
import tracemalloc

import numpy as np
import pytest
import websockets

from lingting_server.services.access import ApiKey
from lingting_testkit.inprocess import RecordingEngine, edge_server
from lingting_testkit.streams import drain, wav_file

KEY = "memory-" + "m" * 24
SPEECH_HZ = 16000


def voiced(seconds: float) -> bytes:
    """A buzz webrtcvad takes for speech, then silence that ends the utterance."""
    t = np.arange(int(seconds * SPEECH_HZ)) / SPEECH_HZ
    tone = np.sin(2 * np.pi * 150 * t) * np.sin(2 * np.pi * 3 * t) ** 2 + 0.3 * np.sin(2 * np.pi * 450 * t)
    samples = np.concatenate([(tone * 12000).astype("<i2"), np.zeros(SPEECH_HZ, "<i2")])
    return samples.tobytes()


PCM = voiced(0.8)
HEADERS = {"X-API-Key": KEY}


async def _streamed(url, end: str) -> None:
    async with websockets.connect(url, additional_headers=HEADERS) as ws:
        await ws.send(json.dumps({"type": "start", "language": "en", "partial_interval_ms": 200}))
        await ws.recv()
        for i in range(0, len(PCM), 3200):
            await ws.send(PCM[i:i + 3200])
        if end == "stop":
            await ws.send(json.dumps({"type": "stop"}))
            await drain(ws)
        elif end == "drop":
            ws.transport.abort()
        # "close": the context manager closes without stop


async def cycle(url: str, funasr_url: str, kind: str) -> None:
    if kind in ("stop", "close", "drop"):
        await _streamed(url, kind)
    elif kind == "refused":
        try:
            await websockets.connect(url, additional_headers={"X-API-Key": "wrong-" + "w" * 20})
        except websockets.InvalidStatus:
            return
        raise AssertionError("a wrong key was let in")
    elif kind == "protocol_error":
        async with websockets.connect(url, additional_headers=HEADERS) as ws:
            await ws.send(json.dumps({"type": "start", "mode": "offline", "file_bytes": 1 << 40}))
            await drain(ws)                     # too_large: fatal, closed with 1008
    elif kind == "idle":
        async with websockets.connect(url, additional_headers=HEADERS) as ws:
            await ws.send(json.dumps({"type": "start"}))
            await drain(ws)                     # nothing more sent: the idle timeout closes it
    elif kind == "offline":
        async with websockets.connect(url, additional_headers=HEADERS) as ws:
            await ws.send(json.dumps({"type": "start", "mode": "offline", "language": "en"}))
            await ws.recv()
            await ws.send(wav_file(PCM))
            await ws.send(json.dumps({"type": "stop"}))
            await drain(ws)
    elif kind == "funasr":
        async with websockets.connect(funasr_url, subprotocols=["binary"], additional_headers=HEADERS) as ws:
            await ws.send(json.dumps({"mode": "2pass", "wav_name": "m", "is_speaking": True, "audio_fs": 16000,
                                      "chunk_size": [5, 10, 5], "wav_format": "pcm"}))
            for i in range(0, len(PCM), 3200):
                await ws.send(PCM[i:i + 3200])
            await ws.send(json.dumps({"is_speaking": False}))
            await drain(ws)
    else:
        raise ValueError(kind)


KINDS = ("stop", "close", "drop", "refused", "protocol_error", "idle", "offline", "funasr")


def in_process(tmp_path, idle_timeout_s: float):
    return edge_server(RecordingEngine(record=False), keys=(ApiKey("memory", KEY, audio_minutes_per_day=1e9),),
                       idle_timeout_s=idle_timeout_s,
                       spool_dir=str(tmp_path / "spool"))


async def held_after(server, run, n: int) -> int:
    """Bytes still allocated (traced) after n more cycles, once the server is idle again."""
    await run(n)
    for _ in range(100):                         # the server side finishes after the client
        if not server.streams:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


@pytest.mark.parametrize("kind", KINDS)
async def test_memory_held_does_not_grow_with_connections(tmp_path, kind):
    async with in_process(tmp_path, 0.05 if kind == "idle" else 120) as edge:
        server, base = edge.lingting, edge.ws
        url, funasr_url = base + "/v1/stream", base + "/funasr"

        async def run(n):
            for _ in range(n):
                await cycle(url, funasr_url, kind)

        await run(30)                             # warm-up: caches, pools, interned strings
        tracemalloc.start(10)
        try:
            start = await held_after(server, run, 0)
            after_short = await held_after(server, run, 100)
            after_long = await held_after(server, run, 300)
            # A leak of L bytes a connection grows the first run by 100 L and the second by 300 L.
            per_connection = ((after_long - after_short) - (after_short - start)) / 200
            if per_connection >= 64:
                # Objects the server keeps for a while (timer handles, a connection's last
                # seconds) can make one estimate look like a leak; a leak shows in the next too.
                after_more = await held_after(server, run, 300)
                per_connection = min(per_connection, (after_more - after_long) / 300)
            snapshot = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
        assert not server.streams and not server.access.streams.get("memory")
    top = "\n".join(str(s) for s in snapshot.statistics("lineno")[:8])
    assert per_connection < 64, f"{kind}: {per_connection:.0f} bytes held per connection\n{top}"
