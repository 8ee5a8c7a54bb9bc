"""lingting-server: run the streaming recognition server."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import signal
import sqlite3
import sys

from .access import AccessPolicy, load_keys
from .batching import BatchCollector
from .edge.app import EdgeServer, Lingting
from .edge.telephony import audiosocket_setup
from .edge.webhooks import server_targets
from .edge.streams import STREAM_PATH
from .engines.loader import load_engine, plan_workers
from .history import AsyncHistory, Retention, default_path, open_store
from .logs import setup_logging
from .metrics import Metrics
from .postprocess import TextThread
from .settings import Settings, SettingsError, build_parser, load_settings, to_toml
from .worker import ProcessEngine, WorkerStartError

log = logging.getLogger("lingting")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def access_policy(settings: Settings) -> tuple[AccessPolicy, str]:
    """The policy, and the host to bind: without keys, loopback only."""
    access = settings.access
    policy = AccessPolicy(load_keys(access.api_keys_file), access.allowed_origins, allowed_hosts=access.allowed_hosts)
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


async def run(settings: Settings) -> None:
    model = settings.model
    if model.engine == "whisper":
        from lingting_models import resolve_model
        resolve_model(model.model)   # catalog errors surface here, before a worker starts
    network = settings.network
    if bool(network.tls_cert) != bool(network.tls_key):
        raise ValueError("--tls-cert and --tls-key go together")
    access, host = access_policy(settings)
    outputs = settings.outputs
    if server_targets(outputs.webhooks, outputs.webhook_secret, outputs.webhook_events) and \
            settings.history.db == "off":     # its mistakes surface before the model loads
        raise ValueError("--webhook needs the history database (its outbox keeps what is not yet delivered); "
                         "drop --history-db off")
    if settings.telephony.audiosocket_port is not None:
        audiosocket_setup(settings.telephony, access)     # its mistakes surface before the model loads
    settings = dataclasses.replace(settings, network=dataclasses.replace(network, host=host))
    workers, threads = plan_workers(model.engine, model.device, model.model_workers)
    worker_settings = {"model": model.model, "device": model.device, "compute_type": model.compute_type,
                       "final_beam_size": model.final_beam_size, "window": model.window,
                       "log_level": settings.log.level, "log_format": settings.log.format,
                       "engine": model.engine, "online_model": model.online_model, "hub": model.model_hub,
                       "model_language": model.model_language, "vad_model": model.vad_model,
                       "speaker_model": model.speaker_model,
                       "cpu_threads": threads}
    metrics = Metrics()
    # The model loads in its worker processes (started from threads at once)
    # while ITN warms up on the text thread, where it will run.
    loop = asyncio.get_running_loop()
    loading = [loop.run_in_executor(None, functools.partial(ProcessEngine, load_engine, worker_settings,
                                                            decode_timeout_s=model.decode_timeout_s))
               for _ in range(workers)]
    text = TextThread()
    await text.warm_up()
    engines = await asyncio.gather(*loading)
    engine = engines[0]
    log.info("%d model worker(s)%s", workers, f", {threads} CPU thread(s) each" if threads else "")
    collector = BatchCollector(engines, model.max_batch_size, model.max_wait_ms, model.max_partial_batch_size,
                               metrics, model.max_file_batch_size, text)
    history = open_history(settings)
    collector.start()
    lingting = Lingting(engine, collector, settings, engine.describe(), history, access, metrics)
    server = EdgeServer(lingting, network.tls_cert, network.tls_key)
    await server.start()
    retention = asyncio.get_running_loop().create_task(enforce_retention(history)) if history else None
    shown = host if ":" not in host else f"[{host}]"
    ws, http = ("wss", "https") if network.tls_cert else ("ws", "http")
    log.info("Lingting ready: %s://%s:%d%s (model %s on %s; page: %s://%s:%d/, health: /health, metrics: /metrics)",
             ws, shown, server.port, STREAM_PATH, engine.name, engine.device, http, shown, server.port)
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    await stop
    log.info("shutting down: finishing %d open stream(s)", len(lingting.streams))
    await server.shutdown(network.shutdown_grace_s)
    await collector.close()
    for worker in engines:
        worker.close()
    if history:
        retention.cancel()
        history.close()
    log.info("stopped")


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


def main(argv: list[str] | None = None) -> int:
    args = build_parser(description=__doc__).parse_args(argv)
    try:
        settings = load_settings(args)
    except SettingsError as exc:
        print(f"lingting-server: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        print(to_toml(settings), end="")
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
        from .history import HistoryError
        if isinstance(exc, (CatalogError, HistoryError, sqlite3.Error)):
            log.error("%s", exc)
            return 2
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
