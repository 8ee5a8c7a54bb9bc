"""What an edge is made of, wherever it runs (lingting-server, or a Ray Serve
replica: cluster.py): its access policy, its history, and the Lingting
object around its engines (local model workers or recognizer replicas)."""

from __future__ import annotations

import asyncio
import logging

from .services.access import AccessPolicy, load_keys
from .services.batching import BatchCollector
from .edge.app import Lingting
from .engines.loader import ENGINES, WorkerOptions
from .services.history.store import AsyncHistory, Retention, default_path, open_store
from .services.metrics import Metrics
from .services.batching import TextThread
from .settings import Settings

log = logging.getLogger("lingting")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def access_policy(settings: Settings) -> tuple[AccessPolicy, str]:
    """The policy, and the host to bind: without keys, loopback only."""
    access = settings.access
    policy = AccessPolicy(load_keys(access.api_keys_file, access.api_keys), access.allowed_origins,
                          allowed_hosts=access.allowed_hosts)
    host = settings.network.host
    if policy.open and host not in LOOPBACK:
        log.warning("no API keys configured: binding to 127.0.0.1 instead of %s. Configure keys "
                    "(--api-keys-file or LINGTING_API_KEYS) to serve other machines", host)
        host = "127.0.0.1"
    elif policy.open:
        log.info("no API keys configured: open to this machine only")
    else:
        log.info("%d API key(s) configured; streams and history need one", len(policy.keys))
    return policy, host


def worker_options(settings: Settings, cpu_threads: int = 0) -> WorkerOptions:
    """What a model worker (or a recognizer replica) loads its engine with."""
    model = settings.model
    engine = "whisper" if model.engine == "ray" else model.engine
    return WorkerOptions(engine, model.model, model.device, ENGINES[engine].options_from(settings, cpu_threads),
                         vad_model=model.vad_model, speaker_model=settings.speakers.speaker_model,
                         log_level=settings.log.level, log_format=settings.log.format)


def assemble(settings: Settings, engines: list, text: TextThread, access: AccessPolicy,
             metrics: Metrics) -> Lingting:
    """Everything an edge shares, around its engines (local workers or recognizer replicas)."""
    batching = settings.batching
    collector = BatchCollector(engines, batching.max_batch_size, batching.max_wait_ms,
                               batching.max_partial_batch_size, metrics, batching.max_file_batch_size, text)
    history = open_history(settings)
    collector.start()
    return Lingting(engines[0], collector, settings, engines[0].describe(), history, access, metrics)


def open_history(settings: Settings) -> AsyncHistory | None:
    history = settings.history
    if history.db == "off":
        log.info("history is off: transcripts are not stored")
        return None
    store = open_store(history.db or default_path())
    interrupted = store.mark_interrupted()
    log.info("history: %s%s", store.path,
             f" ({interrupted} session(s) left open by the last run marked interrupted)" if interrupted else "")
    return AsyncHistory(store, Retention(history.max_age_days, history.max_mb))


async def enforce_retention(history: AsyncHistory, every_s: float = 3600) -> None:
    """Age and size limits, at start and then hourly (and, with several edges, their dead ones' sessions)."""
    if not (history.retention.max_age_days or history.retention.max_mb) and history.store.edge is None:
        return
    while True:
        try:
            deleted = await history.enforce_retention()
            if deleted:
                log.info("history retention: deleted %d old session(s)", deleted)
        except Exception:
            log.exception("history retention failed")
        await asyncio.sleep(every_s)
