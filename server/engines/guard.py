"""Hallucination guards for any engine's results: text that repeats a long
span of itself at its end, and words that no audio backs.

Whisper pads a short utterance to its window (and to the longest utterance of
its batch) with silence, and on that silence it may say the utterance again:
the text repeats a sentence, and the repeated words get zero-length times
piled at the end of the audio. Genuine repetition ("hold, hold, hold", "no no
no") is short and takes time to say, so neither check touches it."""

from __future__ import annotations

from dataclasses import replace
from difflib import SequenceMatcher

from ..wire.words import comparable, join_units, split_units
from ..wire.audio import MODEL_RATE
from ..wire.recognition import DecodeRequest, DecodeResult, Word

MIN_REPEAT_UNITS = 8         # a repeated tail shorter than this may be real speech
REPEAT_SIMILARITY = 0.8      # a near copy: Whisper's second pass drops or changes a word or two
UNHEARD_MS = 20              # a word this short was not heard, only written
AUDIO_END_SLACK_MS = 300     # "at the end of the audio": within this of it


def repeated_tail(units: list[str]) -> int:
    """How many units at the end nearly repeat the span right before them (0: none)."""
    keys = [comparable(u) for u in units]
    keys_words = [k for k in keys if k]
    if len(keys_words) < 2 * MIN_REPEAT_UNITS:
        return 0
    for n in range(len(keys) // 2, MIN_REPEAT_UNITS - 1, -1):
        tail, before = keys[-n:], keys[-2 * n:-n]
        # The copy may be cut short or lose a word: compare it with the span before it.
        if sum(1 for k in tail if k) >= MIN_REPEAT_UNITS and \
                SequenceMatcher(None, before, tail, autojunk=False).ratio() >= REPEAT_SIMILARITY:
            return n
    return 0


def unheard_tail(words: list[Word], audio_ms: int) -> int:
    """How many words at the end have no audio behind them: next to no
    duration at (or past) the end of the audio, or starting after it."""
    count = 0
    for word in reversed(words):
        squeezed = word.end_ms - word.start_ms <= UNHEARD_MS and word.start_ms >= audio_ms - AUDIO_END_SLACK_MS
        if not (squeezed or word.start_ms > audio_ms + AUDIO_END_SLACK_MS):
            break
        count += 1
    return count


def _spoken_tail(result: DecodeResult) -> int:
    """Units of a repeated tail that the words' times do not back (0: none).
    With word times, a copy said as slowly as the original is real speech."""
    units = split_units(result.text)
    repeated = repeated_tail(units)
    if not repeated or not result.words:
        return repeated
    spans = [(w, n) for w in result.words for n in [len([u for u in split_units(w.word) if comparable(u)])] if n]
    counted = sum(n for _, n in spans)
    tail_units = len([u for u in units[len(units) - repeated:] if comparable(u)])
    if counted != len([u for u in units if comparable(u)]):
        return repeated       # the words do not line up with the text: go by the text
    seen, tail_ms, before_ms = 0, 0, 0
    for word, n in spans:
        duration = word.end_ms - word.start_ms
        if seen >= counted - tail_units:
            tail_ms += duration
        elif seen >= counted - 2 * tail_units:
            before_ms += duration
        seen += n
    return repeated if tail_ms < 0.5 * before_ms else 0


def looks_hallucinated(result: DecodeResult, audio_ms: int) -> bool:
    if result.words and unheard_tail(result.words, audio_ms) >= 2:
        return True
    return _spoken_tail(result) > 0


def _first_words(words: list[Word], units: int) -> list[Word]:
    out, seen = [], 0
    for word in words:
        n = len([u for u in split_units(word.word) if comparable(u)])
        if seen + n > units:
            break
        out.append(word)
        seen += n
    return out


def trim_hallucination(result: DecodeResult, audio_ms: int) -> DecodeResult:
    """The result without its unheard words and its repeated tail."""
    text, words = result.text, result.words
    unheard = unheard_tail(words, audio_ms) if words else 0
    if unheard >= 2:
        words = words[:len(words) - unheard]
        text = join_units([w.word for w in words])
    trimmed = replace(result, text=text, words=words or None)
    repeated = _spoken_tail(trimmed)
    if repeated:
        units = split_units(text)
        text = join_units(units[:len(units) - repeated])
        if words:   # the copy's words go with it
            words = _first_words(words, len([u for u in split_units(text) if comparable(u)]))
    if text == result.text and words is result.words:
        return result
    return replace(result, text=text, words=words or None, extra={**result.extra, "trimmed": True})


def decode_by_kind(requests: list[DecodeRequest], decoders: dict) -> list[DecodeResult]:
    """Results in request order, each kind decoded as one group by decoders[kind]
    (finals first: they are the ones a client waits for). Whatever the engine,
    a result's repeated tail and words no audio backs are trimmed (guard.py)."""
    results: list[DecodeResult | None] = [None] * len(requests)
    for kind in ("final", "partial"):
        group = [i for i, r in enumerate(requests) if r.kind == kind]
        if group:
            for i, result in zip(group, decoders[kind]([requests[i] for i in group])):
                results[i] = trim_hallucination(result, len(requests[i].audio) * 1000 // MODEL_RATE)
    return results  # type: ignore[return-value]
