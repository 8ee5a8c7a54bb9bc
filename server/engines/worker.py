"""The model in a child process, behind the Engine interface.

A native crash (segfault, abort, OOM kill) or a hang in the recognizer then
costs one batch, not the server: the batch fails (its streams get an error
event), the child is replaced, and the next batch runs on the new one."""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from typing import Any, Callable

from ..wire.recognition import DecodeRequest, DecodeResult
from .base import EngineFailed

log = logging.getLogger("lingting.worker")


class WorkerFailed(EngineFailed):
    """The model worker died or hung on a batch; it has been restarted."""


class WorkerStartError(RuntimeError):
    """The model worker could not load the model."""


def _serve(conn, factory: Callable[[Any], Any], options) -> None:
    """The child: build the engine, then answer requests until told to stop."""
    try:
        engine = factory(options)
        conn.send(("ready", {"describe": engine.describe(), "name": engine.name, "device": engine.device,
                             "languages": tuple(getattr(engine, "languages", ()) or ())}))
    except BaseException as exc:   # report why, or the parent only sees EOF
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    while True:
        try:
            command, payload = conn.recv()
        except EOFError:           # the parent is gone
            return
        if command == "close":
            return
        try:
            if command == "decode":
                conn.send(("ok", engine.decode(payload)))
            elif command == "fallback":
                moved = engine.fallback_to_cpu()
                conn.send(("ok", (moved, engine.device, engine.describe())))
        except Exception as exc:
            try:
                conn.send(("error", exc))
            except Exception:      # an exception that does not pickle
                conn.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))


class ProcessEngine:
    """Runs `factory(options)` (a module-level function, so it pickles; options:
    engines/loader.py's WorkerOptions, or anything with `on_cpu()`) in a child
    process. Its methods block: call them from the model thread."""

    def __init__(self, factory: Callable[[Any], Any], options, decode_timeout_s: float = 60.0,
                 start_timeout_s: float = 600.0):
        self._factory, self._options = factory, options
        self.decode_timeout_s = decode_timeout_s
        self.start_timeout_s = start_timeout_s
        self._context = multiprocessing.get_context("spawn")   # no forked copies of threads or locks
        self._lock = threading.Lock()
        self.restarts = 0
        self._process = None
        self._conn = None
        self._start()

    # ---- the Engine interface -------------------------------------------
    def decode(self, requests: list[DecodeRequest]) -> list[DecodeResult]:
        return self._call("decode", requests, self.decode_timeout_s)

    def fallback_to_cpu(self) -> bool:
        moved, self.device, self._describe = self._call("fallback", None, self.start_timeout_s)
        if moved:   # a restart must come back on the CPU too
            self._options = self._options.on_cpu()
        return moved

    def describe(self) -> dict:
        return {**self._describe, "worker_pid": self.pid, "worker_restarts": self.restarts}

    # ---- the child --------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def _start(self) -> None:
        parent, child = self._context.Pipe()
        process = self._context.Process(target=_serve, args=(child, self._factory, self._options),
                                        name="lingting-model", daemon=True)
        process.start()
        child.close()
        if not parent.poll(self.start_timeout_s):
            process.kill()
            raise WorkerStartError(f"the model worker did not start within {self.start_timeout_s:.0f} s")
        try:
            status, info = parent.recv()
        except EOFError:
            process.join(5)
            raise WorkerStartError(f"the model worker exited while starting (exit code {process.exitcode})") from None
        if status != "ready":
            process.join(5)
            raise WorkerStartError(f"the model worker could not load the model: {info}")
        self._process, self._conn = process, parent
        self._describe = info["describe"]
        self.name, self.device, self.languages = info["name"], info["device"], info["languages"]
        log.info("model worker %d ready (%s on %s)", process.pid, self.name, self.device)

    def _restart(self, why: str) -> None:
        self.restarts += 1
        old = self._process
        log.error("model worker %s %s: restarting it (restart %d)", old.pid if old else "?", why, self.restarts)
        if old is not None and old.is_alive():
            old.kill()
        if old is not None:
            old.join(10)
        self._conn.close()
        started = time.monotonic()
        self._start()
        log.info("model worker back after %.1f s", time.monotonic() - started)

    def _call(self, command: str, payload, timeout: float):
        with self._lock:
            try:
                self._conn.send((command, payload))
                if not self._conn.poll(timeout):
                    self._restart(f"gave no answer in {timeout:.0f} s")
                    raise WorkerFailed(f"the model worker hung (no answer in {timeout:.0f} s) and was restarted")
                status, value = self._conn.recv()
            except (EOFError, OSError):
                self._process.join(1)
                code = self._process.exitcode
                self._restart(f"died (exit code {code})")
                raise WorkerFailed(f"the model worker died (exit code {code}) and was restarted") from None
        if status == "error":
            raise value
        return value

    def close(self) -> None:
        with self._lock:
            if self._process is None:
                return
            try:
                self._conn.send(("close", None))
            except OSError:
                pass
            self._process.join(10)
            if self._process.is_alive():
                self._process.kill()
            self._process = None
