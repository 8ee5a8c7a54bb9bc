"""Connect / stream / disconnect cycles against a running server, many at a
time (tests/test_e2e_soak.py runs a few hundred, bench/soak.py a thousand and
more, with the server's memory around them)."""

from __future__ import annotations

import asyncio
import json

import websockets

from lingting_testkit.corpus import audio_dir, read_wav
from lingting_testkit.streams import wav_file


async def cycle(url: str, pcm: bytes, n: int) -> str:
    async with websockets.connect(url, open_timeout=30) as ws:
        await ws.send(json.dumps({"type": "start", "language": "en", "partials": n % 2 == 0}))
        await ws.recv()
        for i in range(0, len(pcm), 6400):
            await ws.send(pcm[i:i + 6400])
        way = ("stop", "close", "drop")[n % 3]
        if way == "stop":
            await ws.send(json.dumps({"type": "stop"}))
            async for message in ws:
                if json.loads(message)["type"] == "stopped":
                    break
        elif way == "drop":
            ws.transport.abort()
        return way


async def offline_cycle(url: str, wav: bytes, n: int) -> str:
    async with websockets.connect(url, open_timeout=30) as ws:
        await ws.send(json.dumps({"type": "start", "mode": "offline", "language": "en"}))
        await ws.recv()
        await ws.send(wav)
        await ws.send(json.dumps({"type": "stop"}))
        async for message in ws:
            if json.loads(message)["type"] == "stopped":
                break
    return "offline"


async def refused_cycle(url: str, _: bytes, n: int) -> str:
    try:
        await websockets.connect(url.replace("/v1/stream", "/nowhere"), open_timeout=30)
    except websockets.InvalidStatus:
        return "refused"
    raise RuntimeError("the server accepted a stream on /nowhere")


CYCLES = {"stream": cycle, "offline": offline_cycle, "refused": refused_cycle}


async def soak(url: str, cycles: int, concurrency: int, pcm: bytes, on_progress=None, kind: str = "stream") -> dict:
    slots = asyncio.Semaphore(concurrency)
    failures = 0
    payload = wav_file(pcm) if kind == "offline" else pcm

    async def one(n):
        nonlocal failures
        async with slots:
            try:
                await CYCLES[kind](url, payload, n)
            except Exception:
                failures += 1
            if on_progress:
                on_progress(n)

    await asyncio.gather(*(one(n) for n in range(cycles)))
    return {"cycles": cycles, "failures": failures}


def speech(seconds: float = 1.5) -> bytes:
    data, _ = read_wav(audio_dir() / "en" / "jfk.wav")
    return data[:int(16000 * seconds)].tobytes()
