"""Bounded post-decode correction toward hotwords.

The engine's own biasing (a Whisper prompt) does most of the work; this
catches what is left: a hotword heard with other spacing or case ("comfy UI"
-> "ComfyUI"), a near miss spelled a letter or two off, or one that sounds
the same (NYSIIS codes for Latin script, toneless pinyin for Chinese:
"ConfUI" -> "ComfyUI", "达魔院" -> "达摩院"). A span is only rewritten when it
is nearly the hotword already, so text far from every hotword is untouched."""

from __future__ import annotations

import re
from dataclasses import dataclass

import jellyfish
from pypinyin import lazy_pinyin
from rapidfuzz.fuzz import ratio

from .streaming.text import IS_CJK, join_units, split_units

_NOT_WORD = re.compile(r"[\W_]+", re.UNICODE)
_EDGE_PUNCT = re.compile(r"^(\W*)(.*?)(\W*)$", re.UNICODE | re.DOTALL)
MIN_FUZZY_CHARS = 5   # shorter Latin hotwords must match exactly (up to case and spacing)
SOUNDS_ALIKE = 0.85   # phonetic-code similarity that counts as "sounds the same"...
SPELLED_NEAR = 0.70   # ...for a span spelled at least this close


@dataclass(frozen=True)
class Hotword:
    phrase: str
    boost: float = 1.0

    @property
    def threshold(self) -> float:
        """Similarity (0..1) a span needs; a higher boost accepts a little less."""
        return min(0.95, max(0.75, 0.87 - 0.04 * (self.boost - 1)))


def _squash(text: str) -> str:
    return _NOT_WORD.sub("", text).lower()


def apply_hotwords(text: str, hotwords: tuple[Hotword, ...] | list[Hotword]) -> str:
    if not text or not hotwords:
        return text
    units = split_units(text)
    taken = [False] * len(units)
    replacements: list[tuple[int, int, str]] = []
    spans: dict[tuple[int, int], str] = {}   # (start, length) -> squashed text, shared by all hotwords
    for hotword in sorted(hotwords, key=lambda h: -len(h.phrase)):
        target = _squash(hotword.phrase)
        if not target:
            continue
        width, target_sound = len(split_units(hotword.phrase)), _sounds(target)
        while (span := _best_span(units, taken, spans, hotword.threshold, target, width, target_sound)) is not None:
            i, n = span
            replacements.append((i, n, hotword.phrase))
            taken[i:i + n] = [True] * n
    for i, n, phrase in sorted(replacements, reverse=True):
        lead = _EDGE_PUNCT.match(units[i]).group(1)
        trail = _EDGE_PUNCT.match(units[i + n - 1]).group(3)
        units[i:i + n] = [lead + phrase + trail]
    return join_units(units) if replacements else text


def _sounds(text: str) -> str:
    if IS_CJK.search(text):
        return " ".join(lazy_pinyin(text))
    return jellyfish.nysiis(text) if text else ""


def _similarity(candidate: str, target: str, target_sound: str) -> float:
    if candidate == target:
        return 1.0
    cjk = bool(IS_CJK.search(target))
    if not cjk and len(target) < MIN_FUZZY_CHARS:
        return 0.0
    spelled = ratio(candidate, target) / 100
    if cjk:   # one wrong character of a short word is a different word unless it sounds the same
        return 0.99 if len(candidate) == len(target) and _sounds(candidate) == target_sound else spelled
    if spelled >= SPELLED_NEAR and ratio(_sounds(candidate), target_sound) / 100 >= SOUNDS_ALIKE:
        return max(spelled, 0.9)
    return spelled


def _best_span(units: list[str], taken: list[bool], spans: dict[tuple[int, int], str], threshold: float,
               target: str, width: int, target_sound: str) -> tuple[int, int] | None:
    """The free span of units most like the (squashed) hotword, if like enough."""
    best = None
    for n in range(max(1, width - 1), width + 3):
        for i in range(0, len(units) - n + 1):
            if any(taken[i:i + n]):
                continue
            candidate = spans.get((i, n))
            if candidate is None:
                candidate = spans[(i, n)] = _squash(join_units(units[i:i + n]))
            if not candidate or abs(len(candidate) - len(target)) > max(1, len(target) // 4):
                continue
            score = _similarity(candidate, target, target_sound)
            if score >= threshold and (best is None or score > best[0]):
                best = (score, i, n)
    return best[1:] if best else None


def mentions_any(text: str, phrases: tuple[str, ...] | list[str]) -> bool:
    """Whether text holds one of the phrases verbatim (up to case, spacing, punctuation)."""
    squashed = _squash(text)
    return any(_squash(p) and _squash(p) in squashed for p in phrases)
