"""Text units for comparing hypotheses: words, or single CJK characters."""

from __future__ import annotations

import re

_CJK = r"\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_UNIT = re.compile(rf"[{_CJK}]|[^\s{_CJK}]+")
IS_CJK = re.compile(rf"[{_CJK}]")
_PUNCT = re.compile(r"[^\w]+", re.UNICODE)


def split_units(text: str) -> list[str]:
    return _UNIT.findall(text)


def unit_spans(text: str) -> list[tuple[int, int, str]]:
    """split_units with where each unit is: (start, end, unit)."""
    return [(m.start(), m.end(), m.group(0)) for m in _UNIT.finditer(text)]


def join_units(units: list[str]) -> str:
    out = ""
    for unit in units:
        if out and not (IS_CJK.match(unit) or IS_CJK.match(out[-1]) or _PUNCT.fullmatch(unit)):
            out += " "
        out += unit
    return out


def comparable(unit: str) -> str:
    return _PUNCT.sub("", unit).lower()


def collapse_repeats(text: str, hit_length_limit: bool = False,
                     max_repeats: int = 4, max_ngram: int = 48, phrase: int = 4) -> str:
    """Guard against Whisper's decoding loops. A short n-gram repeated more
    than max_repeats times in a row is cut back to max_repeats, and a phrase
    of `phrase` units or more said twice in a row is kept once: genuine speech
    repeats words ("hold, hold, hold"), a looping decoder repeats sentences."""
    units = split_units(text)
    keys = [comparable(u) for u in units]
    changed = False
    for n in range(1, max_ngram + 1):
        keep = 1 if n >= phrase else max_repeats
        i = 0
        while i + n <= len(keys):
            count = 1
            while keys[i + count * n:i + (count + 1) * n] == keys[i:i + n] and any(keys[i:i + n]):
                count += 1
            if count > keep:
                drop = slice(i + keep * n, i + count * n)
                del units[drop], keys[drop]
                changed = True
            i += 1
    if not (changed or hit_length_limit):
        return text
    # A loop cut off by the length limit ends in a truncated copy of itself.
    for t in range(len(keys) // 2, 1, -1):
        tail = keys[-t:]
        for period in range(max(t, phrase), len(keys) - t + 1):
            copy = keys[-t - period:-t - period + t]
            if tail[:-1] == copy[:-1] and copy[-1].startswith(tail[-1]):
                del units[-t:]
                return join_units(units)
    return join_units(units)


_SENTENCE_END = re.compile(r"[.?!。？！…]['\"”’)」』]*\s*$")
_CLAUSE_GOES_ON = re.compile(r"[,;:，、；：\-–—]\s*$")
# Words after which an English clause cannot end: a pause after them is a pause mid-thought.
_OPEN_WORDS = frozenset("a an the and or but nor so of to in on at by for with from into than that which who "
                        "whose whom because if when while although though as is are was were be been my your "
                        "our their his her its".split())


def clause_shape(text: str) -> str:
    """'sentence' when text ends a sentence, 'open' when it stops mid-clause
    (a comma, "and", "the"...), else 'unknown' (no punctuation to go by)."""
    if _SENTENCE_END.search(text):
        return "sentence"
    if _CLAUSE_GOES_ON.search(text):
        return "open"
    units = split_units(text)
    return "open" if units and comparable(units[-1]) in _OPEN_WORDS else "unknown"
