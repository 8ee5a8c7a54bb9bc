"""The one small interface every recognition engine implements."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

Kind = Literal["partial", "final"]


MODEL_RATE = 16000    # what every engine takes (mono float32); streams' clocks count samples at this rate


@dataclass
class DecodeRequest:
    audio: np.ndarray                  # 16 kHz mono float32
    kind: Kind
    language: str | None = None        # None: let the model detect it
    hotwords: tuple[str, ...] = ()     # phrases to bias toward, most important first
    word_timestamps: bool = False
    stream: str | None = None          # which stream and utterance: engines with per-stream state key on it
    speaker_embedding: bool = False    # finals of diarized streams: who spoke (engines/speakers.py)


@dataclass
class Word:
    word: str
    start_ms: int                      # relative to the start of the request's audio
    end_ms: int
    probability: float


@dataclass
class DecodeResult:
    text: str
    language: str | None
    words: list[Word] | None = None
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    extra: dict = field(default_factory=dict)


class EngineFailed(RuntimeError):
    """The engine failed on this batch and has recovered (e.g. its worker was restarted)."""


class EngineOutOfMemory(RuntimeError):
    """The device ran out of memory for this batch; a smaller one may fit."""


def decode_by_kind(requests: list[DecodeRequest], decoders: dict) -> list[DecodeResult]:
    """Results in request order, each kind decoded as one group by decoders[kind]
    (finals first: they are the ones a client waits for). Whatever the engine,
    a result's repeated tail and words no audio backs are trimmed (guard.py)."""
    from .guard import trim_hallucination   # guard builds on this module's types
    results: list[DecodeResult | None] = [None] * len(requests)
    for kind in ("final", "partial"):
        group = [i for i, r in enumerate(requests) if r.kind == kind]
        if group:
            for i, result in zip(group, decoders[kind]([requests[i] for i in group])):
                results[i] = trim_hallucination(result, len(requests[i].audio) * 1000 // MODEL_RATE)
    return results  # type: ignore[return-value]


def is_out_of_memory(exc: BaseException) -> bool:
    return "out of memory" in str(exc).lower()     # torch and CTranslate2 both say so


@contextmanager
def out_of_memory_as_engine_error():
    """A device's out-of-memory error (CUDA, MPS) becomes EngineOutOfMemory:
    the batch collector then retries with smaller batches."""
    try:
        yield
    except RuntimeError as exc:
        if is_out_of_memory(exc):
            raise EngineOutOfMemory(str(exc)) from exc
        raise


class Engine(Protocol):
    name: str
    device: str
    languages: tuple[str, ...]         # empty: many (model decides)

    def decode(self, requests: list[DecodeRequest]) -> list[DecodeResult]:
        """Decode a batch; results in request order. Runs on the worker thread."""
        ...

    def fallback_to_cpu(self) -> bool:
        """Move to the CPU after repeated device failures; False if already there."""
        ...

    def describe(self) -> dict: ...
