"""Inverse text normalization: spoken forms to written forms, with wetext's
prebuilt FSTs (zh, en, ja; no download), plus fixes for its known quirks.

    "二零二五年三月" -> "2025年3月", "一百二十八元" -> "¥128",
    "twenty three dollars and fifty cents" -> "$23.50"
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import traceback

from ..wire.languages import LANGUAGES

log = logging.getLogger("lingting.itn")

_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.!?;:%)\]}])")
_SPACE_AFTER_CURRENCY = re.compile(r"([$¥€£])\s+(?=\d)")
_ZH_DATE = re.compile(r"(?<!\d)(\d{4})/(\d{2})(?:/(\d{2}))?(?=\d{1,2}:\d{2}|\D|$)")
_ZH_TIME = re.compile(r"(\d{1,2}):(\d{2})\s*([ap])\.?m\.?", re.IGNORECASE)
_EN_CENTS = re.compile(r"\$(\d[\d,]*) and (\d{1,2}) cents?\b")   # "$1250 and 75 cents": wetext leaves it
_EN_ORDINAL_WORDS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth"]
_EN_SMALL_ORDINAL = re.compile(r"\b([1-9])(?:st|nd|rd|th)\b")
_EN_MATH = [(re.compile(r"(?<=\d) times (?=\d)"), " × "), (re.compile(r"(?<=\d) equals (?=\d)"), " = ")]


def _zh_date(m: re.Match) -> str:
    year, month, day = m.group(1), int(m.group(2)), m.group(3)
    return f"{year}年{month}月" + (f"{int(day)}日" if day else "")


def _zh_time(m: re.Match) -> str:
    # wetext writes 下午三点半 as 3:30p.m. glued to the date before it.
    prefix = "下午" if m.group(3).lower() == "p" else "上午"
    return f"{prefix}{int(m.group(1))}:{m.group(2)}"


@functools.lru_cache(maxsize=None)
def _normalizer(language: str):
    from wetext import Normalizer
    return Normalizer(lang=language, operator="itn", traditional_to_simple=language == "zh")


_lock = threading.Lock()   # kaldifst objects are not documented as thread-safe


def inverse_normalize(text: str, language: str | None) -> str:
    """Written form of `text`; unknown languages and failures return it unchanged."""
    if not text or language not in LANGUAGES:
        return text
    try:
        with _lock:
            out = _normalizer(language).normalize(text)
    except Exception as exc:   # ITN is a nicety: never lose a transcript over it
        # Neither the transcript nor the exception's message (which may quote it) goes to the log.
        where = traceback.extract_tb(exc.__traceback__)[-1]
        log.warning("ITN failed (%s at %s:%d) on a %d-character %s text; it stays as recognized",
                    type(exc).__name__, where.filename, where.lineno, len(text), language)
        return text
    out = _SPACE_BEFORE_PUNCT.sub(r"\1", out)
    out = _SPACE_AFTER_CURRENCY.sub(r"\1", out)
    if language == "en":
        # "the first great sorrow" reads worse as "the 1st great sorrow": small
        # ordinals said as words stay words (dates come out as "March 3").
        spoken = text.lower()

        def as_word(m: re.Match) -> str:
            word = _EN_ORDINAL_WORDS[int(m.group(1)) - 1]
            return word if word in spoken else m.group(0)
        out = _EN_SMALL_ORDINAL.sub(as_word, out)
        out = _EN_CENTS.sub(lambda m: f"${m.group(1)}.{int(m.group(2)):02d}", out)
        for pattern, symbol in _EN_MATH:
            out = pattern.sub(symbol, out)
    if language == "zh":
        out = _ZH_DATE.sub(_zh_date, out)
        out = _ZH_TIME.sub(_zh_time, out)
    return out


def warm_up() -> None:
    """Load the FSTs before the first stream needs them (about a second)."""
    for language in LANGUAGES:
        inverse_normalize("一" if language != "en" else "one", language)
