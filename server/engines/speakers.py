"""Speaker embeddings of finals, computed in the model worker next to the decode.

A final whose request asks for it (DecodeRequest.speaker_embedding) gets
result.extra["speaker"] = {"embedding": unit vector, "windows": [(start_ms,
end_ms, unit vector), ...]}: one for the whole utterance, and one per 1.6 s
window (2 per second), from which a speaker change inside the utterance is
found. The embedding model sits behind `SpeakerEncoder`; resemblyzer's GE2E
encoder (in its PyPI wheel) is the one that ships here. A stronger one (CAM++,
WeSpeaker) drops in by implementing `embed`."""

from __future__ import annotations

import importlib.util
import logging
from typing import Protocol

import numpy as np

from ..wire.audio import MODEL_RATE
from ..wire.recognition import DecodeRequest, DecodeResult

log = logging.getLogger("lingting.speakers")
INSTALL_HINT = "pip install -e '.[diarize]' (resemblyzer and torch)"
WINDOWS_PER_S = 2.0
MIN_AUDIO_S = 0.5             # shorter: no embedding (too little voice to tell who)
TARGET_RMS = 10 ** (-30 / 20)  # -30 dBFS, resemblyzer's training level


class SpeakerEncoder(Protocol):
    name: str

    def embed(self, audio: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int, np.ndarray]]]:
        """16 kHz mono float32 -> (the utterance's unit embedding, [(start_ms, end_ms, window embedding)])."""
        ...


def available() -> bool:
    return importlib.util.find_spec("resemblyzer") is not None


class ResemblyzerEncoder:
    name = "resemblyzer"

    def __init__(self, device: str = "cpu"):
        if not available():
            raise ValueError(f"speaker labels need resemblyzer: {INSTALL_HINT}")
        import contextlib
        import io

        from resemblyzer import VoiceEncoder
        with contextlib.redirect_stdout(io.StringIO()):      # it prints where it loaded
            self.encoder = VoiceEncoder("cuda" if device.startswith("cuda") else "cpu")
        noise = np.random.default_rng(0).normal(0, 0.05, MODEL_RATE).astype(np.float32)
        self.embed(noise)                                      # warm up (librosa's first call compiles)

    def embed(self, audio):
        wav = audio.astype(np.float32)
        rms = float(np.sqrt(np.mean(wav ** 2))) if len(wav) else 0.0
        if 1e-5 < rms < TARGET_RMS:         # quiet speech raised to the level the encoder was trained at
            wav = wav * (TARGET_RMS / rms)
        embedding, windows, slices = self.encoder.embed_utterance(wav, return_partials=True, rate=WINDOWS_PER_S)
        spans = [(int(s.start) * 1000 // MODEL_RATE, int(min(s.stop, len(audio))) * 1000 // MODEL_RATE)
                 for s in slices]            # (its slices hold numpy integers: plain ones travel as JSON)
        return embedding, [(start, end, w) for (start, end), w in zip(spans, windows)]


class SpeakerEmbeddingEngine:
    """Wraps an engine: finals that ask for it get their speaker embeddings too.
    The encoder loads at the first such final (torch and the model cost memory
    that servers nobody asks for speaker labels should not pay)."""

    def __init__(self, engine, make_encoder, name: str = ResemblyzerEncoder.name):
        self.engine = engine
        self.make_encoder = make_encoder
        self.encoder: SpeakerEncoder | None = None
        self.speaker_model = name

    def __getattr__(self, name):            # name, device, languages, fallback_to_cpu...
        return getattr(self.engine, name)

    def describe(self) -> dict:
        return {**self.engine.describe(), "speaker_model": self.speaker_model}

    def decode(self, requests: list[DecodeRequest]) -> list[DecodeResult]:
        results = self.engine.decode(requests)
        for request, result in zip(requests, results):
            if request.speaker_embedding and len(request.audio) >= MIN_AUDIO_S * MODEL_RATE:
                try:
                    if self.encoder is None:
                        self.encoder = self.make_encoder()
                    embedding, windows = self.encoder.embed(request.audio)
                except Exception:     # the transcript matters more than its label
                    log.exception("speaker embedding failed")
                    continue
                result.extra["speaker"] = {"embedding": embedding, "windows": windows}
        return results
