"""Redaction of card numbers and personal data in transcripts (start.redact).

Pure text functions. They run on the text thread with the rest of the text
work, before a partial or final reaches the client, history or a log, so the
unredacted text exists only inside that one call.

Numbers are found as *digit runs*: digits as written ("4111 1111"), as spoken
("four one one one", and in pairs as ITN reads them: "forty one eleven"), in
Chinese ("四一一一"), with the separators and fillers ("uh") people and
recognizers put between groups. A run of 13 or more digits is a card number
whether or not it passes the Luhn check (one misheard digit fails it); a run
still growing at the end of a partial is masked while it could become one."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from ..wire.errors import require

KINDS = ("pci", "ssn", "phone", "email", "numbers")
TAGS = {"pci": "[card]", "ssn": "[ssn]", "phone": "[phone]", "email": "[email]", "numbers": "[number]"}
PARTIAL_CARD_DIGITS = 6       # a partial ending in this many digits may be a card number being read out
CARD_DIGITS = 13              # the fewest digits a card number has: a run this long is masked as one

_DIGIT_WORDS = {"zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                "six": "6", "seven": "7", "eight": "8", "nine": "9"}
_CJK_DIGITS = {"零": "0", "〇": "0", "一": "1", "幺": "1", "二": "2", "三": "3", "四": "4", "五": "5", "六": "6",
               "七": "7", "八": "8", "九": "9"}
# Tens, teens and scales, as numbers are read in pairs ("forty one eleven" is 4111,
# "forty one hundred" 4100): what ITN writes as digits is read as digits here too.
_TENS = {w: str(i) for i, w in enumerate("_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()) if i >= 2}
_TEENS = {w: str(10 + i) for i, w in enumerate(
    "ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split())}
_SCALES = {"hundred": "00", "thousand": "000"}
_UNIT_WORDS = [w for w in _DIGIT_WORDS if w not in ("zero", "oh", "o")]
_TOKEN = re.compile(r"(?P<arabic>\d+)|(?P<tens>\b(?:%s)(?:[\s-]+(?:%s))?\b)|(?P<number>\b(?:%s)\b)"
                    r"|(?P<word>\b(?:%s)\b)|(?P<cjk>[%s])" % (
                        "|".join(_TENS), "|".join(_UNIT_WORDS), "|".join([*_TEENS, *_SCALES]),
                        "|".join(_DIGIT_WORDS), "".join(_CJK_DIGITS)), re.IGNORECASE)
_NUMBER_WORDS = _DIGIT_WORDS | _TEENS | _SCALES
# Hesitations inside a number read out ("4111 1111, uh, 1111"): they do not end the run.
_FILLERS = ("uh", "um", "uhm", "umm", "er", "erm", "ah", "eh", "hmm", "mm", "嗯", "呃", "啊")
_SEP = r"[\s,.\-–—/、，。·()]{0,3}"
_SEPARATOR = re.compile(rf"{_SEP}(?:(?:{'|'.join(_FILLERS)}){_SEP}){{0,2}}", re.IGNORECASE)
_CJK_FILLERS = "嗯呃啊"
_WORD = re.compile(r"[^\s,.\-–—、，。?!？！]+")      # what is left of a text without separators
# Starts only where a name can start: tried at every character of a long unspaced
# partial (Chinese), it read to the end each time, quadratic on the text thread.
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_TLDS = "com|net|org|edu|gov|io|co|us|uk|ca|cn|de|fr|jp|info|biz|me"
_SPOKEN_EMAIL = re.compile(rf"\b\w+(?:\s+(?:dot|underscore)\s+\w+)*\s+at\s+\w+(?:\s+dot\s+\w+)*\s+dot\s+(?:{_TLDS})\b",
                           re.IGNORECASE)


def parse_redact(value) -> frozenset[str]:
    """start.redact: one kind or a list of them."""
    kinds = [value] if isinstance(value, str) else value
    require(isinstance(kinds, list) and all(isinstance(k, str) for k in kinds),
            f"redact must be one of {', '.join(KINDS)} or a list of them")
    unknown = sorted(set(kinds) - set(KINDS))
    require(not unknown, f"unknown redact kind(s) {', '.join(unknown)}: use {', '.join(KINDS)}")
    return frozenset(kinds)


@dataclass(frozen=True)
class _Token:
    start: int
    end: int
    digits: str
    arabic: bool


def _runs(text: str) -> list[list[_Token]]:
    """Tokens of digits next to each other (only separators between)."""
    runs: list[list[_Token]] = []
    for m in _TOKEN.finditer(text):
        raw = m.group()
        digits = raw if m.group("arabic") else _CJK_DIGITS[raw] if m.group("cjk") else _spoken(raw)
        token = _Token(m.start(), m.end(), digits, bool(m.group("arabic")))
        if runs and _SEPARATOR.fullmatch(text, runs[-1][-1].end, token.start):
            runs[-1].append(token)
        else:
            runs.append([token])
    return [run for run in runs if not _lone_word(run)]


def _spoken(word: str) -> str:
    """The digits of a spoken token: "four" 4, "eleven" 11, "forty" 40, "forty-one" 41, "hundred" 00."""
    parts = re.split(r"[\s-]+", word.lower())
    if parts[0] in _TENS:
        return _TENS[parts[0]] + (_DIGIT_WORDS[parts[1]] if len(parts) > 1 else "0")
    return _NUMBER_WORDS[parts[0]]


def _lone_word(run: list[_Token]) -> bool:
    # "one moment", "oh I see": a single spoken digit is a word, not a number
    # ("ten minutes" is: ITN writes it as 10).
    return len(run) == 1 and not run[0].arabic and len(run[0].digits) == 1


def _at_end(text: str) -> int:
    """Where the text's trailing punctuation and fillers begin: a run ending there is still being read out."""
    for m in reversed(list(_WORD.finditer(text))):     # one pass: a partial may end in many fillers
        word = m.group()
        kept = "" if word.lower() in _FILLERS else word.rstrip(_CJK_FILLERS)
        if kept:
            return m.start() + len(kept)
    return 0


