"""Builds the engine a server runs; called inside the model worker process."""

from __future__ import annotations

import logging

import numpy as np

from ..logs import setup_logging
from .base import MODEL_RATE, DecodeRequest, is_out_of_memory
from .devices import resolve_device, usable_cores

log = logging.getLogger("lingting.engine")

ENGINES = ("whisper", "funasr")
MAX_AUTO_WORKERS = 4


def plan_workers(engine: str, device: str, asked: int) -> tuple[int, int]:
    """(model worker processes, CPU threads each). On a CPU, CTranslate2
    decodes about as fast on one thread as on two (its steps are small), so
    a worker per core doubles what 2 cores decode. A GPU gains from batching
    instead: one worker. FunASR keeps streams' caches in its worker: one."""
    cores = usable_cores()
    on_cpu = resolve_device(device, supports_mps=engine == "funasr")[0] == "cpu"
    if engine == "funasr":
        if asked > 1:
            raise ValueError("--model-workers above 1 needs the whisper engine: funasr keeps each stream's "
                             "streaming cache in its one worker")
        return 1, 0
    workers = asked or (min(cores, MAX_AUTO_WORKERS) if on_cpu else 1)
    return workers, (max(1, cores // workers) if on_cpu else 0)


def load_engine(model: str | None, device: str = "auto", compute_type: str | None = None,
                final_beam_size: int = 5, window: str = "fit", log_level: str = "INFO", log_format: str = "text",
                engine: str = "whisper", online_model: str | None = None, hub: str = "ms",
                model_language: str = "zh", vad_model: str | None = None, cpu_threads: int = 0,
                speaker_model: str = "auto"):
    """The asked engine on the asked device, falling back to the CPU when the
    device cannot take it, optionally behind the FSMN-VAD check of finals;
    warmed up with one decode."""
    setup_logging(log_level, log_format)
    if engine == "funasr":
        loaded = _load_funasr(model, online_model, device, hub, model_language)
    elif engine == "whisper":
        loaded = _load_whisper(model, device, compute_type, final_beam_size, window, cpu_threads)
    else:
        raise ValueError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
    if vad_model:
        from .vad_stage import VadCheckedEngine
        loaded = VadCheckedEngine(loaded, vad_model)
    from . import speakers
    if speaker_model == "resemblyzer" or (speaker_model == "auto" and speakers.available()):
        device = loaded.device
        loaded = speakers.SpeakerEmbeddingEngine(loaded, lambda: speakers.ResemblyzerEncoder(device))
    # One decode up front, so the first client does not pay for warm-up.
    languages = loaded.languages or ("en",)
    loaded.decode([DecodeRequest(np.zeros(MODEL_RATE, np.float32), "partial", "en" if "en" in languages else languages[0])])
    return loaded


def _load_whisper(model, device, compute_type, final_beam_size, window, cpu_threads=0):
    from lingting_models import resolve_model
    from .whisper import WhisperEngine, WhisperOptions

    spec = resolve_model(model)
    device, index = resolve_device(device)
    options = WhisperOptions(final_beam_size=final_beam_size, window=window, compute_type=compute_type,
                             cpu_threads=cpu_threads)
    try:
        return WhisperEngine(spec.path, device, index, options, name=spec.name)
    except Exception as exc:
        if device == "cpu":
            raise
        log.warning("could not load %s on %s (%s): falling back to the CPU", spec.name, device, exc)
        return WhisperEngine(spec.path, "cpu", 0, options, name=spec.name)


def _load_funasr(model, online_model, device, hub, language):
    from .funasr_engine import FunasrEngine, FunasrOptions, import_funasr

    torch, _ = import_funasr()     # a clear error naming the extra, before anything else
    if not model:
        raise ValueError("the funasr engine needs --model: a FunASR model dir or id (e.g. paraformer-zh) "
                         "for finals, and --online-model (e.g. paraformer-zh-streaming) for partials")
    kind, index = resolve_device(device, supports_mps=True)
    if kind == "mps" and not torch.backends.mps.is_available():
        log.warning("device mps asked for, but torch has no MPS here: falling back to the CPU")
        kind = "cpu"
    target = kind if kind != "cuda" else f"cuda:{index}"
    options = FunasrOptions(hub=hub, language=language)
    try:
        return FunasrEngine(model, online_model, target, options)
    except Exception as exc:
        if kind != "cpu" and is_out_of_memory(exc):
            log.warning("could not load the funasr models on %s (%s): falling back to the CPU", target, exc)
            return FunasrEngine(model, online_model, "cpu", options)
        raise
