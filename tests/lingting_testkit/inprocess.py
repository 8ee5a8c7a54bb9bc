"""The whole edge in this process, on a real port, with a small recording
engine instead of a model: edge behaviour tested in seconds."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

from lingting_server.services.access import AccessPolicy, ApiKey
from lingting_server.services.batching import BatchCollector
from lingting_server.edge.app import EdgeServer, Lingting
from lingting_server.wire.recognition import DecodeResult, Word
from lingting_server.services.history.store import AsyncHistory, open_store
from lingting_server.services.metrics import Metrics
from lingting_server.settings import LimitSettings, NetworkSettings, OutputSettings, Settings


class RecordingEngine:
    """Answers every request with `text` (after `delay_s`) and records what it
    was asked (unless `record` is off: a memory test must not keep every request)."""
    name, device = "recording", "cpu"

    def __init__(self, text: str = "hello world", languages: tuple[str, ...] = ("en",), delay_s: float = 0.0,
                 record: bool = True):
        self.text = text
        self.languages = languages
        self.delay_s = delay_s
        self.record = record
        self.requests: list = []

    def describe(self) -> dict:
        return {"model": "recording", "device": "cpu"}

    def decode(self, requests):
        if self.record:
            self.requests += requests
        if self.delay_s:
            time.sleep(self.delay_s)
        return [DecodeResult(self.text, "en", [Word("hello", 0, 200, 0.9)] if r.word_timestamps else None)
                for r in requests]


@dataclass
class InProcess:
    lingting: Lingting
    server: EdgeServer
    engine: RecordingEngine

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.server.port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"


@contextlib.asynccontextmanager
async def edge_server(engine: RecordingEngine | None = None, keys: tuple[ApiKey, ...] = (),
                      history_path: str | None = None, network: dict | None = None, outputs: dict | None = None,
                      **limits):
    engine = engine or RecordingEngine()
    metrics = Metrics()
    collector = BatchCollector(engine, max_wait_ms=0, metrics=metrics)
    collector.start()
    history = AsyncHistory(open_store(history_path)) if history_path else None
    settings = Settings(network=NetworkSettings(port=0, **(network or {})),
                        limits=LimitSettings(**{"max_connections_per_ip": 1000, **limits}),
                        outputs=OutputSettings(**(outputs or {})))
    lingting = Lingting(engine, collector, settings, engine.describe(), history, AccessPolicy(list(keys)), metrics)
    server = EdgeServer(lingting)
    await server.start()
    try:
        yield InProcess(lingting, server, engine)
    finally:
        if not lingting.shutting_down:
            await server.shutdown(grace_s=5)
        await collector.close()
        if history:
            history.close()
