"""The recognizer as a Ray Serve deployment, and the engine an edge uses to reach it.

`Recognizer` replicas each own a model on their device (load_engine: a GPU
when the replica got one, else its CPUs). Edges keep their batch collectors
(finals first, newest partial only, no starvation) and send each batch as one
request; a replica merges the batches that several edges send within a few
milliseconds into one decode (serve.batch), which is where a GPU gains.

`RayEngine` is the Engine interface over a deployment handle. A replica that
dies mid-batch (a crash, a node lost, a kill) costs a retry: the batch goes
to another replica, so no final is lost and no stream closes. Serve starts a
new replica in the dead one's place. Needs the `cluster` extra (ray[serve])."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time

import ray
from ray import serve
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError, RayTaskError
from ray.serve import metrics

from ..wire.recognition import DecodeRequest, DecodeResult
from .base import EngineFailed, EngineOutOfMemory
from .loader import WorkerOptions, load_engine

log = logging.getLogger("lingting.ray")
APP_NAME = "lingting-recognizer"     # the recognizer application `lingting-server --cluster` deploys or finds
DEPLOYMENT = "Recognizer"
MERGE_WAIT_S = 0.005                 # a replica waits this long for other edges' batches to merge


@serve.deployment(name=DEPLOYMENT, max_ongoing_requests=8, health_check_period_s=5, health_check_timeout_s=30,
                  graceful_shutdown_timeout_s=60, logging_config={"enable_access_log": False})
class Recognizer:
    """One replica: a model on its device. Loaded with the same settings as a
    single server's model worker (engines/loader.py)."""

    def __init__(self, options: WorkerOptions):
        if options.device == "auto" and not ray.get_gpu_ids():     # no GPU reserved
            options = options.on_cpu()
        self.engine = load_engine(options)
        self.decoding = threading.Lock()
        self.batches = 0
        # Exported by Ray's metrics agent on each node, tagged with the deployment and replica.
        self.decode_seconds = metrics.Histogram(
            "lingting_replica_decode_seconds", "time of one merged decode on this replica",
            boundaries=[0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10])
        self.decoded = metrics.Counter("lingting_replica_requests", "decode requests (utterance pieces) decoded")

    async def decode(self, requests: list[DecodeRequest]) -> list[DecodeResult]:
        return await self._merged(requests)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=MERGE_WAIT_S)
    async def _merged(self, batches: list[list[DecodeRequest]]) -> list[list[DecodeResult]]:
        """Several edges' batches decoded as one (the engine groups them by kind)."""
        flat = [request for batch in batches for request in batch]
        results = await asyncio.get_running_loop().run_in_executor(None, self._decode, flat)
        out, at = [], 0
        for batch in batches:
            out.append(results[at:at + len(batch)])
            at += len(batch)
        return out

    def _decode(self, requests: list[DecodeRequest]) -> list[DecodeResult]:
        with self.decoding:
            self.batches += 1
            started = time.monotonic()
            results = self.engine.decode(requests)
        self.decode_seconds.observe(time.monotonic() - started)
        self.decoded.inc(len(requests))
        return results

    def describe(self) -> dict:
        context = serve.get_replica_context()
        return {**self.engine.describe(), "name": self.engine.name, "device": self.engine.device,
                "languages": list(getattr(self.engine, "languages", ()) or ()), "replica": context.replica_tag,
                "pid": os.getpid(), "batches": self.batches}



class RayEngine:
    """The Engine interface over the Recognizer deployment. Its methods block:
    the batch collector calls them from its model threads, one per lane."""

    def __init__(self, handle, decode_timeout_s: float = 60.0, retry_for_s: float = 60.0):
        self.handle = handle
        self.decode_timeout_s = decode_timeout_s
        self.retry_for_s = retry_for_s    # a batch whose replica died is sent again for this long (--replica-retry-s)
        self.restarts = 0             # batches sent again after a replica died (health: worker_restarts)
        info = self._call("describe")
        self.name, self.device = info["name"], info["device"]
        self.languages = tuple(info["languages"])
        self._describe = {k: v for k, v in info.items() if k not in ("replica", "pid", "batches", "languages")}

    def decode(self, requests: list[DecodeRequest]) -> list[DecodeResult]:
        return self._call("decode", requests)

    def fallback_to_cpu(self) -> bool:
        return False                  # each replica chose its device when it loaded

    def describe(self) -> dict:
        return {**self._describe, "engine": "ray"}

    def _call(self, method: str, *args):
        delay, give_up = 0.2, time.monotonic() + self.retry_for_s
        while True:
            try:
                return getattr(self.handle, method).remote(*args).result(timeout_s=self.decode_timeout_s)
            except (ActorDiedError, ActorUnavailableError, RayActorError) as exc:
                if time.monotonic() > give_up:
                    raise EngineFailed(f"no recognizer replica answered for {self.retry_for_s:.0f} s: {exc}") from None
                self.restarts += 1
                log.warning("recognizer replica lost during a %s (%s); sending it to another replica",
                            method, type(exc).__name__)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
            except RayTaskError as exc:        # the replica's own error: EngineOutOfMemory splits the batch
                cause = exc.cause if isinstance(exc.cause, Exception) else None
                if isinstance(cause, (EngineOutOfMemory, EngineFailed)):
                    raise cause from None
                raise EngineFailed(f"the recognizer failed: {cause or exc}") from None
            except TimeoutError:
                raise EngineFailed(f"the recognizer gave no answer in {self.decode_timeout_s:.0f} s") from None
