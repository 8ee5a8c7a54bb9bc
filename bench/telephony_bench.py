"""Phone platforms benchmark: WER at 8 kHz against 16 kHz on the same English
speech, and each platform's latency from the end of speech to the final.

    python -m bench.telephony_bench [--clips 6]

Starts its own server (with an AudioSocket port). The same English dev clips,
1 s of silence after each, go through protocol v1 at 16 kHz (s16le) and at
8 kHz (mu-law), Twilio Media Streams, Genesys AudioHook (PCMU stereo: the
clips on the customer leg, silence on the agent's), mod_audio_fork (L16
8 kHz) and AudioSocket (slin 8 kHz), each paced at real time in 20 ms packets.
Latency = when history stored the final (it is stored before it is sent)
minus when the packet holding the end of its speech was sent. Numbers, not
assertions."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import struct
import time
import urllib.request
import uuid

import numpy as np
import soxr
import websockets

from lingting_testkit.corpus import dev_clips, error_rate, read_wav
from lingting_testkit.servers import start_server, stop_server
from lingting_testkit.streams import drain, mulaw_encode

PACKET_MS = 20


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def speech(clips, rate: int) -> np.ndarray:
    pieces = []
    for clip in clips:
        data, source = read_wav(clip.path)
        pieces += [soxr.resample(data.astype(np.float32) / 32768, source, rate), np.zeros(rate, np.float32)]
    return np.concatenate(pieces).astype(np.float32)


def s16(x: np.ndarray) -> bytes:
    return (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()


def chunks(data: bytes, bytes_per_packet: int) -> list[bytes]:
    return [data[i:i + bytes_per_packet] for i in range(0, len(data), bytes_per_packet)]


async def paced(send, packets: list, sent_at: dict[int, float]) -> None:
    """Each packet at its real-time moment; when each audio ms went out (wall clock)."""
    start = time.perf_counter()
    for n, packet in enumerate(packets):
        due = start + n * PACKET_MS / 1000
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        await send(packet)
        sent_at[(n + 1) * PACKET_MS] = time.time()


async def v1(url: str, clips, rate: int, sent_at) -> None:
    audio = speech(clips, rate)
    encoding, data, width = ("pcm_s16le", s16(audio), 2) if rate == 16000 else ("mulaw", mulaw_encode(audio), 1)
    async with websockets.connect(url + "/v1/stream") as ws:
        await ws.send(json.dumps({"type": "start", "language": "en", "sample_rate": rate, "encoding": encoding}))
        await ws.recv()
        reader = asyncio.create_task(drain(ws))
        await paced(ws.send, chunks(data, rate * PACKET_MS // 1000 * width), sent_at)
        await ws.send(json.dumps({"type": "stop"}))
        await reader


async def twilio(url: str, clips, sent_at) -> None:
    data = mulaw_encode(speech(clips, 8000))
    async with websockets.connect(url + "/v1/twilio") as ws:
        await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await ws.send(json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": "MZbench", "start": {
            "streamSid": "MZbench", "callSid": "CAbench", "tracks": ["inbound"], "customParameters": {"language": "en"},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}))

        async def media(packet: bytes) -> None:
            await ws.send(json.dumps({"event": "media", "streamSid": "MZbench", "media": {
                "track": "inbound", "payload": base64.b64encode(packet).decode()}}))
        await paced(media, chunks(data, 160), sent_at)
        await ws.send(json.dumps({"event": "stop", "streamSid": "MZbench", "stop": {}}))
        await drain(ws)


async def audiohook(url: str, clips, sent_at) -> None:
    customer = speech(clips, 8000)
    data = mulaw_encode(np.stack([customer, np.zeros_like(customer)], axis=1).reshape(-1))
    sid = str(uuid.uuid4())
    async with websockets.connect(url + "/v1/audiohook") as ws:
        media = {"type": "audio", "format": "PCMU", "channels": ["external", "internal"], "rate": 8000}
        await ws.send(json.dumps({"version": "2", "id": sid, "type": "open", "seq": 1, "serverseq": 0,
                                  "position": "PT0S", "parameters": {"media": [media], "language": "en-US"}}))
        await ws.recv()
        reader = asyncio.create_task(drain(ws))
        await paced(ws.send, chunks(data, 320), sent_at)
        await ws.send(json.dumps({"version": "2", "id": sid, "type": "close", "seq": 2, "serverseq": 1,
                                  "position": "PT0S", "parameters": {"reason": "end"}}))
        await reader


async def audio_fork(url: str, clips, sent_at) -> None:
    data = s16(speech(clips, 8000))
    async with websockets.connect(url + "/v1/audio-fork?sample_rate=8000", subprotocols=["audio.drachtio.org"]) as ws:
        await ws.send(json.dumps({"language": "en"}))
        reader = asyncio.create_task(drain(ws))
        await paced(ws.send, chunks(data, 320), sent_at)
        await asyncio.sleep(3.0)          # the last final comes back before FreeSWITCH would hang up
        await ws.close()
        reader.cancel()


async def audiosocket(port: int, clips, sent_at) -> None:
    data = s16(speech(clips, 8000))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(struct.pack(">BH", 0x01, 16) + uuid.uuid4().bytes)

    async def send(packet: bytes) -> None:
        writer.write(struct.pack(">BH", 0x10, len(packet)) + packet)
        await writer.drain()
    await paced(send, chunks(data, 320), sent_at)
    writer.write(struct.pack(">BH", 0x00, 0))
    await writer.drain()
    await reader.read(3)
    writer.close()


def newest_session(http: str) -> dict:
    with urllib.request.urlopen(http + "/v1/history/sessions?limit=1", timeout=30) as r:
        sid = json.loads(r.read())["sessions"][0]["id"]
    with urllib.request.urlopen(http + f"/v1/history/sessions/{sid}", timeout=30) as r:
        return json.loads(r.read())


async def measure(name: str, run, server, clips) -> None:
    sent_at: dict[int, float] = {}
    try:
        await asyncio.wait_for(run(sent_at), sum(c.seconds + 1 for c in clips) + 120)
    except asyncio.TimeoutError:
        print(f"{name:14} did not finish in time; the server's last log lines:", flush=True)
        print("\n".join(list(server.log)[-25:]), flush=True)
        return
    await asyncio.sleep(0.5)
    session = newest_session(server.http)
    latencies = []
    for u in session["utterances"]:
        sent = sent_at.get(-(-u["end_ms"] // PACKET_MS) * PACKET_MS)
        if sent is not None:
            latencies.append(u["created_at"] - sent)
    text = " ".join(u["text"] for u in session["utterances"])
    wer = error_rate([" ".join(c.transcript for c in clips)], [text], "en")
    print(f"{name:14} utterances {len(session['utterances']):2}  WER {wer:.3f}  final latency "
          f"p50 {pct(latencies, 50):.2f} s  p95 {pct(latencies, 95):.2f} s", flush=True)


async def run(server, clips) -> None:
    ws = server.http.replace("http://", "ws://")
    for name, go in (("v1 16k s16le", lambda s: v1(ws, clips, 16000, s)), ("v1 8k mulaw", lambda s: v1(ws, clips, 8000, s)),
                     ("twilio", lambda s: twilio(ws, clips, s)), ("audiohook", lambda s: audiohook(ws, clips, s)),
                     ("audio_fork", lambda s: audio_fork(ws, clips, s)),
                     ("audiosocket", lambda s: audiosocket(server.audiosocket_port, clips, s))):
        await measure(name, go, server, clips)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.telephony_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", type=int, default=6, help="English dev clips to use (default: 6)")
    args = p.parse_args()
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = start_server("--audiosocket-port", str(port), "--log-level", "DEBUG")
    server.audiosocket_port = port
    try:
        asyncio.run(run(server, dev_clips("en")[:args.clips]))
    finally:
        stop_server(server)


if __name__ == "__main__":
    main()
