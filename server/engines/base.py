"""The one small interface every recognition engine implements."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Protocol

from ..wire.recognition import DecodeRequest, DecodeResult


class EngineFailed(RuntimeError):
    """The engine failed on this batch and has recovered (e.g. its worker was restarted)."""


class EngineOutOfMemory(RuntimeError):
    """The device ran out of memory for this batch; a smaller one may fit."""


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
