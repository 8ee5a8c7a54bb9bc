"""The engines a server can run, by name, and how a model worker builds one.

`ENGINES` is the registry: each engine's options (a small dataclass, filled
from the settings in the server and sent to the worker process as it is) and
its loader, which runs inside the worker. `load_engine(WorkerOptions)` is
what a worker (worker.py) or a recognizer replica (ray_engine.py) calls."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..logs import setup_logging
from ..wire.audio import MODEL_RATE
from ..wire.recognition import DecodeRequest
from .base import is_out_of_memory
from .devices import resolve_device, usable_cores

log = logging.getLogger("lingting.engine")

MAX_AUTO_WORKERS = 4


@dataclass(frozen=True)
class WhisperLoad:
    """--engine whisper: how finals are decoded, on how many threads."""
    compute_type: str | None = None
    final_beam_size: int = 5
    window: str = "fit"
    cpu_threads: int = 0


@dataclass(frozen=True)
class FunasrLoad:
    """--engine funasr: the streaming model of partials (none: finals only), where model ids come from, and
    the language the models speak."""
    online_model: str | None = None
    hub: str = "ms"
    language: str = "zh"


@dataclass(frozen=True)
class WorkerOptions:
    """What a model worker loads its engine with: it travels to that process
    (or to a recognizer replica) pickled, so only plain values."""
    engine: str
    model: str | None
    device: str = "auto"
    options: Any = None                 # the engine's own: ENGINES[engine].options
    vad_model: str | None = None
    speaker_model: str = "auto"
    log_level: str = "INFO"
    log_format: str = "text"

    def on_cpu(self) -> WorkerOptions:
        return dataclasses.replace(self, device="cpu")


@dataclass(frozen=True)
class EngineKind:
    """One registered engine. `options_from(settings, cpu_threads)` reads the
    server's settings (settings.py imports this module, not the other way);
    `load(model, device, options)` runs in the worker process."""
    options: type
    options_from: Callable[[Any, int], Any]
    load: Callable[[str | None, str, Any], Any]
    supports_mps: bool = False
    one_worker: str | None = None       # why it runs in one worker process only
    model_required: str | None = None   # what to say when no --model is given


def _whisper(model, device, options: WhisperLoad):
    from lingting_models import resolve_model
    from .whisper import WhisperEngine, WhisperOptions

    spec = resolve_model(model)
    device, index = resolve_device(device)
    decoding = WhisperOptions(final_beam_size=options.final_beam_size, window=options.window,
                              compute_type=options.compute_type, cpu_threads=options.cpu_threads)
    try:
        return WhisperEngine(spec.path, device, index, decoding, name=spec.name)
    except Exception as exc:
        if device == "cpu":
            raise
        log.warning("could not load %s on %s (%s): falling back to the CPU", spec.name, device, exc)
        return WhisperEngine(spec.path, "cpu", 0, decoding, name=spec.name)


def _funasr(model, device, options: FunasrLoad):
    from .funasr_engine import FunasrEngine, FunasrOptions, import_funasr

    torch, _ = import_funasr()     # a clear error naming the extra, before anything else
    if not model:
        raise ValueError(ENGINES["funasr"].model_required)
    kind, index = resolve_device(device, supports_mps=True)
    if kind == "mps" and not torch.backends.mps.is_available():
        log.warning("device mps asked for, but torch has no MPS here: falling back to the CPU")
        kind = "cpu"
    target = kind if kind != "cuda" else f"cuda:{index}"
    engine_options = FunasrOptions(hub=options.hub, language=options.language)
    try:
        return FunasrEngine(model, options.online_model, target, engine_options)
    except Exception as exc:
        if kind != "cpu" and is_out_of_memory(exc):
            log.warning("could not load the funasr models on %s (%s): falling back to the CPU", target, exc)
            return FunasrEngine(model, options.online_model, "cpu", engine_options)
        raise


ENGINES: dict[str, EngineKind] = {
    "whisper": EngineKind(
        WhisperLoad, lambda settings, cpu_threads: WhisperLoad(
            settings.model.compute_type, settings.model.final_beam_size, settings.model.window, cpu_threads),
        _whisper),
    "funasr": EngineKind(
        FunasrLoad, lambda settings, cpu_threads: FunasrLoad(
            settings.funasr.online_model, settings.funasr.model_hub, settings.funasr.model_language),
        _funasr, supports_mps=True,
        one_worker="funasr keeps each stream's streaming cache in its one worker",
        model_required="the funasr engine needs --model: a FunASR model dir or id (e.g. paraformer-zh) for finals, "
                       "and --online-model (e.g. paraformer-zh-streaming) for partials"),
}


def plan_workers(engine: str, device: str, asked: int) -> tuple[int, int]:
    """(model worker processes, CPU threads each). On a CPU, CTranslate2
    decodes about as fast on one thread as on two (its steps are small), so
    a worker per core doubles what 2 cores decode. A GPU gains from batching
    instead: one worker. FunASR keeps streams' caches in its worker: one."""
    kind = ENGINES[engine]
    if kind.one_worker:
        return 1, 0
    cores = usable_cores()
    on_cpu = resolve_device(device, supports_mps=kind.supports_mps)[0] == "cpu"
    workers = asked or (min(cores, MAX_AUTO_WORKERS) if on_cpu else 1)
    return workers, (max(1, cores // workers) if on_cpu else 0)


def load_engine(worker: WorkerOptions):
    """The asked engine on the asked device, falling back to the CPU when the
    device cannot take it, optionally behind the FSMN-VAD check of finals;
    warmed up with one decode."""
    setup_logging(worker.log_level, worker.log_format)
    if worker.engine not in ENGINES:
        raise ValueError(f"unknown engine {worker.engine!r}; use one of {', '.join(ENGINES)}")
    loaded = ENGINES[worker.engine].load(worker.model, worker.device, worker.options)
    if worker.vad_model:
        from .vad_stage import VadCheckedEngine
        loaded = VadCheckedEngine(loaded, worker.vad_model)
    from . import speakers
    if worker.speaker_model == "resemblyzer" or (worker.speaker_model == "auto" and speakers.available()):
        device = loaded.device
        loaded = speakers.SpeakerEmbeddingEngine(loaded, lambda: speakers.ResemblyzerEncoder(device))
    # One decode up front, so the first client does not pay for warm-up.
    languages = loaded.languages or ("en",)
    loaded.decode([DecodeRequest(np.zeros(MODEL_RATE, np.float32), "partial", "en" if "en" in languages else languages[0])])
    return loaded
