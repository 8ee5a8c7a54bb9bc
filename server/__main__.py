"""lingting-server: run the streaming recognition server."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sqlite3
import sys

import numpy as np

from .app import STREAM_PATH, LingtingServer, ServerSettings
from .batching import BatchCollector
from .engines.devices import resolve_device
from .history import AsyncHistory, HistoryStore, Retention, default_path

log = logging.getLogger("lingting")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lingting-server", description=__doc__)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="port (default: 8765; 0 picks a free one)")
    p.add_argument("--model", default=None,
                   help="catalog name (whisper-base, whisper-tiny.en) or a CTranslate2 Whisper model dir "
                        "(default: the catalog's default, whisper-base)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    p.add_argument("--compute-type", default=None, help="CTranslate2 compute type (default: int8 on CPU, float16 on GPU)")
    p.add_argument("--max-batch-size", type=int, default=8, help="decode requests per batch (default: 8)")
    p.add_argument("--max-partial-batch-size", type=int, default=4,
                   help="partial decodes per batch; a final waits for at most one such batch (default: 4)")
    p.add_argument("--max-wait-ms", type=float, default=10.0, help="wait for a batch to fill (default: 10)")
    p.add_argument("--final-beam-size", type=int, default=5, help="beam size of final decodes (default: 5)")
    p.add_argument("--window", choices=("fit", "full"), default="fit",
                   help="encoder window: fit the utterance (fast) or Whisper's full 30 s (default: fit)")
    p.add_argument("--max-connections", type=int, default=64, help="concurrent streams before HTTP 503 (default: 64)")
    p.add_argument("--max-frame-bytes", type=int, default=1 << 20, help="largest message accepted (default: 1 MiB)")
    p.add_argument("--shutdown-grace-s", type=float, default=30.0,
                   help="on SIGTERM/SIGINT, time to finish open utterances before closing (default: 30)")
    p.add_argument("--history-db", default=None,
                   help=f"SQLite file of the transcript history, or 'off' (default: {default_path()})")
    p.add_argument("--history-max-age-days", type=float, default=0,
                   help="delete sessions older than this many days (default: 0, keep forever)")
    p.add_argument("--history-max-mb", type=float, default=0,
                   help="delete the oldest sessions while the history is larger than this (default: 0, no limit)")
    p.add_argument("--max-file-mb", type=float, default=2048,
                   help="largest file accepted for offline transcription (default: 2048)")
    p.add_argument("--spool-dir", default=None,
                   help="where uploaded files wait to be transcribed (default: the system temp dir)")
    p.add_argument("--list-models", action="store_true", help="print the model catalog and exit")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default: INFO)")
    return p


def load_engine(args):
    from lingting_models import resolve_model
    from .engines.whisper import WhisperEngine, WhisperOptions

    spec = resolve_model(args.model)
    device, index = resolve_device(args.device)
    options = WhisperOptions(final_beam_size=args.final_beam_size, window=args.window,
                             compute_type=args.compute_type)
    try:
        engine = WhisperEngine(spec.path, device, index, options, name=spec.name)
    except Exception as exc:
        if device == "cpu":
            raise
        log.warning("could not load %s on %s (%s): falling back to the CPU", spec.name, device, exc)
        engine = WhisperEngine(spec.path, "cpu", 0, options, name=spec.name)
    return spec, engine


async def run(args) -> None:
    spec, engine = load_engine(args)
    # One decode up front, so the first client does not pay for warm-up.
    from .engines.base import DecodeRequest
    engine.decode([DecodeRequest(np.zeros(16000, np.float32), "partial", "en")])
    from .itn import warm_up
    warm_up()
    history = open_history(args)
    collector = BatchCollector(engine, args.max_batch_size, args.max_wait_ms, args.max_partial_batch_size)
    collector.start()
    settings = ServerSettings(host=args.host, port=args.port, max_connections=args.max_connections,
                              max_frame_bytes=args.max_frame_bytes, max_file_bytes=int(args.max_file_mb * (1 << 20)),
                              spool_dir=args.spool_dir)
    server = LingtingServer(engine, collector, settings, engine.describe(), history)
    await server.serve()
    retention = asyncio.get_running_loop().create_task(enforce_retention(history)) if history else None
    host = args.host if ":" not in args.host else f"[{args.host}]"
    log.info("Lingting ready: ws://%s:%d%s (model %s on %s; health: http://%s:%d/health)",
             host, server.port, STREAM_PATH, spec.name, engine.device, host, server.port)
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    await stop
    log.info("shutting down: finishing %d open stream(s)", len(server.streams))
    await server.shutdown(args.shutdown_grace_s)
    await collector.close()
    if history:
        retention.cancel()
        history.close()
    log.info("stopped")


def open_history(args) -> AsyncHistory | None:
    if args.history_db == "off":
        log.info("history is off: transcripts are not stored")
        return None
    store = HistoryStore(args.history_db or default_path())
    interrupted = store.mark_interrupted()
    log.info("history: %s%s", store.path,
             f" ({interrupted} session(s) left open by the last run marked interrupted)" if interrupted else "")
    return AsyncHistory(store, Retention(args.history_max_age_days, args.history_max_mb))


async def enforce_retention(history: AsyncHistory, every_s: float = 3600) -> None:
    """Age and size limits, at start and then hourly."""
    if not (history.retention.max_age_days or history.retention.max_mb):
        return
    while True:
        try:
            deleted = await history.write("enforce", history.retention)
            if deleted:
                log.info("history retention: deleted %d old session(s)", deleted)
        except Exception:
            log.exception("history retention failed")
        await asyncio.sleep(every_s)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.log_level.upper() != "DEBUG":   # one line per HTTP request is noise
        logging.getLogger("websockets").setLevel(logging.WARNING)
    if args.list_models:
        from lingting_models import list_models
        for m in list_models():
            print(f"{m['name']:<18} {','.join(m.get('languages', [])):<10} {m.get('description', '')}")
        return 0
    try:
        asyncio.run(run(args))
    except (ValueError, OSError) as exc:
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
