"""How alike two bits of text sound: for watch phrases heard a little wrong
("fold" for "hold", "D minus" for "T minus") and for telling a prompt that
steered a decode from one that put words in the model's mouth.

English words get a rough sound key (digraphs, soft c, silent e, doubled
letters), Chinese its toneless pinyin; keys are compared by an edit distance
where what a noisy channel confuses costs less."""

from __future__ import annotations

import functools
import re

from pypinyin import lazy_pinyin
from rapidfuzz.distance import Levenshtein

from ..wire.words import IS_CJK, comparable, split_units

# Letters named alike: ASR's classic "E-set" (B C D E G P T V Z all rhyme with
# "ee"), written as the letter or as its name. They count as one sound, so
# "D minus" and "see minus" both sound like "T minus".
_E_SET = {**{letter: letter for letter in "bcdegptvz"}, "bee": "b", "see": "c", "sea": "c", "dee": "d", "gee": "g",
          "pee": "p", "pea": "p", "tee": "t", "tea": "t", "vee": "v", "zee": "z"}
_DIGRAPHS = [("ph", "f"), ("th", "0"), ("ck", "k"), ("wh", "w"), ("qu", "kw"), ("gh", ""), ("x", "ks")]
_VOWELS = set("aeiouy")
# Consonants a noisy channel turns into each other (voicing, place of a fricative):
# half a substitution. Anything else costs a whole one.
_NEAR = {frozenset(p) for p in ("td", "pb", "kg", "sz", "fv", "mn", "fh", "h0", "f0", "lr", "sʃ")}
_E_LETTERS = "ΒΞΔΕΓΠΤΥΖ"      # one symbol per E-set letter, b c d e g p t v z


def sound_key(text: str) -> str:
    """The sound key of some words (lower case, no punctuation): the words' keys joined."""
    return "".join(_sound_key(w) for w in text.split())


@functools.lru_cache(maxsize=8192)
def _sound_key(word: str) -> str:
    """A word's rough sound as letters: "hold" -> "hold", "phone" -> "fon", "T"/"tee" -> "Τ"."""
    if word in _E_SET:
        return _E_LETTERS["bcdegptvz".index(_E_SET[word])]
    if IS_CJK.search(word):
        return "".join(lazy_pinyin(word))
    for spelled, sound in _DIGRAPHS:
        word = word.replace(spelled, sound)
    word = re.sub(r"c(?=[eiy])", "s", word).replace("c", "k").replace("sh", "ʃ")
    word = re.sub(r"(.)\1+", r"\1", word)            # doubled letters sound once
    if len(word) > 2 and word.endswith("e") and word[-2] not in _VOWELS:
        word = word[:-1]                                # a silent final e
    return word


def _cost(a: str, b: str) -> float:
    if a == b:
        return 0.0
    if a in _VOWELS and b in _VOWELS:
        return 0.7
    if a in _E_LETTERS and b in _E_LETTERS:
        return 0.3
    return 0.4 if frozenset((a, b)) in _NEAR else 1.0


def sound_similarity(heard: str, phrase: str) -> float:
    """0..1: how alike two word sequences sound (a weighted edit distance over
    their sound keys; an h or a vowel dropped costs less than a consonant)."""
    return key_similarity(sound_key(heard), sound_key(phrase))


CHEAPEST_GAP = 0.6      # no letter added or dropped costs less (_gap), nor a substitution across classes
# Letters whose substitutions can cost less than a gap, as one class each; a
# plain Levenshtein distance over class strings (rapidfuzz, in C) times
# CHEAPEST_GAP is a lower bound of the weighted distance.
_CLASSES = str.maketrans({**{v: "V" for v in _VOWELS}, **{e: "E" for e in _E_LETTERS}, "d": "t", "b": "p", "g": "k",
                          "z": "s", "ʃ": "s", "v": "f", "h": "f", "0": "f", "n": "m", "r": "l"})


def key_similarity(a: str, b: str, at_least: float = 0.0) -> float:
    """sound_similarity of two sound keys; 0 as soon as it cannot reach at_least."""
    if not a or not b:
        return 0.0
    longest = max(len(a), len(b))
    # A bound that rules most spans out before the weighing (pure Python, the costly part).
    if at_least and 1 - CHEAPEST_GAP * Levenshtein.distance(a.translate(_CLASSES), b.translate(_CLASSES)) / longest < at_least:
        return 0.0
    previous = [j * 1.0 for j in range(len(b) + 1)]
    for i, x in enumerate(a, 1):
        current = [float(i)]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + _gap(x), current[j - 1] + _gap(y), previous[j - 1] + _cost(x, y)))
        previous = current
    return max(0.0, 1 - previous[-1] / longest)


def _gap(letter: str) -> float:
    return 0.6 if letter == "h" or letter in _VOWELS else 1.0


def sounds_present(text: str, phrase: str, threshold: float) -> bool:
    """Whether some span of text (about the phrase's length in words) sounds like the phrase."""
    keys = [k for k in (sound_key(comparable(u)) for u in split_units(text)) if k]
    target = [comparable(u) for u in split_units(phrase)]
    target_key = sound_key(" ".join(target))
    for n in range(max(1, len(target) - 1), len(target) + 2):
        for i in range(len(keys) - n + 1):
            if key_similarity("".join(keys[i:i + n]), target_key, threshold) >= threshold:
                return True
    return False
