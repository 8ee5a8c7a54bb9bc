"""lingting-server: run the streaming recognition server."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import signal
import sqlite3
import sys

from .assembly import access_policy, assemble, enforce_retention, worker_options
from .edge.app import EdgeServer
from .edge.telephony import audiosocket_setup
from .edge.streams import STREAM_PATH
from .engines.loader import load_engine, plan_workers
from .logs import redact, setup_logging
from .services.metrics import Metrics
from .services.batching import TextThread
from .settings import Settings, SettingsError, build_parser, load_settings, to_toml
from .engines.worker import ProcessEngine, WorkerStartError

log = logging.getLogger("lingting")


async def run(settings: Settings) -> None:
    settings.validate()
    model = settings.model
    if model.engine in ("whisper", "ray"):
        from lingting_models import resolve_model
        resolve_model(model.model)   # catalog errors surface here, before a worker starts
    network = settings.network
    access, host = access_policy(settings)
    if settings.telephony.audiosocket_port is not None:
        audiosocket_setup(settings.telephony, access)     # its mistakes surface before the model loads
    settings = dataclasses.replace(settings, network=dataclasses.replace(network, host=host))
    metrics = Metrics()
    if model.engine == "ray" or settings.cluster.address:
        try:
            from .cluster import cluster_engines
        except ImportError as exc:
            raise ValueError(f"--engine ray and --cluster need the cluster extra ({exc}): "
                             "pip install 'lingting[cluster]', or make cluster") from None
        # The model loads in the replicas; the edge loads ITN meanwhile.
        loading = asyncio.get_running_loop().run_in_executor(None, cluster_engines, settings)
        text = TextThread()
        await text.warm_up()
        engines = await loading
    else:
        engines, text = await local_engines(settings)
    lingting = assemble(settings, engines, text, access, metrics)
    server = EdgeServer(lingting, network.tls_cert, network.tls_key)
    await server.start()
    history = lingting.history
    retention = asyncio.get_running_loop().create_task(enforce_retention(history)) if history else None
    shown = host if ":" not in host else f"[{host}]"
    ws, http = ("wss", "https") if network.tls_cert else ("ws", "http")
    log.info("Lingting ready: %s://%s:%d%s (model %s on %s; page: %s://%s:%d/, health: /health, metrics: /metrics)",
             ws, shown, server.port, STREAM_PATH, lingting.engine.name, lingting.engine.device, http, shown,
             server.port)
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    await stop
    log.info("shutting down: finishing %d open stream(s)", len(lingting.streams))
    await server.shutdown(network.shutdown_grace_s, network.drain_s, network.last_frames_s)
    await lingting.collector.close()
    for worker in engines:
        if hasattr(worker, "close"):
            worker.close()
    if history:
        retention.cancel()
        history.close()
    log.info("stopped")


async def local_engines(settings: Settings) -> tuple[list, TextThread]:
    """The model in worker processes of this machine (started from threads at
    once, while ITN warms up on the text thread, where it will run)."""
    model = settings.model
    workers, threads = plan_workers(model.engine, model.device, model.model_workers)
    loop = asyncio.get_running_loop()
    options = worker_options(settings, threads)
    loading = [loop.run_in_executor(None, functools.partial(ProcessEngine, load_engine, options,
                                                            decode_timeout_s=model.decode_timeout_s))
               for _ in range(workers)]
    text = TextThread()
    await text.warm_up()
    engines = await asyncio.gather(*loading)
    log.info("%d model worker(s)%s", workers, f", {threads} CPU thread(s) each" if threads else "")
    return engines, text


def shareable(settings: Settings) -> Settings:
    """The settings with their secrets as ***: the secret ones whole, and the
    passwords, keys and tokens inside URLs (--history-db, --webhook)."""
    sections = {}
    for section in dataclasses.fields(settings):
        values = getattr(settings, section.name)
        changes = {}
        for f in dataclasses.fields(values):
            value = getattr(values, f.name)
            if f.metadata.get("secret") and value not in (None, ()):
                changes[f.name] = ("***",) if isinstance(value, tuple) else "***"
            elif isinstance(value, str):
                changes[f.name] = redact(value, "***")
            elif isinstance(value, tuple):
                changes[f.name] = tuple(redact(v, "***") if isinstance(v, str) else v for v in value)
        sections[section.name] = dataclasses.replace(values, **changes)
    return dataclasses.replace(settings, **sections)


def main(argv: list[str] | None = None) -> int:
    args = build_parser(description=__doc__).parse_args(argv)
    try:
        settings = load_settings(args)
    except SettingsError as exc:
        print(f"lingting-server: {exc}", file=sys.stderr)
        return 2
    if args.print_config:       # pasted into issues and chats: no secrets in it
        print(to_toml(shareable(settings)), end="")
        return 0
    setup_logging(settings.log.level, settings.log.format)
    if args.list_models:
        from lingting_models import list_models
        for m in list_models():
            print(f"{m['name']:<18} {','.join(m.get('languages', [])):<10} {m.get('description', '')}")
        return 0
    try:
        asyncio.run(run(settings))
    except (ValueError, OSError, WorkerStartError) as exc:
        log.error("%s", exc)
        return 2
    except Exception as exc:
        from lingting_models import CatalogError
        from .services.history.store import HistoryError
        if isinstance(exc, (CatalogError, HistoryError, sqlite3.Error)):
            log.error("%s", exc)
            return 2
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
