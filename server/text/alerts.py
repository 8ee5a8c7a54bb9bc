"""Watch phrases: "hold", "abort", "T minus <number>".

A session registers phrases; each partial is scanned and every new
occurrence raises an alert at once. The final confirms the alerts it still
contains and retracts the others. Numbers (digits, English or Chinese number
words) are parsed to integers, so a countdown reads as 10, 9, 8 ...

A phrase also steers recognition (its words go into the engine's prompt, as
hotwords do), and one marked `sounds_like` matches words that sound like it
too ("fold" for "hold", "D minus 5" for "T minus 5"), with a confidence below
1. Exact matching stays the default: sound-alikes trade false alerts for
recall, and only the user knows which one costs more."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from difflib import SequenceMatcher

from ..wire.errors import ErrorCode, ProtocolError, require
from .phonetic import key_similarity, sound_key
from ..wire.events import Alert
from ..wire.words import IS_CJK, split_units, unit_spans

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


_T_DASH = re.compile(r"(?<![\w])([a-z]) ?[-‐–—−](?=\d)")
_DASH = re.compile(r"[-‐–—]")
_PUNCT = re.compile(r"[^\w\s]")
_SPACES = re.compile(r"\s+")


def normalize_for_matching(text: str) -> str:
    # "T-5" (or "T -5") is how Whisper writes "T minus five".
    text = _T_DASH.sub(r"\1 minus ", text.lower())
    text = _PUNCT.sub(" ", _DASH.sub(" ", text))
    return " ".join(text.split())


@dataclass(frozen=True)
class _Normalized:
    """Text as phrases are matched in it, and where each of its characters came from
    in the text it was made of (start and end there), so a match can be traced back."""
    text: str
    starts: tuple[int, ...]
    ends: tuple[int, ...]


def _normalized(text: str) -> _Normalized:
    """normalize_for_matching(), keeping track of sources (slower: only redaction needs them)."""
    lowered = text.lower()
    if len(lowered) == len(text):
        chars, starts, ends = list(lowered), list(range(len(text))), list(range(1, len(text) + 1))
    else:           # a character whose lower case is longer ("İ"): map each piece to it
        chars, starts, ends = [], [], []
        for i, ch in enumerate(text):
            for piece in ch.lower():
                chars.append(piece), starts.append(i), ends.append(i + 1)
    for pattern, replacement in ((_T_DASH, r"\1 minus "), (_DASH, " "), (_PUNCT, " "), (_SPACES, " ")):
        chars, starts, ends = _substitute(pattern, replacement, chars, starts, ends)
    text = "".join(chars)
    left, right = len(text) - len(text.lstrip(" ")), len(text.rstrip(" "))
    return _Normalized(text[left:right], tuple(starts[left:right]), tuple(ends[left:right]))


def _substitute(pattern: re.Pattern, replacement: str, chars: list[str], starts: list[int], ends: list[int]):
    """re.sub over characters with their sources: what replaces a match comes from all of it."""
    text = "".join(chars)
    out_chars, out_starts, out_ends, at = [], [], [], 0
    for m in pattern.finditer(text):
        out_chars += chars[at:m.start()]
        out_starts += starts[at:m.start()]
        out_ends += ends[at:m.start()]
        new = m.expand(replacement)
        out_chars += new
        out_starts += [starts[m.start()]] * len(new)
        out_ends += [ends[m.end() - 1]] * len(new)
        at = m.end()
    return out_chars + chars[at:], out_starts + starts[at:], out_ends + ends[at:]


SOUNDS_LIKE = 0.85     # the similarity `sounds_like: true` asks for (tuned on bench/alert_bench.py)
MIN_SOUNDS_LIKE = 0.7  # looser matches alert on half the dictionary (and cost too much to search for)
MAX_SOUNDS_LIKE = 10   # sound-alike phrases per stream: each partial is searched for all of them (<= 10 ms each)


@dataclass(frozen=True)
class WatchPhrase:
    phrase: str
    pattern: re.Pattern
    parts: tuple[str | None, ...]      # the phrase's words between number slots (None: a slot)
    sounds_like: float | None = None   # also match spans this similar in sound (0..1); None: exact only
    steer: bool = True                 # put its words in the engine's prompt

    @classmethod
    def compile(cls, phrase: str, sounds_like: float | None = None, steer: bool = True) -> "WatchPhrase":
        tokens = [t for t in re.split(r"\s*(<number>)\s*|\s+", phrase.strip(), flags=re.I) if t]
        spacer = r"\s*" if IS_CJK.search(phrase) else r"\s+"
        parts = [_NUMBER if t.lower() == NUMBER_SLOT else re.escape(normalize_for_matching(t)) for t in tokens]
        parts = [p for p in parts if p]
        if not parts:
            raise ValueError(f"watch phrase {phrase!r} has nothing to match")
        pattern = re.compile(_edge(tokens[0], left=True) + spacer.join(parts) + _edge(tokens[-1], left=False))
        return cls(phrase, pattern, _literal_parts(tokens), sounds_like, steer)

    @property
    def prompt_terms(self) -> tuple[str, ...]:
        """What the engine's prompt gets: the words, without number slots ("T minus")."""
        return tuple(p for p in self.parts if p) if self.steer else ()

    def to_wire(self):
        """As a client would send it: the bare phrase unless options were set."""
        if self.sounds_like is None and self.steer:
            return self.phrase
        out = {"phrase": self.phrase, "sounds_like": self.sounds_like or False}
        if not self.steer:
            out["steer"] = False
        return out


