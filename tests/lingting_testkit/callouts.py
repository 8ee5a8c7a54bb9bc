"""A corpus of radio-style callouts, generated: espeak-ng speech in several
voices and speeds, band-passed to a radio's 300-3400 Hz, with noise at a
chosen SNR. Each callout knows the watch phrases it holds, their numbers and
when each phrase ends in its audio (for alert latency).

Synthetic speech measures keyword alerts, never WER. espeak-ng is Debian's
`espeak-ng` package (`make alert-deps` installs it)."""

from __future__ import annotations

import functools
import random
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr
from scipy.signal import butter, sosfilt

from lingting_testkit.corpus import read_wav

RATE = 16000
HOLD, T_MINUS, ABORT = "hold", "T minus <number>", "abort"
ZH_COUNTDOWN, ZH_HOLD = "倒计时<number>秒", "暂停"
WATCH = [HOLD, T_MINUS, ABORT, ZH_COUNTDOWN, ZH_HOLD]
EN_VOICES = ["en-us", "en-gb", "en-us+m3", "en-gb+f2", "en-us+f4", "en-gb-scotland", "en-029+m7", "en-gb-x-rp+f3"]
ZH_VOICES = ["cmn", "cmn+f2", "cmn+m3"]
_EN_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
             "sixteen seventeen eighteen nineteen").split()
_EN_TENS = "_ _ twenty thirty forty fifty sixty".split()
_ZH_DIGITS = "零一二三四五六七八九"


def english_number(n: int) -> str:
    if n < 20:
        return _EN_WORDS[n]
    tens, units = divmod(n, 10)
    return _EN_TENS[tens] + (f"-{_EN_WORDS[units]}" if units else "")


def chinese_number(n: int) -> str:
    if n < 10:
        return _ZH_DIGITS[n]
    tens, units = divmod(n, 10)
    return ("" if tens == 1 else _ZH_DIGITS[tens]) + "十" + (_ZH_DIGITS[units] if units else "")


@dataclass(frozen=True)
class Expected:
    phrase: str              # the watch phrase, as registered
    number: int | None
    prefix: str              # the script up to the end of this phrase (to time it)


@dataclass(frozen=True)
class Script:
    text: str
    language: str
    expected: tuple[Expected, ...]


def _scripts_en(rng: random.Random) -> list[Script]:
    out = []
    for _ in range(3):
        n = rng.randint(1, 60)
        unit = rng.choice(["minutes", "seconds"])
        words = english_number(n)
        out.append(Script(f"Hold. Hold. Hold. We are holding at T minus {words} {unit}.", "en",
                          (Expected(HOLD, None, "Hold."),
                           Expected(T_MINUS, n, f"Hold. Hold. Hold. We are holding at T minus {words}"))))
    for _ in range(3):
        out.append(Script("Hold, hold, hold.", "en", (Expected(HOLD, None, "Hold,"),)))
    for _ in range(2):
        out.append(Script("Flight, we are in a hold. Hold the count.", "en",
                          (Expected(HOLD, None, "Flight, we are in a hold"),)))
    for _ in range(6):
        n = rng.randint(1, 60)
        words = english_number(n)
        unit = rng.choice(["seconds", "minutes"])
        tail = rng.choice([" and counting.", ".", ", all systems go."])
        out.append(Script(f"T minus {words} {unit}{tail}", "en",
                          (Expected(T_MINUS, n, f"T minus {words}"),)))
    for _ in range(2):
        n = rng.randint(5, 60)
        out.append(Script(f"Resume the count at T minus {english_number(n)}.", "en",
                          (Expected(T_MINUS, n, f"Resume the count at T minus {english_number(n)}"),)))
    out.append(Script("Abort, abort, abort.", "en", (Expected(ABORT, None, "Abort,"),)))
    return out


def _scripts_zh(rng: random.Random) -> list[Script]:
    out = []
    for _ in range(2):
        n = rng.randint(1, 60)
        out.append(Script(f"倒计时{chinese_number(n)}秒。", "zh",
                          (Expected(ZH_COUNTDOWN, n, f"倒计时{chinese_number(n)}秒"),)))
    out.append(Script("暂停，暂停，暂停。", "zh", (Expected(ZH_HOLD, None, "暂停"),)))
    return out


@dataclass(frozen=True)
class Callout:
    script: Script
    voice: str
    speed: int               # words per minute
    snr_db: float
    audio: np.ndarray        # float32, 16 kHz
    phrase_end_s: tuple[float, ...]   # for each expected phrase, where it ends in `audio`


def have_espeak() -> bool:
    return shutil.which("espeak-ng") is not None


@functools.lru_cache(maxsize=4096)
def speak(text: str, voice: str, speed: int) -> np.ndarray:
    """espeak-ng's rendering of text, 16 kHz float32, its silent edges trimmed."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text],
                       check=True, capture_output=True)
        pcm, rate = read_wav(path)
    audio = soxr.resample(pcm.astype(np.float32) / 32768, rate, RATE)
    voiced = np.flatnonzero(np.abs(audio) > 0.01)
    return audio[voiced[0]:voiced[-1] + 1] if len(voiced) else audio


def radio(audio: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """A radio channel: 300-3400 Hz band-pass, then white noise at snr_db
    (against the speech's power), band-passed as well, as a receiver hears it."""
    band = butter(4, [300, 3400], btype="bandpass", fs=RATE, output="sos")
    speech = sosfilt(band, audio)
    noise = sosfilt(band, rng.standard_normal(len(speech)))
    power = np.mean(speech ** 2) / np.mean(noise ** 2)
    mixed = speech + noise * np.sqrt(power / 10 ** (snr_db / 10))
    return (mixed * 0.5 / max(1e-6, np.max(np.abs(mixed)))).astype(np.float32)


def callouts(seed: int = 7, snr_db: tuple[float, float] = (10.0, 20.0), languages=("en", "zh"),
             per_script: int = 1) -> list[Callout]:
    """The corpus: every script in per_script renderings (voice, speed, SNR drawn
    from the seeded generator; a fixed SNR when both ends are equal)."""
    rng = random.Random(seed)
    noise_rng = np.random.default_rng(seed)
    scripts = (_scripts_en(rng) if "en" in languages else []) + (_scripts_zh(rng) if "zh" in languages else [])
    out = []
    for script in scripts:
        for _ in range(per_script):
            voice = rng.choice(EN_VOICES if script.language == "en" else ZH_VOICES)
            speed = rng.choice([140, 160, 175, 190])
            snr = rng.uniform(*snr_db)
            clean = speak(script.text, voice, speed)
            ends = tuple(min(len(clean), len(speak(e.prefix, voice, speed))) / RATE for e in script.expected)
            out.append(Callout(script, voice, speed, round(snr, 1), radio(clean, snr, noise_rng), ends))
    return out
