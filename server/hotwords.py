"""Bounded post-decode correction toward hotwords.

The engine's own biasing (a Whisper prompt) does most of the work; this
catches what is left: a hotword heard with other spacing or case ("comfy UI"
-> "ComfyUI"), or a near miss spelled a letter or two off. A span is only
rewritten when it is nearly the hotword already, so text far from every
hotword is never touched."""

from __future__ import annotations

import re
from dataclasses import dataclass

from rapidfuzz.fuzz import ratio

from .streaming.text import join_units, split_units

_NOT_WORD = re.compile(r"[\W_]+", re.UNICODE)
_EDGE_PUNCT = re.compile(r"^(\W*)(.*?)(\W*)$", re.UNICODE | re.DOTALL)
MIN_FUZZY_CHARS = 5   # shorter hotwords must match exactly (up to case and spacing)


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
    for hotword in sorted(hotwords, key=lambda h: -len(h.phrase)):
        while (span := _best_span(units, taken, hotword)) is not None:
            i, n = span
            replacements.append((i, n, hotword.phrase))
            taken[i:i + n] = [True] * n
    for i, n, phrase in sorted(replacements, reverse=True):
        lead = _EDGE_PUNCT.match(units[i]).group(1)
        trail = _EDGE_PUNCT.match(units[i + n - 1]).group(3)
        units[i:i + n] = [lead + phrase + trail]
    return join_units(units) if replacements else text


def _best_span(units: list[str], taken: list[bool], hotword: Hotword) -> tuple[int, int] | None:
    """The free span of units most like the hotword, if like enough."""
    target = _squash(hotword.phrase)
    if not target:
        return None
    width = len(split_units(hotword.phrase))
    fuzzy = len(target) >= MIN_FUZZY_CHARS
    best = None
    for n in range(max(1, width - 1), width + 3):
        for i in range(0, len(units) - n + 1):
            if any(taken[i:i + n]):
                continue
            candidate = _squash(join_units(units[i:i + n]))
            if not candidate or abs(len(candidate) - len(target)) > max(1, len(target) // 4):
                continue
            score = 1.0 if candidate == target else (ratio(candidate, target) / 100 if fuzzy else 0.0)
            if score >= hotword.threshold and (best is None or score > best[0]):
                best = (score, i, n)
    return best[1:] if best else None


def prompt_text(hotwords: tuple[Hotword, ...] | list[Hotword]) -> str:
    """Hotwords for the engine's prompt, the most boosted first."""
    return ", ".join(h.phrase for h in sorted(hotwords, key=lambda h: -h.boost))