def _literal_parts(tokens: list[str]) -> tuple[str | None, ...]:
    """["T", "minus", "<number>"] -> ("T minus", None): words joined between slots."""
    parts: list[str | None] = []
    for token in tokens:
        if token.lower() == NUMBER_SLOT:
            parts.append(None)
        elif parts and parts[-1] is not None:
            parts[-1] += ("" if IS_CJK.search(token) else " ") + token
        else:
            parts.append(token)
    return tuple(parts)


def parse_watch(value) -> tuple[WatchPhrase, ...]:
    """A client's `watch` list, checked and compiled: phrases, or maps
    {phrase, sounds_like: true | 0..1, steer: true}."""
    require(isinstance(value, list), "watch must be a list of phrases, e.g. [\"hold\", \"T minus <number>\"]")
    require(len(value) <= MAX_WATCH, f"at most {MAX_WATCH} watch phrases")
    out = []
    for item in value:
        phrase, sounds_like, steer = item, None, True
        if isinstance(item, dict):
            unknown = set(item) - {"phrase", "sounds_like", "steer"}
            require(not unknown, f"unknown watch field(s): {', '.join(sorted(map(str, unknown)))}")
            phrase, sounds_like, steer = item.get("phrase"), item.get("sounds_like", False), item.get("steer", True)
            require(isinstance(steer, bool), "watch steer must be true or false")
            require(isinstance(sounds_like, (bool, int, float)) and (
                isinstance(sounds_like, bool) or MIN_SOUNDS_LIKE <= sounds_like <= 1),
                f"watch sounds_like must be true, false or a similarity in [{MIN_SOUNDS_LIKE}, 1]")
            sounds_like = SOUNDS_LIKE if sounds_like is True else (float(sounds_like) or None)
        require(isinstance(phrase, str) and 0 < len(phrase.strip()) <= MAX_WATCH_CHARS,
                f"each watch phrase must be a non-empty string of at most {MAX_WATCH_CHARS} characters")
        try:
            out.append(WatchPhrase.compile(phrase, sounds_like, steer))
        except ValueError as exc:
            raise ProtocolError(ErrorCode.INVALID_FIELD, str(exc)) from None
    require(sum(1 for w in out if w.sounds_like) <= MAX_SOUNDS_LIKE,
            f"at most {MAX_SOUNDS_LIKE} watch phrases may match sound-alikes")
    return tuple(out)


def prompt_terms(watch: tuple[WatchPhrase, ...]) -> tuple[str, ...]:
    """The words of the steering phrases, once each, for the engine's prompt."""
    return tuple(dict.fromkeys(term for w in watch for term in w.prompt_terms))


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
    confidence: float = 1.0            # below 1: it sounds like the phrase
    span: tuple[int, int] | None = field(default=None, compare=False)   # where, in the searched text as matched


def find_occurrences(text: str, watch: tuple[WatchPhrase, ...]) -> list[Occurrence]:
    normalized = normalize_for_matching(text)
    found, taken = [], []
    for w in watch:
        for m in w.pattern.finditer(normalized):
            number = next((parse_number(g) for g in m.groups() if g is not None), None)
            found.append((m.start(), Occurrence(w.phrase, m.group(0), number, span=(m.start(), m.end()))))
            taken.append((m.start(), m.end()))
    if any(w.sounds_like for w in watch):
        found += _sound_alikes(normalized, [w for w in watch if w.sounds_like], taken)
    return [o for _, o in sorted(found, key=lambda pair: pair[0])]


