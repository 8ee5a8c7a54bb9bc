"""Whisper through faster-whisper / CTranslate2, with cross-stream batching.

Requests of a batch are encoded together and generated together. The encoder
input is cut to the audio's length (rounded up to whole seconds) instead of
Whisper's fixed 30 s window: CTranslate2 accepts it, and on a CPU it makes a
short utterance several times cheaper to decode."""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass

import numpy as np

from ..wire.words import IS_CJK, collapse_repeats
from ..text.hotwords import mentions_any
from ..text.phonetic import sounds_present
from ..wire.audio import MODEL_RATE
from ..wire.recognition import DecodeRequest, DecodeResult, Word
from .guard import decode_by_kind
from .base import out_of_memory_as_engine_error
from .whisper_guard import second_chances

log = logging.getLogger("lingting.whisper")

PHRASE, NEVER = 4, 10 ** 6     # collapse_repeats: a phrase of this many units said twice is kept once
FRAMES_PER_SECOND = 100
FULL_WINDOW = 3000  # 30 s of 10 ms mel frames
# Whisper writes Chinese in Traditional characters now and then; a prompt in
# Simplified nudges it, and OpenCC converts whatever slips through.
_LANGUAGE_PROMPTS = {"zh": "以下是普通话的句子。"}
_CJK_LANGUAGES = {"zh", "ja", "ko", "yue"}
# A prompted decode is believed only where the plain one heard something that
# sounds at least this much like each phrase it adds: a prompt that steered
# "see minus" to "T minus" is kept, one that wrote "abort" over unrelated
# speech (it happens on noisy audio) is not.
STEER_MIN_SOUND = 0.6


@dataclass(frozen=True)
class WhisperOptions:
    final_beam_size: int = 5
    partial_beam_size: int = 1
    window: str = "fit"            # "fit": encode the audio's length; "full": pad to 30 s
    margin_s: float = 1.0          # silence added after the audio in "fit" mode
    min_window_s: float = 10.0     # shorter windows make Whisper repeat itself...
    partial_min_window_s: float = 5.0   # ...but partials are cheaper so, and the loop guard catches it
    no_speech_threshold: float = 0.6
    logprob_threshold: float = -1.0
    compute_type: str | None = None
    cpu_threads: int = 0           # 0: all cores


