"""Builds the engine a server runs; called inside the model worker process."""

from __future__ import annotations

import logging

import numpy as np

from ..logs import setup_logging
from .base import DecodeRequest
from .devices import resolve_device

log = logging.getLogger("lingting.engine")


def load_engine(model: str | None, device: str = "auto", compute_type: str | None = None,
                final_beam_size: int = 5, window: str = "fit", log_level: str = "INFO", log_format: str = "text"):
    """The catalog model (or a model dir) on the asked device, falling back
    to the CPU when the device cannot take it; warmed up with one decode."""
    from lingting_models import resolve_model
    from .whisper import WhisperEngine, WhisperOptions

    setup_logging(log_level, log_format)
    spec = resolve_model(model)
    device, index = resolve_device(device)
    options = WhisperOptions(final_beam_size=final_beam_size, window=window, compute_type=compute_type)
    try:
        engine = WhisperEngine(spec.path, device, index, options, name=spec.name)
    except Exception as exc:
        if device == "cpu":
            raise
        log.warning("could not load %s on %s (%s): falling back to the CPU", spec.name, device, exc)
        engine = WhisperEngine(spec.path, "cpu", 0, options, name=spec.name)
    # One decode up front, so the first client does not pay for warm-up.
    engine.decode([DecodeRequest(np.zeros(16000, np.float32), "partial", "en")])
    return engine
