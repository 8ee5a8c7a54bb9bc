"""OpenAI-compatible API benchmark, through the official SDK.

    python -m bench.openai_bench [--url http://127.0.0.1:8765] [--clips 8]

Starts its own server (or uses --url). Files: each English dev clip through
POST /v1/audio/transcriptions (json), one at a time: latency and real-time
factor per request, WER. Realtime: the same clips, pcm16 at 24 kHz paced at
real time in 100 ms appends with 1 s pauses, server VAD: final latency = the
item's completed event minus the moment its speech_stopped audio was sent
(audio_end_ms on the stream clock), WER. Numbers, not assertions."""

from __future__ import annotations

import argparse
import asyncio
import base64
import time

import numpy as np
import openai
import soxr

from lingting_testkit.corpus import dev_clips, error_rate, read_wav
from lingting_testkit.servers import start_server, stop_server


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


async def files(client: openai.AsyncOpenAI, clips) -> dict:
    latencies, texts = [], []
    for clip in clips:
        started = time.perf_counter()
        with open(clip.path, "rb") as f:
            answer = await client.audio.transcriptions.create(model="whisper-1", file=f, language="en")
        latencies.append(time.perf_counter() - started)
        texts.append(answer.text)
    audio = sum(c.seconds for c in clips)
    return {"requests": len(clips), "p50_s": pct(latencies, 50), "p95_s": pct(latencies, 95),
            "rtf": sum(latencies) / audio, "wer": error_rate([c.transcript for c in clips], texts, "en")}


async def realtime(client: openai.AsyncOpenAI, clips) -> dict:
    pieces = []
    for clip in clips:
        data, rate = read_wav(clip.path)
        pieces += [soxr.resample(data.astype(np.float32) / 32768, rate, 24000), np.zeros(24000, np.float32)]
    pcm = (np.concatenate(pieces) * 32767).astype("<i2").tobytes()
    step = 4800                                    # 100 ms of 24 kHz pcm16
    sent_at: dict[int, float] = {}                 # audio ms -> when it was sent
    stopped_ms: dict[str, int] = {}
    latencies, completed, committed = [], [], []
    async with client.beta.realtime.connect(model="whisper-1") as connection:
        await connection.recv()
        await connection.send({"type": "transcription_session.update", "session": {
            "input_audio_transcription": {"language": "en"}, "turn_detection": {"type": "server_vad"}}})

        async def receive():
            while True:
                event = await connection.recv()
                if event.type == "input_audio_buffer.committed":
                    committed.append(event.item_id)
                elif event.type == "input_audio_buffer.speech_stopped":
                    stopped_ms[event.item_id] = event.audio_end_ms
                elif event.type == "conversation.item.input_audio_transcription.completed":
                    completed.append(event.transcript)
                    end = stopped_ms.get(event.item_id)
                    sent = sent_at.get(end // 100 * 100) if end is not None else None
                    if sent is not None:
                        latencies.append(time.perf_counter() - sent)

        reader = asyncio.create_task(receive())
        start = time.perf_counter()
        for i in range(0, len(pcm), step):
            ms = i // 48
            await asyncio.sleep(max(0.0, start + ms / 1000 - time.perf_counter()))
            await connection.input_audio_buffer.append(audio=base64.b64encode(pcm[i:i + step]).decode())
            sent_at[ms] = time.perf_counter()
        deadline = time.perf_counter() + 60    # the last pause ends the last item; then its final
        await asyncio.sleep(1.0)
        while len(completed) < len(committed) and time.perf_counter() < deadline:
            await asyncio.sleep(0.1)
        reader.cancel()
    return {"items": len(completed), "final_p50_s": pct(latencies, 50), "final_p95_s": pct(latencies, 95),
            "wer": error_rate([" ".join(c.transcript for c in clips)], [" ".join(completed)], "en")}


async def run(url: str, count: int) -> None:
    clips = dev_clips("en")[:count]
    ws = url.replace("https://", "wss://").replace("http://", "ws://")
    async with openai.AsyncOpenAI(base_url=url + "/v1", websocket_base_url=ws + "/v1", api_key="bench",
                                  max_retries=0, timeout=300) as client:
        print("files   ", {k: round(v, 3) for k, v in (await files(client, clips)).items()})
        print("realtime", {k: round(v, 3) for k, v in (await realtime(client, clips)).items()})


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.openai_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="a running server (http://HOST:PORT) instead of starting one")
    p.add_argument("--clips", type=int, default=8, help="English dev clips to use (default: 8)")
    args = p.parse_args()
    server = None if args.url else start_server()
    try:
        asyncio.run(run(args.url or server.http, args.clips))
    finally:
        if server:
            stop_server(server)


if __name__ == "__main__":
    main()
