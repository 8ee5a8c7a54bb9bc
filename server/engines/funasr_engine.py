"""FunASR "2pass": a streaming Paraformer for partials, an offline model
(Paraformer, SeACo-Paraformer, SenseVoice, Conformer...) for finals, both
loaded through funasr's AutoModel from a local model dir or a model id.

Partials keep each stream's caches between calls and feed the model only
audio it has not seen, in 600 ms chunks. Chunks of several streams go
through the encoder and decoder in one forward pass with their caches
stacked along the batch axis. Rows whose caches differ in shape (a stream's
first chunks, before the look-back is full) or that fire a different number
of tokens go in separate passes: nothing is padded, so a batched decode
gives exactly the tokens of one-by-one decodes. Finals are decoded in
padded batches by the offline model (for Paraformer, again exactly what
one-by-one decodes give) and end the stream's caches."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from ..wire.audio import MODEL_RATE
from ..wire.recognition import DecodeRequest, DecodeResult, Word
from .guard import decode_by_kind
from .base import is_out_of_memory, out_of_memory_as_engine_error
from .devices import usable_cores

log = logging.getLogger("lingting.funasr")

INSTALL_HINT = "pip install 'lingting[funasr]' (in this repo: .venv/bin/pip install -e '.[funasr]')"
SAMPLES_PER_LFR_FRAME = 960         # 60 ms at 16 kHz
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


@dataclass
class _Stream:
    cache: dict
    fed: int = 0                    # samples of the utterance already fed as whole chunks
    used: float = 0.0               # monotonic time of the last request
    tokens: list[str] = field(default_factory=list)


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


# ---- caches of several streams as one batch ----------------------------
def stack_caches(caches: list):
    """Nested lists/dicts of tensors -> the same structure, tensors concatenated on dim 0."""
    import torch
    first = caches[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(caches, 0)
    if isinstance(first, dict):
        return {key: stack_caches([c[key] for c in caches]) for key in first}
    if isinstance(first, list):
        return [stack_caches([c[i] for c in caches]) for i in range(len(first))]
    return first                    # None, ints, chunk sizes: equal across rows (see cache_signature)


def split_caches(cache, rows: int) -> list:
    import torch
    if isinstance(cache, torch.Tensor):
        return [cache[i:i + 1] for i in range(rows)]
    if isinstance(cache, dict):
        parts = {key: split_caches(value, rows) for key, value in cache.items()}
        return [{key: parts[key][i] for key in cache} for i in range(rows)]
    if isinstance(cache, list):
        parts = [split_caches(value, rows) for value in cache]
        return [[part[i] for part in parts] for i in range(rows)]
    return [cache] * rows


def cache_signature(cache):
    """Hashable shape of a cache without its batch axis: rows with equal signatures stack."""
    import torch
    if isinstance(cache, torch.Tensor):
        return tuple(cache.shape[1:])
    if isinstance(cache, dict):
        return tuple((key, cache_signature(value)) for key, value in sorted(cache.items()))
    if isinstance(cache, (list, tuple)):
        return tuple(cache_signature(value) for value in cache)
    return cache


class FunasrEngine:
    def __init__(self, offline_model: str, online_model: str | None = None, device: str = "cpu",
                 options: FunasrOptions | None = None, name: str | None = None):
        self._torch, self._auto_model = import_funasr()
        self.options = options or FunasrOptions()
        self._offline_id, self._online_id = offline_model, online_model
        self.name = name or os.path.basename(str(offline_model).rstrip("/"))
        self.languages = () if self.options.language == "auto" else (self.options.language,)
        self._streams: OrderedDict[str, _Stream] = OrderedDict()
        self._load(device)

    def _load(self, device: str) -> None:
        common = automodel_options(device, hub=self.options.hub)
        self._offline = self._load_model(self._offline_id, common)
        self._online = self._load_model(self._online_id, common) if self._online_id else None
        self.device = device
        self._streams.clear()
        if self._online is not None:
            model = self._online.model
            if not any(cls.__name__ == "ParaformerStreaming" for cls in type(model).__mro__):
                raise ValueError(f"{self._online_id} is not a streaming model: it is a {type(model).__name__}, "
                                 "partials need a ParaformerStreaming (e.g. paraformer-zh-streaming)")
            self._frontend = self._online.kwargs["frontend"]
            self._tokenizer = self._online.kwargs["tokenizer"]
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
            if request.stream is not None:
                self._streams.pop(request.stream, None)
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
        for group in _groups(todo, lambda i: requests[i].hotwords if biasable else ()):
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
            tokens = _tokens(tokenizer, model, scores[i, :count].argmax(dim=-1).tolist()) if count else []
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
        if self._online is None:    # finals only: nothing to show while someone speaks
            return [self._result("") for _ in requests]
        chunk = self.options.chunk_size[1] * SAMPLES_PER_LFR_FRAME
        work: list[tuple[_Stream, list[np.ndarray]]] = []
        for request in requests:
            stream = self._stream(request.stream, len(request.audio))
            new = (len(request.audio) - stream.fed) // chunk
            chunks = [request.audio[stream.fed + k * chunk: stream.fed + (k + 1) * chunk] for k in range(new)]
            stream.fed += new * chunk
            work.append((stream, chunks))
        # A stream that fell behind (its partials were dropped under load)
        # catches up chunk by chunk, each round batched with the others.
        for k in range(max(len(chunks) for _, chunks in work)):
            self._step([(stream, chunks[k]) for stream, chunks in work if k < len(chunks)])
        return [self._result(_join(self._tokenizer, stream.tokens)) for stream, _ in work]

    def _stream(self, key: str | None, audio_length: int) -> _Stream:
        stream = self._streams.get(key) if key is not None else None
        if stream is None or audio_length < stream.fed:    # new, or the utterance restarted
            stream = _Stream(self._new_cache())
            if key is not None:
                self._streams[key] = stream
                while len(self._streams) > self.options.max_streams:
                    self._streams.popitem(last=False)
        if key is not None:
            self._streams.move_to_end(key)
        stream.used = now = time.monotonic()
        while self._streams and now - next(iter(self._streams.values())).used > self.options.stale_s:
            self._streams.popitem(last=False)
        return stream

    def _new_cache(self) -> dict:
        o = self.options
        return self._online.model.init_cache(
            {}, chunk_size=list(o.chunk_size), encoder_chunk_look_back=o.encoder_look_back,
            decoder_chunk_look_back=o.decoder_look_back, **{k: self._online.kwargs[k] for k in
                                                           ("encoder_conf", "frontend_conf")})

    # ---- one 600 ms chunk of several streams ------------------------
    def _step(self, rows: list[tuple[_Stream, np.ndarray]]) -> None:
        from funasr.utils.load_utils import extract_fbank
        torch = self._torch
        device = self._online.kwargs["device"]
        features = []
        for stream, samples in rows:   # the frontend keeps per-stream state; it is cheap
            feats, _ = extract_fbank([torch.from_numpy(samples.astype(np.float32))], data_type="sound",
                                     frontend=self._frontend, cache=stream.cache["frontend"], is_final=False)
            features.append(feats.to(device))
        streams = [stream for stream, _ in rows]
        encoded: list = [None] * len(rows)
        for group in _groups(range(len(rows)), lambda i: (
                tuple(features[i].shape), cache_signature(streams[i].cache["encoder"]["opt"]))):
            out = self._encode([streams[i] for i in group], torch.cat([features[i] for i in group]))
            for j, i in enumerate(group):
                encoded[i] = out[j:j + 1]
        # The CIF predictor integrates frame by frame per row anyway (and its
        # cache handling assumes one row): run it per stream.
        fired = []
        for i, stream in enumerate(streams):
            embeds, lengths, _, _ = self._online.model.predictor.forward_chunk(
                encoded[i], stream.cache["encoder"], is_final=False)
            fired.append((embeds, int(lengths[0])))
        firing = [i for i in range(len(rows)) if fired[i][1] > 0]
        for group in _groups(firing, lambda i: (fired[i][1], tuple(encoded[i].shape),
                                                cache_signature(streams[i].cache["decoder"]))):
            decoder_cache = stack_caches([streams[i].cache["decoder"] for i in group])
            logits = self._online.model.decoder.forward_chunk(
                torch.cat([encoded[i] for i in group]), torch.cat([fired[i][0] for i in group]), decoder_cache)
            for j, (i, cache) in enumerate(zip(group, split_caches(decoder_cache, len(group)))):
                streams[i].cache["decoder"] = cache
                streams[i].tokens += _tokens(self._tokenizer, self._online.model, logits[j].argmax(dim=-1).tolist())

    def _encode(self, streams: list[_Stream], feats):
        """SANMEncoderChunkOpt.forward_chunk for rows at different positions:
        the position encoding is applied per row, the layers to the batch."""
        encoder = self._online.model.encoder
        torch = self._torch
        caches = [s.cache["encoder"] for s in streams]
        chunk_size, look_back = caches[0]["chunk_size"], caches[0]["encoder_chunk_look_back"]
        xs = feats * encoder.output_size() ** 0.5
        if encoder.embed is not None:
            xs = torch.cat([encoder.embed(xs[i:i + 1], cache) for i, cache in enumerate(caches)])
        xs = torch.cat((torch.cat([c["feats"].to(xs.device) for c in caches]), xs), dim=1)
        overlap = chunk_size[0] + chunk_size[2]
        for i, cache in enumerate(caches):
            cache["feats"] = xs[i:i + 1, -overlap:]
        layers = list(encoder.encoders0) + list(encoder.encoders)
        layer_caches = stack_caches([c["opt"] or [None] * len(layers) for c in caches])
        for index, layer in enumerate(layers):
            xs, layer_caches[index] = layer.forward_chunk(xs, layer_caches[index], chunk_size, look_back)
        if encoder.normalize_before:
            xs = encoder.after_norm(xs)
        if look_back > 0 or look_back == -1:
            for cache, own in zip(caches, split_caches(layer_caches, len(caches))):
                cache["opt"] = own
        return xs


def _groups(indices, key) -> list[list[int]]:
    groups: dict = {}
    for i in indices:
        groups.setdefault(key(i), []).append(i)
    return list(groups.values())


def _tokens(tokenizer, model, ids: list[int]) -> list[str]:
    return list(tokenizer.ids2tokens([t for t in ids if t not in (model.blank_id, model.sos, model.eos)]))


def _join(tokenizer, tokens: list[str]) -> str:
    if not tokens:
        return ""
    if hasattr(tokenizer, "bpemodel"):      # English models: sentencepiece pieces
        return tokenizer.tokens2text(tokens)
    from funasr.utils.postprocess_utils import sentence_postprocess
    return _clean(sentence_postprocess(tokens)[0])


def _text(tokenizer, model, ids: list[int]) -> str:
    return _join(tokenizer, _tokens(tokenizer, model, ids))


def _clean(text: str) -> str:
    # SenseVoice tags its output (<|zh|><|NEUTRAL|>...); keep the words.
    return re.sub(r"<\|[^|]*\|>", "", text).strip()
