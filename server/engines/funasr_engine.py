"""FunASR "2pass": a streaming Paraformer for partials, an offline model
(Paraformer, SeACo-Paraformer, SenseVoice, Conformer...) for finals, both
loaded through funasr's AutoModel from a local model dir or a model id.

Partials keep each stream's caches between calls and feed the model only
audio it has not seen, in 600 ms chunks, several streams in one forward pass
(funasr_streaming.py). Finals are decoded in padded batches by the offline
model (for Paraformer, exactly what one-by-one decodes give) and end the
stream's caches."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
from dataclasses import dataclass

import numpy as np

from ..wire.audio import MODEL_RATE
from ..wire.recognition import DecodeRequest, DecodeResult, Word
from .guard import decode_by_kind
from .base import is_out_of_memory, out_of_memory_as_engine_error
from .devices import usable_cores
from .funasr_streaming import StreamingPartials, groups, tokens_of

log = logging.getLogger("lingting.funasr")

INSTALL_HINT = "pip install 'lingting[funasr]' (in this repo: .venv/bin/pip install -e '.[funasr]')"
MIN_FINAL_SAMPLES = 1600            # under 0.1 s there is nothing to decode
HOTWORD_MODELS = ("SeacoParaformer", "ContextualParaformer")   # take funasr's `hotword` argument


class FunasrUnavailable(RuntimeError):
    """funasr (the optional extra) is not installed."""


@dataclass(frozen=True)
class FunasrOptions:
    chunk_size: tuple[int, int, int] = (0, 10, 5)   # LFR frames: 600 ms per chunk, 300 ms look-ahead
    encoder_look_back: int = 4      # chunks of encoder self-attention context
    decoder_look_back: int = 1      # chunks of decoder cross-attention context
    max_streams: int = 512          # caches kept; the least recently used go first...
    stale_s: float = 60.0           # ...and any not used this long (a stream that ended without a final)
    hub: str = "ms"                 # where a model id (not a dir) is fetched from: ms or hf
    language: str = "zh"            # what the models speak; "auto": many, the model says (SenseVoice)



def import_funasr():
    try:
        import torch
        with contextlib.redirect_stdout(io.StringIO()):   # funasr prints notices on import
            from funasr import AutoModel
    except ImportError as exc:
        raise FunasrUnavailable(f"the funasr engine needs the funasr extra ({exc}): {INSTALL_HINT}") from exc
    root = logging.getLogger()
    if not any(isinstance(f, _QuietFunasr) for f in root.filters):
        root.addFilter(_QuietFunasr())
    return torch, AutoModel


def automodel_options(device: str, **extra) -> dict:
    """AutoModel's arguments: no update checks, no progress bars, and one
    torch thread per core this process may use (funasr sets 4 by default;
    on 2 cores that oversubscription costs a quarter of the speed)."""
    return dict(device=device, disable_update=True, disable_pbar=True, log_level="ERROR", ncpu=usable_cores(),
                **extra)


class _QuietFunasr(logging.Filter):
    """funasr logs every load step on the root logger; keep only its errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or f"{os.sep}funasr{os.sep}" not in record.pathname



