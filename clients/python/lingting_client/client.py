"""asyncio client for protocol v1:

    client = LingtingClient("ws://127.0.0.1:8765/v1/stream")
    async for event in client.stream(pcm_bytes, StreamOptions(language="en")):
        print(event["type"], event.get("text"))
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import AsyncIterable, AsyncIterator, Iterable

import msgpack
import websockets

from .audio import RATE, pcm_chunks

DEFAULT_URL = "ws://127.0.0.1:8765/v1/stream"


class LingtingError(Exception):
    """The server sent a fatal error, or the connection failed."""

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        self.code = code


@dataclass
class StreamOptions:
    language: str = "auto"
    partials: bool = True
    sample_rate: int = RATE
    encoding: str = "pcm_s16le"
    speed: float = 1.0            # pacing: 1 = real time, 0 = as fast as possible
    chunk_ms: int = 100
    word_timestamps: bool = True
    endpointing: dict | int | str | bool | None = None   # ms of silence, false, a preset, or a map
    utterance_end_ms: int | None = None     # utterance_end events after this much silence past the last word
    vad_events: bool | None = None          # false: no speech_started / speech_ended events
    hotwords: list = field(default_factory=list)
    watch: list = field(default_factory=list)     # e.g. ["hold", "T minus <number>"] -> alert events
    countdown: bool = False       # countdown events: a launch-style clock tracked from what is said
    partial_interval_ms: int | None = None
    itn: bool | None = None
    room: str | None = None       # the name viewers watch this stream by (ready.viewer_token lets one in)
    webhooks: list = field(default_factory=list)  # [{"url", "secret", "events"}]: signed POSTs of finals...
    captions: list = field(default_factory=list)  # [{"type": "youtube" | "zoom" | "obs", "url", ...}]
    diarize: bool = False         # finals get a speaker label (S1, S2...) from the voice
    max_speakers: int | None = None

    def start_message(self) -> dict:
        msg = {"type": "start", "sample_rate": self.sample_rate, "encoding": self.encoding,
               "language": self.language, "partials": self.partials,
               "word_timestamps": self.word_timestamps}
        for name in ("endpointing", "utterance_end_ms", "vad_events"):
            if getattr(self, name) is not None:
                msg[name] = getattr(self, name)
        if self.hotwords:
            msg["hotwords"] = self.hotwords
        if self.watch:
            msg["watch"] = self.watch
        if self.countdown:
            msg["countdown"] = True
        if self.partial_interval_ms is not None:
            msg["partial_interval_ms"] = self.partial_interval_ms
        if self.itn is not None:
            msg["itn"] = self.itn
        for name in ("room", "webhooks", "captions", "diarize", "max_speakers"):
            if getattr(self, name):
                msg[name] = getattr(self, name)
        return msg


@dataclass
class FileOptions:
    """Offline transcription of a whole file (the server decodes the container)."""
    language: str = "auto"
    word_timestamps: bool = True
    hotwords: list = field(default_factory=list)
    itn: bool | None = None
    chunk_bytes: int = 256 * 1024
    diarize: bool = False         # speaker labels, clustered over the whole file (a `speakers` event at the end)
    speakers: int | None = None   # diarize: exactly this many speakers (default: estimated)

    def start_message(self, path: str) -> dict:
        msg = {"type": "start", "mode": "offline", "filename": os.path.basename(path)[:255],
               "file_bytes": os.path.getsize(path), "language": self.language,
               "word_timestamps": self.word_timestamps}
        if self.hotwords:
            msg["hotwords"] = self.hotwords
        if self.itn is not None:
            msg["itn"] = self.itn
        if self.diarize:
            msg["diarize"] = True
            if self.speakers:
                msg["max_speakers"] = self.speakers
        return msg


def http_base(url: str) -> str:
    """ws://host:port/v1/stream -> http://host:port"""
    parts = urllib.parse.urlsplit(url)
    return f"{'https' if parts.scheme == 'wss' else 'http'}://{parts.netloc}"


