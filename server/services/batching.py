"""Batch collector: gathers decode jobs from every session into batches for
the model workers (each owns the model on its device and decodes one batch at
a time: on a CPU one worker per core, which decodes faster than one worker on
all cores; on a GPU one worker, whose batches pay).

Which waiting job goes next (finals first, a lane's newest partial only, files
taking turns with live partials) is decode_queue.py's policy; this module runs
the workers and turns their results into Recognized.

A result's text work (hotwords, ITN, watch phrases) runs on the text thread
while the model goes on with the next batch; futures resolve to Recognized."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ..engines.base import Engine, EngineFailed, EngineOutOfMemory
from ..text.itn import warm_up as warm_up_itn
from ..wire.recognition import DecodeResult
from ..text.postprocess import TextWork, postprocess
from ..streaming.commands import DecodeJob
from .decode_queue import DecodeQueue, Waiting

log = logging.getLogger("lingting.batching")


@dataclass
class CollectorStats:
    batches: Counter = field(default_factory=Counter)          # batch size -> count
    decoded: Counter = field(default_factory=Counter)          # kind -> requests decoded
    decode_seconds: Counter = field(default_factory=Counter)   # kind -> seconds in the engine
    partials_dropped: int = 0
    oom_splits: int = 0
    failures: int = 0

    def as_dict(self) -> dict:
        return {"batches": {str(k): v for k, v in sorted(self.batches.items())},
                "decoded": dict(self.decoded),
                "decode_seconds": {k: round(v, 3) for k, v in self.decode_seconds.items()},
                "partials_dropped": self.partials_dropped, "oom_splits": self.oom_splits,
                "failures": self.failures}


class BatchCollector:
    def __init__(self, engines: Engine | list[Engine], max_batch_size: int = 8, max_wait_ms: float = 10.0,
                 max_partial_batch_size: int | None = None, metrics=None,
                 max_file_batch_size: int | None = None, text: TextThread | None = None):
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self.engines = list(engines) if isinstance(engines, (list, tuple)) else [engines]
        self.max_batch_size = max_batch_size
        # A final that arrives while partials decode waits for that whole
        # batch: smaller partial batches bound that wait.
        self.max_partial_batch_size = min(max_batch_size, max_partial_batch_size or max_batch_size)
        # Likewise for offline files' finals: a live final waits for one such batch at most.
        self.max_file_batch_size = min(max_batch_size, max_file_batch_size or max_batch_size)
        self.max_wait = max_wait_ms / 1000
        self.stats = CollectorStats()
        self.metrics = metrics          # a .metrics.Metrics, or None
        self._queue = DecodeQueue()
        self._wakeup = asyncio.Event()
        self._idle = list(range(len(self.engines)))[::-1]             # workers free for a batch
        self._executor = ThreadPoolExecutor(len(self.engines), thread_name_prefix="lingting-model")
        self.text = text or TextThread()
        self._task: asyncio.Task | None = None
        self._busy: set[asyncio.Task] = set()

    # ---- lifecycle ----------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="batch-collector")

    @property
    def engine(self) -> Engine:
        """The first worker: what every worker runs (name, device, languages)."""
        return self.engines[0]

    async def close(self) -> None:
        for task in [self._task, *self._busy]:
            if task:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.text.close()

    @property
    def queue_depth(self) -> dict:
        return self._queue.depth

    # ---- submitting ---------------------------------------------------
    def submit(self, job: DecodeJob) -> asyncio.Future:
        """Future of the job's Recognized result; a partial replaced by a newer
        one resolves to None."""
        future = asyncio.get_running_loop().create_future()
        if self._queue.add(Waiting(job, future, time.monotonic())):
            self.stats.partials_dropped += 1
            if self.metrics:
                self.metrics.partials_dropped.inc()
        self._wakeup.set()
        return future

    def expedite(self, job: DecodeJob) -> None:
        """A speculative final's endpoint fired: if it still waits, it is now a final."""
        if self._queue.expedite(job):
            self._wakeup.set()

    def cancel(self, job: DecodeJob) -> None:
        """Speech resumed: a speculative final that still waits need not run
        (it resolves to None; one already decoding is ignored by its session)."""
        self._queue.cancel(job)

    def cancel_session(self, session_id: str) -> None:
        """The client left: its waiting partial and file finals need not run.
        (Its live finals still run: history keeps them.)"""
        self._queue.cancel_session(session_id)

    # ---- the loop -----------------------------------------------------
    def _take_batch(self) -> list[Waiting]:
        # Several workers share max_batch_size: eight finals due at once go to
        # two workers as 4 + 4, not 8 + 0 (one worker, one GPU: the whole batch).
        finals = -(-self.max_batch_size // len(self.engines))
        return self._queue.take(finals, self.max_file_batch_size, self.max_partial_batch_size)

    @property
    def worker_restarts(self) -> int:
        """How often any worker died or hung and was replaced (ProcessEngine counts its own)."""
        return sum(getattr(engine, "restarts", 0) for engine in self.engines)

    @property
    def workers_busy(self) -> int:
        return len(self.engines) - len(self._idle)

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if not self._idle:
                continue                             # a worker that finishes wakes us again
            if self.max_wait and len(self._queue) < self.max_batch_size:
                await asyncio.sleep(self.max_wait)   # let more sessions join this batch
            while self._idle and (batch := self._take_batch()):
                if self.metrics:
                    now = time.monotonic()
                    for waiting in batch:
                        self.metrics.queue_wait.labels(self._kind(batch)).observe(now - waiting.since)
                worker = self._idle.pop()
                task = asyncio.get_running_loop().create_task(self._work(worker, batch))
                self._busy.add(task)
                task.add_done_callback(self._busy.discard)

    async def _work(self, worker: int, batch: list[Waiting]) -> None:
        try:
            await self._decode(asyncio.get_running_loop(), self.engines[worker], batch)
        finally:
            self._idle.append(worker)
            self._wakeup.set()

    @staticmethod
    def _kind(batch: list[Waiting]) -> str:
        return "file" if batch[0].job.background else batch[0].job.kind

    async def _decode(self, loop, engine: Engine, batch: list[Waiting], retried: bool = False) -> None:
        kind = self._kind(batch)
        started = time.perf_counter()
        try:
            results = await loop.run_in_executor(self._executor, engine.decode, [w.job.request for w in batch])
        except EngineOutOfMemory:
            self.stats.oom_splits += 1
            if len(batch) > 1:
                half = len(batch) // 2
                log.warning("device out of memory on a batch of %d: retrying as %d + %d",
                            len(batch), half, len(batch) - half)
                await self._decode(loop, engine, batch[:half], retried)
                await self._decode(loop, engine, batch[half:], retried)
                return
            if await loop.run_in_executor(self._executor, engine.fallback_to_cpu):
                await self._decode(loop, engine, batch, retried)
                return
            self._fail(batch, "out of memory")
            return
        except EngineFailed as exc:   # known and already recovered from: no traceback
            finals = [w for w in batch if w.job.kind == "final"]
            if finals and not retried:
                # A final's audio is still here: the recovered engine gets one more try at it.
                # Partials are not retried: a newer one will come.
                log.error("decode of a batch of %d failed: %s; retrying its %d final(s) once",
                          len(batch), exc, len(finals))
                self._fail([w for w in batch if w.job.kind != "final"], f"{type(exc).__name__}: {exc}")
                await self._decode(loop, engine, finals, retried=True)
                return
            log.error("decode of a batch of %d failed%s: %s", len(batch), " again" if retried else "", exc)
            self._fail(batch, f"{type(exc).__name__}: {exc}" + (" (on both tries: given up)" if retried else ""))
            return
        except Exception as exc:  # a broken decode must not stop the loop
            log.exception("decode of a batch of %d failed", len(batch))
            self._fail(batch, f"{type(exc).__name__}: {exc}")
            return
        seconds = time.perf_counter() - started
        self.stats.batches[len(batch)] += 1
        self.stats.decoded[kind] += len(batch)
        self.stats.decode_seconds[kind] += seconds
        if self.metrics:
            self.metrics.batch_size.labels(kind).observe(len(batch))
            self.metrics.decode_seconds.labels(kind).observe(seconds)
        self._postprocess(batch, results)

    def _postprocess(self, batch: list[Waiting], results: list) -> None:
        done = self.text.run([(w.job.text, w.job.kind, result) for w, result in zip(batch, results)])

        def deliver(future: asyncio.Future) -> None:
            if future.cancelled():
                return
            if future.exception() is not None:
                log.error("text work of a batch of %d failed: %r", len(batch), future.exception())
                self._fail(batch, f"text work failed: {future.exception()!r}")
                return
            for waiting, recognized in zip(batch, future.result()):
                if not waiting.future.done():
                    waiting.future.set_result(recognized)
        done.add_done_callback(deliver)

    def _fail(self, batch: list[Waiting], reason: str) -> None:
        self.stats.failures += len(batch)
        if self.metrics:
            self.metrics.decode_failures.inc(len(batch))
        for waiting in batch:
            if not waiting.future.done():
                waiting.future.set_exception(RuntimeError(reason))


class TextThread:
    """The one thread text work runs on (postprocess.py says why one, and always the same)."""

    def __init__(self):
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="lingting-text")

    async def warm_up(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._pool, warm_up_itn)

    def run(self, items: list[tuple[TextWork, str, DecodeResult]]) -> asyncio.Future:
        """Future of the Recognized for each (work, kind, result)."""
        return asyncio.get_running_loop().run_in_executor(
            self._pool, lambda: [postprocess(*item) for item in items])

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
