"""Bounded post-decode correction toward hotwords.

The engine's own biasing (a Whisper prompt) does most of the work; this
catches what is left: a hotword heard with other spacing or case ("comfy UI"
-> "ComfyUI"), a near miss spelled a letter or two off, or one that sounds
the same (NYSIIS codes for Latin script, toneless pinyin for Chinese:
"ConfUI" -> "ComfyUI", "达魔院" -> "达摩院"). A span is only rewritten when it
is nearly the hotword already, so text far from every hotword is untouched."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import jellyfish
from pypinyin import lazy_pinyin
from rapidfuzz.fuzz import ratio

from ..wire.errors import ErrorCode, ProtocolError, require
from ..wire.words import IS_CJK, join_units, split_units

_NOT_WORD = re.compile(r"[\W_]+", re.UNICODE)
_EDGE_PUNCT = re.compile(r"^(\W*)(.*?)(\W*)$", re.UNICODE | re.DOTALL)
MAX_HOTWORDS, MAX_HOTWORD_CHARS = 100, 64
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


def parse_hotwords(value) -> tuple[Hotword, ...]:
    """A client's `hotwords`: strings or {phrase, boost} maps, checked."""
    require(isinstance(value, list), "hotwords must be a list of strings or {phrase, boost} maps")
    require(len(value) <= MAX_HOTWORDS, f"at most {MAX_HOTWORDS} hotwords")
    out = []
    for item in value:
        phrase, boost = (item, 1.0) if isinstance(item, str) else (
            (item.get("phrase"), item.get("boost", 1.0)) if isinstance(item, dict) else (None, None))
        require(isinstance(phrase, str) and 0 < len(phrase.strip()) <= MAX_HOTWORD_CHARS,
                f"each hotword must be a non-empty string of at most {MAX_HOTWORD_CHARS} characters")
        require(isinstance(boost, (int, float)) and not isinstance(boost, bool) and 0 < boost <= 10,
                "hotword boost must be a number in (0, 10]")
        out.append(Hotword(phrase.strip(), float(boost)))
    return tuple(out)


def from_funasr(value) -> list:
    """FunASR clients send hotwords as a JSON string {"word": weight} (weights
    around 1..100) or as words separated by spaces or commas: as our list."""
    if value in (None, ""):
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            value = [w for w in value.replace(",", " ").split() if w]
    if isinstance(value, dict):
        out = []
        for phrase, weight in value.items():
            weight = weight if isinstance(weight, (int, float)) and not isinstance(weight, bool) else 10
            out.append({"phrase": str(phrase), "boost": min(10.0, max(1.0, weight / 10))})
        return out[:MAX_HOTWORDS]
    if isinstance(value, list):
        return [str(w) for w in value][:MAX_HOTWORDS]
    raise ProtocolError(ErrorCode.INVALID_FIELD, "hotwords must be a JSON object string or a list of words")


# A prompt's list separators, Latin and CJK.
_PROMPT_SEPARATORS = re.compile(r"[,;\n、，；。]+")
MAX_PROMPT_TERM_WORDS = 4


def from_prompt(prompt: str) -> list[str]:
    """OpenAI's `prompt` as hotwords: for whisper-1 it is "a list of keywords",
    so each comma-, semicolon- or line-separated term of a few words is one.
    Longer sentences ("a call about billing") steer no correction: skipped."""
    terms = (t.strip(" .\t\"'") for t in _PROMPT_SEPARATORS.split(prompt or ""))
    return [t for t in terms if t and len(t) <= MAX_HOTWORD_CHARS
            and len(split_units(t)) <= (2 * MAX_PROMPT_TERM_WORDS if IS_CJK.search(t) else MAX_PROMPT_TERM_WORDS)
            ][:MAX_HOTWORDS]


def prompt_order(hotwords: tuple[Hotword, ...]) -> tuple[str, ...]:
    """The phrases for an engine's prompt, the most boosted first: the prompt may have to cut the tail."""
    return tuple(h.phrase for h in sorted(hotwords, key=lambda h: -h.boost))


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