class LingtingClient:
    def __init__(self, url: str = DEFAULT_URL, use_msgpack: bool = False, open_timeout: float = 10,
                 api_key: str | None = None, ssl=None):
        self.url = url
        self.api_key = api_key if api_key is not None else os.environ.get("LINGTING_API_KEY") or None
        self.ssl = ssl                  # an ssl.SSLContext for wss:// with a private CA
        self.use_msgpack = use_msgpack
        self.open_timeout = open_timeout
        self.audio_started_at: float | None = None   # monotonic time the first audio was due

    def _auth(self) -> dict:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def _encode(self, msg: dict):
        return msgpack.packb(msg, use_bin_type=True) if self.use_msgpack else json.dumps(msg)

    def _decode(self, frame) -> dict:
        return msgpack.unpackb(frame, raw=False) if self.use_msgpack else json.loads(frame)

    async def stream(self, audio: bytes | Iterable[bytes] | AsyncIterable[bytes],
                     options: StreamOptions | None = None) -> AsyncIterator[dict]:
        """Send audio (paced at options.speed x real time) and yield every
        server event, each a dict with a `type`, ending with `stopped`.
        Each event gets `received_at` (time.monotonic()) added."""
        options = options or StreamOptions()
        async for event in self._session(options.start_message(),
                                         lambda ws: self._send_audio(ws, audio, options)):
            yield event

    async def transcribe(self, path: str, options: FileOptions | None = None) -> AsyncIterator[dict]:
        """Upload a media file for offline transcription and yield every
        server event (`progress`, `final`, ...) ending with `stopped`.
        The file is read in chunks, never whole."""
        options = options or FileOptions()
        start = options.start_message(path)   # fails here, before connecting, if the file is missing
        async for event in self._session(start, lambda ws: self._send_file(ws, path, options.chunk_bytes)):
            yield event

    def export(self, session_id: str, fmt: str = "json") -> str:
        """A stored session from the server's history as json, txt, srt or vtt."""
        url = f"{http_base(self.url)}/v1/history/sessions/{urllib.parse.quote(session_id)}/export?format={fmt}"
        try:
            request = urllib.request.Request(url, headers=self._auth())
            with urllib.request.urlopen(request, timeout=60, context=self.ssl) as response:
                return response.read().decode("utf-8")
        except urllib.error.HTTPError as exc:
            try:
                detail = json.loads(exc.read()).get("message", "")
            except ValueError:
                detail = ""
            raise LingtingError(f"export failed: HTTP {exc.code} {detail}".strip()) from None
        except OSError as exc:
            raise LingtingError(f"export failed: {exc}") from None

    async def watch(self, room: str, token: str | None = None) -> AsyncIterator[dict]:
        """A room's events as a viewer: `room`, the finals so far, then live
        partial/final/alert/countdown events, ending with `room_closed`.
        token: the speaker's ready.viewer_token (else the API key is used)."""
        base = urllib.parse.urlsplit(self.url)
        url = urllib.parse.urlunsplit((base.scheme, base.netloc, f"/v1/rooms/{urllib.parse.quote(room)}/events",
                                       "", ""))
        extra = [f"lingting.token.{token}"] if token else []
        ws = await self._connect(url, extra, {} if token else self._auth())
        async with ws:
            async for event in self._events(ws):
                yield event

    async def _events(self, ws) -> AsyncIterator[dict]:
        """The server's events, each with `received_at`; a fatal error or a lost connection raises."""
        try:
            async for frame in ws:
                event = self._decode(frame)
                event["received_at"] = time.monotonic()
                yield event
                if event.get("type") == "error" and event.get("fatal"):
                    raise LingtingError(f"server error {event.get('code')}: {event.get('message')}",
                                        event.get("code"))
        except websockets.ConnectionClosedError as exc:
            raise LingtingError(f"connection lost: {exc}") from None

    async def _connect(self, url: str, extra_subprotocols=(), headers=None):
        protocol = "lingting.v1.msgpack" if self.use_msgpack else "lingting.v1.json"
        try:
            return await websockets.connect(url, subprotocols=[protocol, *extra_subprotocols],
                                            open_timeout=self.open_timeout, max_size=None,
                                            additional_headers=self._auth() if headers is None else headers,
                                            ssl=self.ssl)
        except websockets.InvalidStatus as exc:
            try:
                detail = json.loads(exc.response.body).get("message", "")
            except (ValueError, AttributeError, TypeError):
                detail = ""
            raise LingtingError(f"cannot connect to {url}: HTTP {exc.response.status_code} {detail}".strip(),
                                f"http_{exc.response.status_code}") from None
        except (OSError, websockets.InvalidHandshake, asyncio.TimeoutError) as exc:
            raise LingtingError(f"cannot connect to {url}: {exc}") from None

    async def _session(self, start: dict, sender) -> AsyncIterator[dict]:
        ws = await self._connect(self.url)
        async with ws:
            await ws.send(self._encode(start))
            sender = asyncio.create_task(sender(ws))
            try:
                async for event in self._events(ws):
                    yield event
                    if event.get("type") == "stopped":
                        return
            finally:
                sender.cancel()
                try:
                    await sender
                except (asyncio.CancelledError, websockets.ConnectionClosed):
                    pass
            raise LingtingError(f"server closed the stream before 'stopped' "
                                f"(code {ws.close_code}: {ws.close_reason or 'no reason'})")

    async def _send_file(self, ws, path: str, chunk_bytes: int) -> None:
        with open(path, "rb") as f:
            while chunk := await asyncio.to_thread(f.read, chunk_bytes):
                await ws.send(self._encode({"type": "audio", "data": chunk}) if self.use_msgpack else chunk)
        await ws.send(self._encode({"type": "stop"}))

    async def _send_audio(self, ws, audio, options: StreamOptions) -> None:
        bytes_per_second = options.sample_rate * (4 if options.encoding == "pcm_f32le" else
                                                  1 if options.encoding == "mulaw" else 2)
        if isinstance(audio, (bytes, bytearray)):
            audio = pcm_chunks(bytes(audio), options.chunk_ms, options.sample_rate,
                               bytes_per_second // options.sample_rate)
        started = self.audio_started_at = time.monotonic()
        sent = 0

        async def send(chunk: bytes):
            nonlocal sent
            if options.speed > 0:   # a chunk goes once all of it "was spoken", like a microphone's
                due = started + (sent + len(chunk)) / bytes_per_second / options.speed
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await ws.send(self._encode({"type": "audio", "data": chunk}) if self.use_msgpack else chunk)
            sent += len(chunk)

        if hasattr(audio, "__aiter__"):
            async for chunk in audio:
                await send(chunk)
        else:
            for chunk in audio:
                await send(chunk)
        await ws.send(self._encode({"type": "stop"}))
