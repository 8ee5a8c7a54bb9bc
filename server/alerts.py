"""Watch phrases: "hold", "abort", "T minus <number>".

A session registers phrases; each partial is scanned and every new
occurrence raises an alert at once. The final confirms the alerts it still
contains and retracts the others. Numbers (digits, English or Chinese number
words) are parsed to integers, so a countdown reads as 10, 9, 8 ..."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from difflib import SequenceMatcher

from .errors import ErrorCode, ProtocolError, require
from .streaming.events import Alert
from .streaming.text import IS_CJK

NUMBER_SLOT = "<number>"
MAX_WATCH, MAX_WATCH_CHARS = 50, 64
_EN_UNITS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen".split())}
_EN_UNITS["oh"] = 0
_EN_TENS = {w: 10 * i for i, w in enumerate("_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()) if i >= 2}
_ZH_DIGITS = {c: i for i, c in enumerate("零一二三四五六七八九")} | {"〇": 0, "两": 2}
_EN_NUMBER = (rf"(?:(?:{'|'.join(_EN_TENS)})(?: (?:{'|'.join(w for w in _EN_UNITS if _EN_UNITS[w] and _EN_UNITS[w] < 10)}))?"
              rf"|{'|'.join(sorted(_EN_UNITS, key=len, reverse=True))})")
# Atomic: a number is taken whole and never split between neighbouring slots,
# so "<number><number>..." cannot backtrack exponentially over a long digit run.
_NUMBER = rf"((?>\d+|{_EN_NUMBER}|[零〇一二两三四五六七八九十百]+))"


def parse_number(text: str) -> int | None:
    text = text.strip().lower()
    if text.isdigit():
        return int(text)
    words = text.split()
    if words and all(w in _EN_UNITS or w in _EN_TENS for w in words):
        return sum(_EN_TENS.get(w, 0) + _EN_UNITS.get(w, 0) for w in words)
    if text and all(c in _ZH_DIGITS or c in "十百" for c in text):
        value, current = 0, 0
        for c in text:
            if c == "十":
                value += (current or 1) * 10
                current = 0
            elif c == "百":
                value += (current or 1) * 100
                current = 0
            else:
                current = current * 10 + _ZH_DIGITS[c] if current else _ZH_DIGITS[c]
        return value + current
    return None


def normalize_for_matching(text: str) -> str:
    text = re.sub(r"[-‐–—]", " ", text.lower())
    text = re.sub(r"[^\w\s]", " ", text)
    return " ".join(text.split())


@dataclass(frozen=True)
class WatchPhrase:
    phrase: str
    pattern: re.Pattern

    @classmethod
    def compile(cls, phrase: str) -> "WatchPhrase":
        tokens = [t for t in re.split(r"\s*(<number>)\s*|\s+", phrase.strip(), flags=re.I) if t]
        spacer = r"\s*" if IS_CJK.search(phrase) else r"\s+"
        parts = [_NUMBER if t.lower() == NUMBER_SLOT else re.escape(normalize_for_matching(t)) for t in tokens]
        parts = [p for p in parts if p]
        if not parts:
            raise ValueError(f"watch phrase {phrase!r} has nothing to match")
        return cls(phrase, re.compile(_edge(tokens[0], left=True) + spacer.join(parts) + _edge(tokens[-1], left=False)))


def parse_watch(value) -> tuple[WatchPhrase, ...]:
    """A client's `watch` list, checked and compiled."""
    require(isinstance(value, list), "watch must be a list of phrases, e.g. [\"hold\", \"T minus <number>\"]")
    require(len(value) <= MAX_WATCH, f"at most {MAX_WATCH} watch phrases")
    out = []
    for phrase in value:
        require(isinstance(phrase, str) and 0 < len(phrase.strip()) <= MAX_WATCH_CHARS,
                f"each watch phrase must be a non-empty string of at most {MAX_WATCH_CHARS} characters")
        try:
            out.append(WatchPhrase.compile(phrase))
        except ValueError as exc:
            raise ProtocolError(ErrorCode.INVALID_FIELD, str(exc)) from None
    return tuple(out)


