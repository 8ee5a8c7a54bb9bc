"""FunASR's partials: a streaming Paraformer that keeps each stream's caches
between calls and is fed only audio it has not seen, in whole chunks. Chunks
of several streams go through the encoder and decoder in one forward pass
with their caches stacked along the batch axis; rows whose caches differ in
shape or that fire a different number of tokens go in separate passes, so a
batched decode gives exactly the tokens of one-by-one decodes."""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

SAMPLES_PER_LFR_FRAME = 960         # 60 ms at 16 kHz


@dataclass
class _Stream:
    cache: dict
    fed: int = 0                    # samples of the utterance already fed as whole chunks
    used: float = 0.0               # monotonic time of the last request
    tokens: list[str] = field(default_factory=list)


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


class StreamingPartials:
    """The streaming model (a funasr AutoModel) and the caches of the streams it
    is following: at most options.max_streams, none unused for options.stale_s."""

    def __init__(self, online, options, torch):
        self._online, self.options, self._torch = online, options, torch
        self._frontend = online.kwargs["frontend"]
        self.tokenizer = online.kwargs["tokenizer"]
        self.streams: OrderedDict[str, _Stream] = OrderedDict()

    def end(self, key: str | None) -> None:
        """The stream's utterance is over (its final is being decoded): drop its caches."""
        if key is not None:
            self.streams.pop(key, None)

    def tokens(self, keys_and_audio: list[tuple[str | None, np.ndarray]]) -> list[list[str]]:
        """Each stream's tokens so far, after feeding it the whole chunks of its new audio."""
        chunk = self.options.chunk_size[1] * SAMPLES_PER_LFR_FRAME
        work: list[tuple[_Stream, list[np.ndarray]]] = []
        for key, audio in keys_and_audio:
            stream = self._stream(key, len(audio))
            new = (len(audio) - stream.fed) // chunk
            chunks = [audio[stream.fed + k * chunk: stream.fed + (k + 1) * chunk] for k in range(new)]
            stream.fed += new * chunk
            work.append((stream, chunks))
        # A stream that fell behind (its partials were dropped under load)
        # catches up chunk by chunk, each round batched with the others.
        for k in range(max(len(chunks) for _, chunks in work)):
            self._step([(stream, chunks[k]) for stream, chunks in work if k < len(chunks)])
        return [stream.tokens for stream, _ in work]

    def _stream(self, key: str | None, audio_length: int) -> _Stream:
        stream = self.streams.get(key) if key is not None else None
        if stream is None or audio_length < stream.fed:    # new, or the utterance restarted
            stream = _Stream(self._new_cache())
            if key is not None:
                self.streams[key] = stream
                while len(self.streams) > self.options.max_streams:
                    self.streams.popitem(last=False)
        if key is not None:
            self.streams.move_to_end(key)
        stream.used = now = time.monotonic()
        while self.streams and now - next(iter(self.streams.values())).used > self.options.stale_s:
            self.streams.popitem(last=False)
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
        for group in groups(range(len(rows)), lambda i: (
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
        for group in groups(firing, lambda i: (fired[i][1], tuple(encoded[i].shape),
                                               cache_signature(streams[i].cache["decoder"]))):
            decoder_cache = stack_caches([streams[i].cache["decoder"] for i in group])
            logits = self._online.model.decoder.forward_chunk(
                torch.cat([encoded[i] for i in group]), torch.cat([fired[i][0] for i in group]), decoder_cache)
            for j, (i, cache) in enumerate(zip(group, split_caches(decoder_cache, len(group)))):
                streams[i].cache["decoder"] = cache
                streams[i].tokens += tokens_of(self.tokenizer, self._online.model, logits[j].argmax(dim=-1).tolist())

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


def groups(indices, key) -> list[list[int]]:
    """Indices grouped by key(i), in first-seen order."""
    found: dict = {}
    for i in indices:
        found.setdefault(key(i), []).append(i)
    return list(found.values())


def tokens_of(tokenizer, model, ids: list[int]) -> list[str]:
    return list(tokenizer.ids2tokens([t for t in ids if t not in (model.blank_id, model.sos, model.eos)]))