def _length(run: list[_Token]) -> int:
    return sum(len(t.digits) for t in run)


def _ssn(run: list[_Token]) -> bool:
    digits = "".join(t.digits for t in run)
    if len(digits) != 9:
        return False
    grouped = [len(t.digits) for t in run] in ([3, 2, 4], [9]) or all(len(t.digits) == 1 for t in run)
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return grouped and area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def _phone(text: str, run: list[_Token]) -> bool:
    digits = "".join(t.digits for t in run)
    if text[max(0, run[0].start - 1):run[0].start] == "+":
        return 8 <= len(digits) <= 15
    if len(digits) == 11 and digits[0] == "1":
        digits = digits[1:]
    if len(digits) == 10:
        return digits[0] in "23456789"
    return len(digits) == 7 and [len(t.digits) for t in run] in ([3, 4], [1] * 7)


def spans(text: str, kinds: frozenset[str], partial: bool = False) -> list[tuple[int, int, str]]:
    """(start, end, tag) of what to mask, in order, not overlapping."""
    if not kinds or not text:
        return []
    found: list[tuple[int, int, str]] = []
    if "email" in kinds:
        found += [(m.start(), m.end(), TAGS["email"]) for m in _EMAIL.finditer(text)]
        found += [(m.start(), m.end(), TAGS["email"]) for m in _SPOKEN_EMAIL.finditer(text)]
    tail = _at_end(text)
    for run in _runs(text):
        start, end = run[0].start, run[-1].end
        if "pci" in kinds and _length(run) >= CARD_DIGITS:
            # A card whatever Luhn says (one misheard digit fails it), with whatever was read along with it.
            found.append((start, end, TAGS["pci"]))
        elif "ssn" in kinds and _ssn(run):
            found.append((start, end, TAGS["ssn"]))
        elif "phone" in kinds and _phone(text, run):
            found.append((start - (text[start - 1:start] in ("+", "(")), end, TAGS["phone"]))
        elif "pci" in kinds and partial and end >= tail and PARTIAL_CARD_DIGITS <= _length(run) <= 19:
            found.append((start, end, TAGS["pci"]))      # still being read out: it may become a card
        elif "numbers" in kinds:
            found.append((start, end, TAGS["numbers"]))
    found.sort()
    merged: list[tuple[int, int, str]] = []
    for span in found:
        if merged and span[0] < merged[-1][1]:
            if span[1] > merged[-1][1]:
                merged[-1] = (merged[-1][0], span[1], merged[-1][2])
            continue
        merged.append(span)
    return merged


def redact(text: str | None, kinds: frozenset[str], partial: bool = False) -> str | None:
    if not text or not kinds:
        return text
    out, at = [], 0
    for start, end, tag in spans(text, kinds, partial):
        out += [text[at:start], tag]
        at = end
    out.append(text[at:])
    return "".join(out)


def redact_words(words: list, kinds: frozenset[str]) -> list:
    """Engine words (with .word, .start_ms, .end_ms): a masked stretch becomes
    one word holding the tag, timed from its first word to its last."""
    if not words or not kinds:
        return words
    joined, starts = "", []
    for w in words:
        starts.append(len(joined))
        joined += w.word
    masked = spans(joined, kinds)
    if not masked:
        return words
    out = []
    i = 0
    for start, end, tag in masked:
        while i < len(words) and starts[i] + len(words[i].word) <= start:
            out.append(words[i])
            i += 1
        first = i
        while i < len(words) and starts[i] < end:
            i += 1
        if i > first:
            lead = " " if words[first].word.startswith(" ") else ""
            out.append(replace(words[first], word=lead + tag, end_ms=words[i - 1].end_ms))
    out += words[i:]
    return out