def _edge(token: str, left: bool) -> str:
    """Whole words only ("hold" must not fire inside "holder"); CJK has no word edges."""
    if token.lower() == NUMBER_SLOT:
        return r"(?<![0-9A-Za-z])" if left else r"(?![0-9A-Za-z])"
    if IS_CJK.search(token[0] if left else token[-1]):
        return ""
    return r"(?<!\w)" if left else r"(?!\w)"


@dataclass(frozen=True)
class Occurrence:
    phrase: str
    text: str
    number: int | None


def find_occurrences(text: str, watch: tuple[WatchPhrase, ...]) -> list[Occurrence]:
    normalized = normalize_for_matching(text)
    found = []
    for w in watch:
        for m in w.pattern.finditer(normalized):
            number = next((parse_number(g) for g in m.groups() if g is not None), None)
            found.append((m.start(), Occurrence(w.phrase, m.group(0), number)))
    return [o for _, o in sorted(found, key=lambda pair: pair[0])]


@dataclass
class AlertTracker:
    """Alerts of one stream: which occurrences were announced, per utterance.

    Occurrences are matched between hypotheses by aligning their sequences
    (phrase and number), not by position: a partial that missed a word must
    not shift every later occurrence into a "new" one."""
    _announced: dict[int, list[tuple[str, Occurrence]]] = field(default_factory=dict)
    _next_id: int = 0

    @staticmethod
    def _alert(occurrence: Occurrence, utterance: int, audio_ms: int, status: str, alert_id: str) -> Alert:
        return Alert(alert_id, status, occurrence.phrase, occurrence.text, occurrence.number, utterance, audio_ms)

    def _new_id(self) -> str:
        self._next_id += 1
        return f"a{self._next_id}"

    @staticmethod
    def _align(announced: list[tuple[str, Occurrence]], found: list[Occurrence]) -> dict[int, int]:
        """found index -> announced index, for occurrences that are the same."""
        def key(o: Occurrence):
            return (o.phrase, o.number if o.number is not None else o.text)
        matcher = SequenceMatcher(None, [key(o) for _, o in announced], [key(o) for o in found], autojunk=False)
        pairs = {}
        for block in matcher.get_matching_blocks():
            for k in range(block.size):
                pairs[block.b + k] = block.a + k
        return pairs

    def on_partial(self, found: tuple[Occurrence, ...], utterance: int, audio_ms: int) -> list[Alert]:
        """`found`: find_occurrences() of the newest hypothesis."""
        if not found:
            return []
        announced = self._announced.setdefault(utterance, [])
        matched = self._align(announced, found)
        events = []
        inserted = 0
        for index, occurrence in enumerate(found):
            if index in matched:
                continue
            alert_id = self._new_id()
            # Keep the announced list in spoken order: a late "9" goes between 10 and 8.
            before = [matched[j] for j in range(index) if j in matched]
            position = (max(before) + 1 if before else 0) + inserted
            announced.insert(position, (alert_id, occurrence))
            inserted += 1
            events.append(self._alert(occurrence, utterance, audio_ms, "detected", alert_id))
        return events

    def on_final(self, found: tuple[Occurrence, ...], utterance: int, audio_ms: int) -> list[Alert]:
        announced = self._announced.pop(utterance, [])
        if not found and not announced:
            return []
        matched = self._align(announced, found)
        events = []
        confirmed = set(matched.values())
        for index, (alert_id, occurrence) in enumerate(announced):
            if index not in confirmed:
                events.append(self._alert(occurrence, utterance, audio_ms, "retracted", alert_id))
        for index, occurrence in enumerate(found):
            if index in matched:
                alert_id = announced[matched[index]][0]
            else:   # heard only in the final decode
                alert_id = self._new_id()
            events.append(self._alert(occurrence, utterance, audio_ms, "confirmed", alert_id))
        return events
