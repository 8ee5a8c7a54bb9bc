"""A client written like FunASR's own (funasr_wss_client.py): config, PCM
frames at real time, is_speaking false, replies until the final one."""

from __future__ import annotations

import asyncio
import json
import time

import websockets


async def funasr_client(url: str, pcm: bytes, mode: str = "2pass", wav_name: str = "demo",
                        hotwords: str = "", chunk_size=(5, 10, 5), chunk_interval: int = 10) -> list[dict]:
    stride = int(60 * chunk_size[1] / chunk_interval / 1000 * 16000 * 2)
    async with websockets.connect(url, subprotocols=["binary"], ping_interval=None) as ws:
        assert ws.subprotocol == "binary"
        await ws.send(json.dumps({"mode": mode, "chunk_size": list(chunk_size), "chunk_interval": chunk_interval,
                                  "encoder_chunk_look_back": 4, "decoder_chunk_look_back": 0, "audio_fs": 16000,
                                  "wav_name": wav_name, "wav_format": "pcm", "is_speaking": True,
                                  "hotwords": hotwords, "itn": True}, ensure_ascii=False))
        replies = []

        async def receive():
            while True:
                reply = json.loads(await ws.recv())
                reply["at"] = time.monotonic()
                replies.append(reply)
                if reply.get("is_final"):
                    return

        receiver = asyncio.create_task(receive())
        started = time.monotonic()
        for n, i in enumerate(range(0, len(pcm), stride)):
            await ws.send(pcm[i:i + stride])
            await asyncio.sleep(max(0.0, started + (n + 1) * stride / 32000 - time.monotonic()))
        await ws.send(json.dumps({"is_speaking": False}))
        await asyncio.wait_for(receiver, 60)
        return replies
