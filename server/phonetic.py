"""How alike two bits of text sound: for watch phrases heard a little wrong
("fold" for "hold", "D minus" for "T minus") and for telling a prompt that
steered a decode from one that put words in the model's mouth.

English words get a rough sound key (digraphs, soft c, silent e, doubled
letters), Chinese its toneless pinyin; keys are compared by an edit distance
where what a noisy channel confuses costs less."""

from __future__ import annotations

import re

from pypinyin import lazy_pinyin

from .streaming.text import IS_CJK, split_units

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
    a = "".join(_sound_key(w) for w in heard.split())
    b = "".join(_sound_key(w) for w in phrase.split())
    if not a or not b:
        return 0.0
    previous = [j * 1.0 for j in range(len(b) + 1)]
    for i, x in enumerate(a, 1):
        current = [float(i)]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + _gap(x), current[j - 1] + _gap(y), previous[j - 1] + _cost(x, y)))
        previous = current
    return max(0.0, 1 - previous[-1] / max(len(a), len(b)))


def _gap(letter: str) -> float:
    return 0.6 if letter == "h" or letter in _VOWELS else 1.0


def sounds_present(text: str, phrase: str, threshold: float) -> bool:
    """Whether some span of text (about the phrase's length in words) sounds like the phrase."""
    units = [re.sub(r"[^\w]", "", u.lower()) for u in split_units(text)]
    units = [u for u in units if u]
    target = " ".join(re.sub(r"[^\w]", "", u.lower()) for u in split_units(phrase))
    width = len(target.split())
    joiner = "" if IS_CJK.search(phrase) else " "
    for n in range(max(1, width - 1), width + 2):
        for i in range(len(units) - n + 1):
            if sound_similarity(joiner.join(units[i:i + n]), target) >= threshold:
                return True
    return False