class WhisperEngine:
    def __init__(self, model_path, device: str = "cpu", device_index: int = 0,
                 options: WhisperOptions | None = None, name: str | None = None):
        from faster_whisper import WhisperModel  # heavy import, only when used

        self.options = options or WhisperOptions()
        self.name = name or os.path.basename(str(model_path))
        self._path = str(model_path)
        self._model_cls = WhisperModel
        self._tokenizers: dict = {}
        self._load(device, device_index)
        self.languages = tuple(self._model.supported_languages)
        self.multilingual = self._model.model.is_multilingual
        from opencc import OpenCC
        self._t2s = OpenCC("t2s")

    def _load(self, device: str, device_index: int) -> None:
        compute = self.options.compute_type or ("int8" if device == "cpu" else "float16")
        self._model = self._model_cls(
            self._path, device=device, device_index=device_index, compute_type=compute,
            cpu_threads=self.options.cpu_threads or (os.cpu_count() or 1),
        )
        self.device = device if device == "cpu" else f"{device}:{device_index}"
        self.compute_type = compute
        log.info("loaded %s on %s (%s)", self.name, self.device, compute)

    def fallback_to_cpu(self) -> bool:
        if self.device == "cpu":
            return False
        log.warning("moving %s from %s to the CPU", self.name, self.device)
        self._load("cpu", 0)
        return True

    def describe(self) -> dict:
        return {"model": self.name, "engine": "whisper", "device": self.device,
                "compute_type": self.compute_type, "multilingual": self.multilingual}

    # ---- decoding ----------------------------------------------------
    def _tokenizer(self, language: str | None):
        from faster_whisper.tokenizer import Tokenizer
        key = language or "en"
        if key not in self._tokenizers:
            self._tokenizers[key] = Tokenizer(self._model.hf_tokenizer, self.multilingual,
                                              task="transcribe", language=key)
        return self._tokenizers[key]

    def _features(self, requests: list[DecodeRequest], window: str) -> tuple[np.ndarray, list[int]]:
        """Log-mel features of a batch, all of one width. Padding is added as
        silent audio before the transform (zeros in mel space are not silence,
        and make Whisper repeat itself)."""
        fe = self._model.feature_extractor
        hop = fe.hop_length
        frames = [min(FULL_WINDOW, math.ceil(len(r.audio) / hop)) for r in requests]
        if window == "full":
            width = FULL_WINDOW
        else:
            minimum = self.options.min_window_s if requests[0].kind == "final" else self.options.partial_min_window_s
            longest = max(max(frames) + int(self.options.margin_s * FRAMES_PER_SECOND),
                          int(minimum * FRAMES_PER_SECOND))
            width = min(FULL_WINDOW, math.ceil(longest / FRAMES_PER_SECOND) * FRAMES_PER_SECOND)
        batch = []
        for r in requests:
            audio = r.audio[:width * hop]
            padded = np.zeros(width * hop, np.float32)
            padded[:len(audio)] = audio
            batch.append(fe(padded)[:, :width])
        return np.stack(batch), frames

    def decode(self, requests: list[DecodeRequest]) -> list[DecodeResult]:
        return decode_by_kind(requests, {"final": self._decode_group, "partial": self._decode_group})

    def _decode_group(self, requests: list[DecodeRequest]) -> list[DecodeResult]:
        with out_of_memory_as_engine_error():
            results = self._decode_group_unsafe(requests, self.options.window)
            return [second_chances(request, result, self._decode_group_unsafe, self.options.window)
                    for request, result in zip(requests, results)]

    def _decode_group_unsafe(self, requests: list[DecodeRequest], window: str) -> list[DecodeResult]:
        model = self._model
        features, frames = self._features(requests, window)
        encoder_output = model.encode(features)

        languages = [r.language if self.multilingual else "en" for r in requests]
        if any(lang is None for lang in languages):
            detected = model.model.detect_language(encoder_output)
            languages = [lang or detected[i][0][0][2:-2] for i, lang in enumerate(languages)]

        kind = requests[0].kind
        beam = self.options.final_beam_size if kind == "final" else self.options.partial_beam_size
        # Every request is decoded plainly; one with hotwords is decoded a second
        # time with them in the prompt, sharing the encoder output. The biased
        # text wins only if it has a hotword the plain one lacks, and the plain
        # one heard something like it (STEER_MIN_SOUND): a prompt also nudges
        # unrelated words, and unrelated hotwords must change nothing.
        prompts = [self._prompt(language, ()) for language in languages]
        rows = list(range(len(requests)))
        biased: dict[int, tuple[int, tuple[str, ...]]] = {}    # request -> (its prompted row, the terms)
        for i, (request, language) in enumerate(zip(requests, languages)):
            terms = _for_language(request.hotwords, language)
            if terms:
                biased[i] = (len(prompts), terms)
                prompts.append(self._prompt(language, terms))
                rows.append(i)
        # Bound the output by the audio's length: a looping decode stops early.
        max_new = max(16, int(max(len(r.audio) for r in requests) / MODEL_RATE * 12) + 16)
        max_length = min(model.max_length, max(len(p) for p in prompts) + max_new)
        outputs = self._generate(encoder_output, rows, prompts, beam_size=beam, max_length=max_length)

        results = []
        for i, (request, language) in enumerate(zip(requests, languages)):
            # With word times the guard can tell a sentence said twice from one written
            # twice on silence; without them a repeated phrase is cut on sight.
            timed = request.word_timestamps
            text, tokens, out, loop_cut = self._read(outputs[i], language, len(prompts[i]), max_length, timed)
            if i in biased:
                row, terms = biased[i]
                alternative = self._read(outputs[row], language, len(prompts[row]), max_length, timed)
                if _steered(alternative[0], text, terms):
                    text, tokens, out, loop_cut = alternative
            words = None
            if request.word_timestamps and text:
                words = self._words(language, tokens, encoder_output, i, frames[i])
            results.append(DecodeResult(text=text, language=language, words=words,
                                        avg_logprob=float(out.scores[0] if out.scores else 0.0),
                                        no_speech_prob=float(out.no_speech_prob),
                                        extra={"loop_cut": True} if loop_cut else {}))
        return results

    def _prompt(self, language: str, hotwords: tuple[str, ...]) -> list[int]:
        """The decoder's prompt: the language's own, then the hotwords (faster-whisper's layout)."""
        tokenizer = self._tokenizer(language)
        previous = _LANGUAGE_PROMPTS.get(language)
        return self._model.get_prompt(
            tokenizer, previous_tokens=tokenizer.encode(previous) if previous else [],
            without_timestamps=True, hotwords=", ".join(hotwords) or None)

    def _generate(self, encoder_output, rows: list[int], prompts: list[list[int]], **options) -> list:
        """Generate for prompts[j] from encoder row rows[j]. CTranslate2 wants
        <|startoftranscript|> at one position across a batch, so prompts with
        different context lengths (hotwords, language prompts) go in separate calls."""
        sot = self._model.hf_tokenizer.token_to_id("<|startoftranscript|>")
        groups: dict[int, list[int]] = {}
        for j, prompt in enumerate(prompts):
            groups.setdefault(prompt.index(sot), []).append(j)
        outputs: list = [None] * len(prompts)
        for members in groups.values():
            results = self._model.model.generate(
                _encoder_rows(encoder_output, [rows[j] for j in members]), [prompts[j] for j in members],
                return_scores=True, return_no_speech_prob=True, suppress_blank=True,
                suppress_tokens=[-1], **options)
            for j, result in zip(members, results):
                outputs[j] = result
        return outputs

    def _read(self, out, language: str, prompt_length: int, max_length: int, keep_phrases: bool = False):
        """(text, tokens, raw output, whether a decoding loop was cut) of one generation result."""
        tokenizer = self._tokenizer(language)
        tokens = [t for t in out.sequences_ids[0] if t < tokenizer.eot]
        avg_logprob = out.scores[0] if out.scores else 0.0
        if out.no_speech_prob > self.options.no_speech_threshold and avg_logprob < self.options.logprob_threshold:
            return "", [], out, False
        hit_limit = prompt_length + len(out.sequences_ids[0]) >= max_length
        raw = tokenizer.decode(tokens).strip()
        text = collapse_repeats(raw, hit_limit, phrase=NEVER if keep_phrases else PHRASE)
        loop_cut = text != raw
        if loop_cut:   # word times must be of the words kept, not of a loop cut away
            tokens = tokenizer.encode(" " + text)
        if language == "zh":
            text = self._t2s.convert(text)
        return text, tokens, out, loop_cut

    def _words(self, language, tokens, encoder_output, index, num_frames) -> list[Word] | None:
        try:
            # Alignment takes one sequence start for all items: align this one alone.
            aligned = self._model.find_alignment(self._tokenizer(language), [tokens],
                                                 _encoder_rows(encoder_output, [index]), num_frames)
        except Exception:  # timings are a bonus: never lose the text over them
            log.exception("word alignment failed")
            return None
        words = []
        for w in aligned[0] if aligned else []:
            text = w["word"].strip()
            if not text:
                continue
            if language == "zh":
                text = self._t2s.convert(text)
            words.append(Word(text, int(w["start"] * 1000), int(w["end"] * 1000), round(float(w["probability"]), 3)))
        return words


def _encoder_rows(encoder_output, rows: list[int]):
    """The encoder output with its rows in `rows` order (repeats allowed)."""
    import ctranslate2
    if rows == list(range(encoder_output.shape[0])):
        return encoder_output
    if encoder_output.device != "cpu":
        encoder_output = encoder_output.to_device(ctranslate2.Device.cpu)
    array = np.asarray(encoder_output)[rows]
    return ctranslate2.StorageView.from_array(np.ascontiguousarray(array))


def _for_language(hotwords: tuple[str, ...], language: str) -> tuple[str, ...]:
    """The hotwords a prompt in this language can use: Chinese words in an
    English prompt only make the model write Chinese."""
    if language in _CJK_LANGUAGES:
        return hotwords
    return tuple(h for h in hotwords if not IS_CJK.search(h))


def _steered(biased: str, plain: str, hotwords: tuple[str, ...]) -> bool:
    """Whether the prompted decode is the better one: it has hotwords the plain
    one lacks, and the plain one heard something like each of them."""
    added = [h for h in hotwords if mentions_any(biased, (h,)) and not mentions_any(plain, (h,))]
    return bool(added) and all(sounds_present(plain, h, STEER_MIN_SOUND) for h in added)