def mask_occurrences(text: str, found: tuple[Occurrence, ...],
                     masked: list[tuple[int, int, str]]) -> tuple[Occurrence, ...]:
    """Occurrences found in `text` as redaction leaves them: where one overlaps a
    masked span (start, end, tag) of the text, its text shows the tag there and
    it has no number. What was masked must not leave in an alert either, and an
    occurrence's own text is too short to redact alone (four digits of a card)."""
    if not masked:
        return found
    normalized = _normalized(text)
    if normalized.text != normalize_for_matching(text):    # lower() changed with context (final sigma): mask all
        return tuple(replace(o, text=masked[0][2], number=None) for o in found)
    out = []
    for o in found:
        if o.span is None or not any(a < normalized.ends[o.span[1] - 1] and normalized.starts[o.span[0]] < b
                                     for a, b, _ in masked):
            out.append(o)
            continue
        pieces, last = [], None
        for i in range(*o.span):       # each character masked by the span it came from
            source = (normalized.starts[i], normalized.ends[i])
            hit = next((k for k, (a, b, _) in enumerate(masked) if a < source[1] and source[0] < b), None)
            if hit is None:
                pieces.append(normalized.text[i])
            elif hit != last:
                pieces.append(masked[hit][2])
            last = hit
        out.append(replace(o, text="".join(pieces), number=None))
    return tuple(out)


def _sound_alikes(text: str, watch: list[WatchPhrase], taken: list[tuple[int, int]]) -> list[tuple[int, Occurrence]]:
    """Occurrences of sounds_like phrases that no exact match already took, best first."""
    units = unit_spans(text)
    keys = [sound_key(u[2]) for u in units]
    stems = [sound_key(_stem(u[2])) for u in units]
    candidates = []
    for w in watch:
        for i in range(len(units)):
            match = _match_parts(units, keys, stems, i, w.parts, w.sounds_like)
            if match:
                end, number, confidence = match
                start, stop = units[i][0], units[end - 1][1]
                candidates.append((confidence, start, stop, Occurrence(w.phrase, text[start:stop], number,
                                                                       round(confidence, 2), (start, stop))))
    out = []
    for confidence, start, stop, occurrence in sorted(candidates, key=lambda c: (-c[0], c[1])):
        if all(stop <= a or start >= b for a, b in taken):
            taken.append((start, stop))
            out.append((start, occurrence))
    return out


# A word's forms say the same callout ("we are holding" is a hold): a sound-alike
# match may end in an inflected word, at a little less confidence.
_INFLECTION = re.compile(r"^([a-z]{3,}?)(?:ing|ed|es|s)$")
INFLECTED = 0.95


def _stem(word: str) -> str:
    m = _INFLECTION.match(word)
    return m.group(1) if m else word


def _match_parts(units, keys: list[str], stems: list[str], i: int, parts: tuple[str | None, ...], threshold: float):
    """(end unit, number, confidence) of the phrase's parts matched from unit i, or None."""
    number, confidence = None, 1.0
    for part in parts:
        if i >= len(units):
            return None
        if part is None:                 # a number: CJK numerals, or one or two words ("twenty one")
            number, i = _number_at(units, i)
            if number is None:
                return None
            continue
        words = normalize_for_matching(part)
        width, target = len(split_units(words)), sound_key(words)
        best = None
        for n in range(max(1, width - 1), width + 2):
            if i + n > len(units):
                break
            score = key_similarity("".join(keys[i:i + n]), target, threshold)
            if score < threshold and stems[i + n - 1] != keys[i + n - 1]:
                score = INFLECTED * key_similarity("".join(keys[i:i + n - 1]) + stems[i + n - 1], target, threshold)
            if score >= threshold and (best is None or score > best[0]):
                best = (score, i + n)
        if best is None:
            return None
        confidence, i = min(confidence, best[0]), best[1]
    return i, number, confidence


def _number_at(units, i: int) -> tuple[int | None, int]:
    """(the number that starts at unit i, the unit after it), or (None, i)."""
    if IS_CJK.search(units[i][2]):
        j = i
        while j < len(units) and parse_number(units[j][2]) is not None:
            j += 1
        return (parse_number("".join(u[2] for u in units[i:j])), j) if j > i else (None, i)
    for width in (2, 1):
        if i + width <= len(units):
            value = parse_number(" ".join(u[2] for u in units[i:i + width]))
            if value is not None:
                return value, i + width
    return None, i


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
        return Alert(alert_id, status, occurrence.phrase, occurrence.text, occurrence.number, utterance, audio_ms,
                     confidence=occurrence.confidence)

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