class FunasrEngine:
    def __init__(self, offline_model: str, online_model: str | None = None, device: str = "cpu",
                 options: FunasrOptions | None = None, name: str | None = None):
        self._torch, self._auto_model = import_funasr()
        self.options = options or FunasrOptions()
        self._offline_id, self._online_id = offline_model, online_model
        self.name = name or os.path.basename(str(offline_model).rstrip("/"))
        self.languages = () if self.options.language == "auto" else (self.options.language,)
        self._load(device)

    def _load(self, device: str) -> None:
        common = automodel_options(device, hub=self.options.hub)
        self._offline = self._load_model(self._offline_id, common)
        self._online = self._load_model(self._online_id, common) if self._online_id else None
        self.device = device
        if self._online is not None:
            model = self._online.model
            if not any(cls.__name__ == "ParaformerStreaming" for cls in type(model).__mro__):
                raise ValueError(f"{self._online_id} is not a streaming model: it is a {type(model).__name__}, "
                                 "partials need a ParaformerStreaming (e.g. paraformer-zh-streaming)")
        # New models, new caches: the streams' old ones belong to the model just replaced.
        self._partials = StreamingPartials(self._online, self.options, self._torch) if self._online else None
        log.info("loaded funasr %s (finals) and %s (partials) on %s",
                 type(self._offline.model).__name__,
                 type(self._online.model).__name__ if self._online else "nothing", device)

    def _load_model(self, model: str, common: dict):
        try:
            with contextlib.redirect_stdout(io.StringIO()):     # funasr prints its version
                return self._auto_model(model=model, **common)
        except Exception as exc:
            if is_out_of_memory(exc):
                raise
            local = os.path.isdir(model)
            raise ValueError(
                # funasr's messages run to pages (every registered class): the first line says it.
                f"could not load the FunASR model {model!r}: {type(exc).__name__}: {str(exc).splitlines()[0]} " +
                ("A model dir holds config.yaml, model.pt, tokens.json (or tokens.txt) and am.mvn."
                 if local else "A model id is downloaded from the hub; without internet pass a local model dir.")
            ) from exc

    def fallback_to_cpu(self) -> bool:
        if self.device == "cpu":
            return False
        log.warning("moving the funasr models from %s to the CPU", self.device)
        self._load("cpu")
        return True

    def describe(self) -> dict:
        return {"model": self.name, "engine": "funasr", "device": self.device,
                "offline_model": str(self._offline_id), "online_model": str(self._online_id),
                "chunk_ms": self.options.chunk_size[1] * 60}

    # ---- decoding ----------------------------------------------------
    def decode(self, requests: list[DecodeRequest]) -> list[DecodeResult]:
        with out_of_memory_as_engine_error(), self._torch.inference_mode():
            return decode_by_kind(requests, {"final": self.decode_finals, "partial": self.decode_partials})

    def decode_finals(self, requests: list[DecodeRequest]) -> list[DecodeResult]:
        for request in requests:
            if self._partials is not None:
                self._partials.end(request.stream)
        results = [self._result("") for _ in requests]
        todo = [i for i, r in enumerate(requests) if len(r.audio) >= MIN_FINAL_SAMPLES]
        model_class = type(self._offline.model).__name__
        if not todo:
            return results
        if model_class == "Paraformer":
            for i, result in zip(todo, self._paraformer_finals([requests[i] for i in todo])):
                results[i] = result
            return results
        # SeACo-Paraformer, SenseVoice, Conformer...: funasr's own batched inference
        biasable = model_class in HOTWORD_MODELS
        for group in groups(todo, lambda i: requests[i].hotwords if biasable else ()):
            extra = {"hotword": " ".join(requests[group[0]].hotwords)} if biasable and requests[group[0]].hotwords else {}
            outputs = self._offline.generate(input=[requests[i].audio.astype(np.float32) for i in group],
                                             batch_size=len(group), disable_pbar=True, **extra)
            for i, output in zip(group, outputs):
                text = output.get("text", "")
                tag = re.match(r"<\|([a-z]{2})\|>", text)     # SenseVoice says which language it heard
                results[i] = self._result(_clean(text), tag.group(1) if tag else None)
        return results

    def _result(self, text: str, language: str | None = None, words=None) -> DecodeResult:
        return DecodeResult(text=text, language=language or (self.languages or (None,))[0], words=words)

    def _paraformer_finals(self, requests: list[DecodeRequest]) -> list[DecodeResult]:
        """Paraformer.inference for a padded batch, except that the CIF
        predictor runs per row: its tail handling sees the padding, and a
        padded row would lose its last tokens to it."""
        from funasr.utils.load_utils import extract_fbank
        torch = self._torch
        model, device = self._offline.model, self._offline.kwargs["device"]
        feats, lengths = extract_fbank([torch.from_numpy(r.audio.astype(np.float32)) for r in requests],
                                       data_type="sound", frontend=self._offline.kwargs["frontend"])
        encoded, encoded_lengths = model.encode(feats.to(device), lengths.to(device))
        if isinstance(encoded, tuple):
            encoded = encoded[0]
        predicted = [model.calc_predictor(encoded[i:i + 1, :encoded_lengths[i]], encoded_lengths[i:i + 1])
                     for i in range(len(requests))]
        counts = [int(p[1].round().long()[0]) for p in predicted]
        if max(counts) < 1:
            return [self._result("") for _ in requests]
        embeds = torch.nn.utils.rnn.pad_sequence([p[0][0] for p in predicted], batch_first=True)
        scores, _ = model.cal_decoder_with_predictor(encoded, encoded_lengths, embeds,
                                                     torch.tensor(counts, device=encoded.device))
        tokenizer = self._offline.kwargs["tokenizer"]
        results = []
        for i, (request, count) in enumerate(zip(requests, counts)):
            tokens = tokens_of(tokenizer, model, scores[i, :count].argmax(dim=-1).tolist()) if count else []
            words = None
            if request.word_timestamps and tokens:
                words = self._words(tokens, alphas=predicted[i][2][0], peaks=predicted[i][3][0],
                                    duration_ms=len(request.audio) * 1000 // MODEL_RATE)
            results.append(self._result(_join(tokenizer, tokens), words=words))
        return results

    @staticmethod
    def _words(tokens: list[str], alphas, peaks, duration_ms: int) -> list[Word] | None:
        """Token times from the CIF predictor's firing points, as funasr's
        Paraformer reports them, merged into words by its post-processing."""
        from funasr.utils import postprocess_utils
        from funasr.utils.timestamp_tools import ts_prediction_lfr6_standard
        try:
            _, stamps = ts_prediction_lfr6_standard(peaks, alphas, list(tokens), upsample_rate=1)
            _, word_stamps, words = postprocess_utils.sentence_postprocess(list(tokens), stamps)
        except (IndexError, ValueError) as exc:      # times are a bonus: never lose the text for them
            log.warning("no word times for this final: %s", exc)
            return None
        # funasr shifts times 1.5 frames early, and the predictor's tail frame can
        # put the last end past the audio: keep them inside it.
        def inside(ms) -> int:
            return max(0, min(int(ms), duration_ms))
        return [Word(word, inside(start), inside(end), 1.0) for word, (start, end) in zip(words, word_stamps)]

    def decode_partials(self, requests: list[DecodeRequest]) -> list[DecodeResult]:
        if self._partials is None:    # finals only: nothing to show while someone speaks
            return [self._result("") for _ in requests]
        tokens = self._partials.tokens([(request.stream, request.audio) for request in requests])
        return [self._result(_join(self._partials.tokenizer, t)) for t in tokens]


def _join(tokenizer, tokens: list[str]) -> str:
    if not tokens:
        return ""
    if hasattr(tokenizer, "bpemodel"):      # English models: sentencepiece pieces
        return tokenizer.tokens2text(tokens)
    from funasr.utils.postprocess_utils import sentence_postprocess
    return _clean(sentence_postprocess(tokens)[0])


def _text(tokenizer, model, ids: list[int]) -> str:
    return _join(tokenizer, tokens_of(tokenizer, model, ids))


def _clean(text: str) -> str:
    # SenseVoice tags its output (<|zh|><|NEUTRAL|>...); keep the words.
    return re.sub(r"<\|[^|]*\|>", "", text).strip()