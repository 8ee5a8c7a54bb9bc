"""The countdown of a launch-style loop, tracked from what is said.

"T minus 10 minutes and counting" sets the clock and starts it; "holding at
T minus 5 minutes" stops it there; "resume the count" starts it again;
"3, 2, 1" follows it down; "ignition", "liftoff" end it at zero. Chinese
loops say 倒计时十秒, 暂停, 恢复倒计时, 点火 / 起飞.

Fed each final's text and the stream time its audio ends; returns a
Countdown event when the clock or its status changes. Between callouts the
clock runs (counting, resumed) or stands (holding); clients run it down
from t_minus_s at audio_ms, as the live page does."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .alerts import WatchPhrase, find_occurrences, normalize_for_matching, parse_number
from .phonetic import sound_similarity
from ..wire.events import Countdown

# Any letter of the E-set before "minus" (T, D, C, "see"...): what the clock says, however it was heard.
_T_MINUS = WatchPhrase.compile("T minus <number>", sounds_like=0.9)
_ZH_T_MINUS = WatchPhrase.compile("倒计时<number>", sounds_like=0.9)
_UNITS = {"hour": 3600, "hours": 3600, "小时": 3600, "minute": 60, "minutes": 60, "min": 60, "mins": 60,
          "分": 60, "分钟": 60, "second": 1, "seconds": 1, "sec": 1, "secs": 1, "秒": 1, "秒钟": 1}
_UNIT = "|".join(sorted(_UNITS, key=len, reverse=True))     # longest first: "minutes" before "min"
_AND_MORE = re.compile(rf"\s*(?:and\s+)?(\d+|[a-z]+(?:\s[a-z]+)?|[零〇一二两三四五六七八九十百]+)\s*({_UNIT})")
_UNIT_AFTER = re.compile(rf"\s*({_UNIT})")
# What each status sounds like: English words (matched by sound, as a loop is
# often heard a little wrong: "folding at T minus 5"), Chinese ones verbatim.
_ZERO = (("ignition", "liftoff", "zero"), ("点火", "起飞", "发射"))
_HOLDING = (("hold", "holding", "holds"), ("暂停",))
_RESUMED = (("resume", "resuming", "resumed", "resumes"), ("恢复", "继续"))
_COUNTING = (("counting",), ("倒计时",))
SOUNDS_LIKE = 0.85
_NUMBER_WORD = re.compile(r"\d+|[a-z]+|[零〇一二两三四五六七八九十]+")

RUNNING = ("counting", "resumed")


@dataclass
class CountdownTracker:
    status: str | None = None           # counting | holding | resumed | zero; None: nothing heard yet
    t_minus_s: float | None = None      # the clock at audio_ms
    audio_ms: int = 0

    def clock(self, audio_ms: int) -> float | None:
        """The clock's reading at a stream time."""
        if self.t_minus_s is None:
            return None
        if self.status in RUNNING:
            return max(0.0, self.t_minus_s - (audio_ms - self.audio_ms) / 1000)
        return self.t_minus_s

    def on_final(self, text: str, utterance: int, audio_ms: int) -> list[Countdown]:
        normalized = normalize_for_matching(text)
        if not normalized:
            return []
        said = _time_said(normalized)
        count = _counted_down(normalized)
        if count is not None and said is not None and count < said:
            said = count                 # "T minus 10, 9, 8 ... 3": the clock is where the count got to
        if _says(normalized, _ZERO):
            status, t = "zero", 0.0
        elif _says(normalized, _HOLDING):
            status, t = "holding", said if said is not None else self.clock(audio_ms)
        elif _says(normalized, _RESUMED):
            status, t = "resumed", said if said is not None else self.clock(audio_ms)
        elif said is not None or (count is not None and self.status != "zero"):
            status, t = "counting", said if said is not None else count
        elif _says(normalized, _COUNTING) and self.status == "holding":
            status, t = "resumed", self.clock(audio_ms)
        else:
            return []
        if status == self.status and t is None:
            return []
        self.status, self.t_minus_s, self.audio_ms = status, t, audio_ms
        return [Countdown(None if t is None else round(t, 1), status, utterance, text, audio_ms)]


def _says(text: str, cue: tuple[tuple[str, ...], tuple[str, ...]]) -> bool:
    english, chinese = cue
    if any(word in text for word in chinese):
        return True
    words = text.replace("lift off", "liftoff").split()
    return any(sound_similarity(w, cue_word) >= SOUNDS_LIKE for w in words for cue_word in english)


def _time_said(text: str) -> float | None:
    """The T-minus time in text ("T minus 1 hour 30 minutes", "倒计时十秒"), in seconds; the last one said."""
    found = [o for o in find_occurrences(text, (_T_MINUS, _ZH_T_MINUS)) if o.number is not None]
    if not found:
        return None
    last = found[-1]
    seconds = float(last.number)
    after = text[text.rfind(last.text) + len(last.text):]
    unit = _UNIT_AFTER.match(after)
    if unit:
        seconds *= _UNITS[unit.group(1)]
        more = _AND_MORE.match(after[unit.end():])
        value = parse_number(more.group(1)) if more else None
        if value is not None:
            seconds += value * _UNITS[more.group(2)]
    return seconds


def _counted_down(text: str) -> float | None:
    """A countdown said as numbers ("3, 2, 1", "十、九、八"): the last number,
    when the text is numbers going down (and a word or two around them)."""
    tokens = _NUMBER_WORD.findall(text) if not re.search(r"[\u4e00-\u9fff]", text) else re.findall(
        r"[零〇一二两三四五六七八九十]+|\d+|[^\s零〇一二两三四五六七八九十\d]+", text)
    numbers = [parse_number(t) for t in tokens]
    values = [n for n in numbers if n is not None]
    if len(values) < 2 or len(values) < 0.6 * len(tokens):
        return None
    if all(a > b for a, b in zip(values, values[1:])):
        return float(values[-1])
    return None
