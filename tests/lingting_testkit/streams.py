"""Helpers for tests of streams: stream through the real Python client, read
what came back (finals, the event grammar), build a final event."""

from __future__ import annotations

import asyncio
import io
import json
import wave

import numpy as np
import soxr
import websockets

from lingting_client import LingtingClient, StreamOptions
from lingting_server.wire import events as core_events
from lingting_testkit.corpus import read_wav


async def stream_events(url: str, pcm, options: StreamOptions | None = None, use_msgpack=False) -> list[dict]:
    client = LingtingClient(url, use_msgpack=use_msgpack)
    events = [e async for e in client.stream(pcm, options or StreamOptions())]
    for e in events:
        e["audio_started_at"] = client.audio_started_at
    return events


def final(utterance: int, text: str, start_ms: int = 0, end_ms: int = 100, words=None, error=None,
          language: str = "en") -> core_events.Final:
    """A final as the core emits it (raw text = text, ended by silence)."""
    return core_events.Final(utterance, start_ms, end_ms, "silence", text, text, language, words, error=error)


def finals(events: list[dict], *fields: str) -> list:
    """The finals' texts, or a tuple of the named fields for each final."""
    rows = [e for e in events if e["type"] == "final"]
    return [tuple(e[f] for f in fields) for e in rows] if fields else [e["text"] for e in rows]


def finals_text(events: list[dict]) -> str:
    return " ".join(e["text"] for e in events if e["type"] == "final" and e["text"]).strip()


def check_event_grammar(events: list[dict]) -> None:
    """ready first, stopped last; every utterance: started, ended, final, in order."""
    kinds = [e["type"] for e in events]
    assert kinds[0] == "ready" and kinds[-1] == "stopped", kinds
    cleared = {e["utterance"] for e in events if e["type"] == "cleared"}
    started = [e["utterance"] for e in events if e["type"] == "speech_started" and e["utterance"] not in cleared]
    ended = [e["utterance"] for e in events if e["type"] == "speech_ended"]
    finals = [e["utterance"] for e in events if e["type"] == "final"]
    assert started == ended == finals and finals == sorted(finals), (started, ended, finals)
    cleared.discard(None)
    assert set(finals) | cleared == set(range(len(finals) + len(cleared))), (finals, cleared)
    for e in events:
        if e["type"] in ("partial", "final"):
            assert 0 <= e["start_ms"] <= e["end_ms"]
        if e["type"] == "partial":
            assert e["text"].startswith(e["stable_text"])
    assert events[-1]["utterances"] >= len(finals)


async def gather_limited(coros, limit: int):
    semaphore = asyncio.Semaphore(limit)

    async def run(coro):
        async with semaphore:
            return await coro
    return await asyncio.gather(*(run(c) for c in coros))


def wav_pcm(path) -> bytes:
    data, rate = read_wav(path)
    assert rate == 16000
    return data.tobytes()


def resampled(path, rate: int) -> np.ndarray:
    data, source_rate = read_wav(path)
    return soxr.resample(data.astype(np.float32) / 32768, source_rate, rate).astype(np.float32)


def mulaw_encode(samples: np.ndarray) -> bytes:
    """G.711 mu-law: the test's own encoder, independent of the server's decoder table."""
    x = np.clip(samples, -1, 1)
    y = np.sign(x) * np.log1p(255 * np.abs(x)) / np.log1p(255)
    q = np.round((y + 1) / 2 * 255).astype(np.int32)   # 0..255, 128 ~ zero
    # G.711 stores the complement, with the sign bit set for positive values.
    code = np.where(q >= 128, 0xFF - (q - 128), 0x7F - (127 - q))
    return code.astype(np.uint8).tobytes()


def wav_file(pcm: bytes, rate: int = 16000) -> bytes:
    """16-bit mono PCM in a WAV container, as an uploaded file."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(rate)
        w.writeframes(pcm)
    return out.getvalue()


async def events_until_closed(ws) -> list[dict]:
    """Every JSON event a raw WebSocket client gets until the server closes."""
    events = []
    try:
        async for message in ws:
            events.append(json.loads(message))
    except websockets.ConnectionClosed:
        pass
    return events


async def drain(ws) -> int | None:
    """Read until the server closes; its close code."""
    try:
        async for _ in ws:
            pass
    except websockets.ConnectionClosed:
        pass
    return ws.close_code

