"""The shared speech corpus (../shared/audio) and how we score against it.

Tests and benchmarks read audio from LINGTING_AUDIO_DIR, or ../shared/audio
beside the checkout; nothing from it is ever copied into the repo."""

from __future__ import annotations

import csv
import os
import re
import unicodedata
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def audio_dir() -> Path | None:
    env = os.environ.get("LINGTING_AUDIO_DIR")
    path = Path(env) if env else REPO.parent / "shared" / "audio"
    return path if (path / "manifest.tsv").exists() else None


@dataclass(frozen=True)
class Clip:
    file: str
    path: Path
    seconds: float
    language: str
    transcript: str


def load_manifest(root: Path | None = None) -> list[Clip]:
    root = root or audio_dir()
    if root is None:
        return []
    with open(root / "manifest.tsv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [Clip(r["file"], root / r["file"], float(r["seconds"]), r["language"], r["transcript"])
            for r in rows]


def dev_clips(language: str, include_long: bool = False) -> list[Clip]:
    """Clips usable for WER/CER: not the partial-reference hotword clip."""
    return [c for c in load_manifest()
            if c.language == language
            and "hotwords" not in c.file
            and (include_long or not c.file.startswith("long/"))]


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path)) as w:
        assert w.getsampwidth() == 2, f"{path}: expected 16-bit PCM"
        data = np.frombuffer(w.readframes(w.getnframes()), "<i2")
        if w.getnchannels() > 1:
            data = data.reshape(-1, w.getnchannels()).mean(axis=1).astype("<i2")
        return data, w.getframerate()


_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def encode_audio(sources: list[Path], dst: Path | str, codec: str) -> None:
    """The sources, one after another, re-encoded into one file (FLAC, MP3,
    Opus...) with PyAV, for tests and benchmarks of other containers."""
    import av
    with av.open(str(dst), "w") as out:
        stream = out.add_stream(codec, rate=48000 if codec == "libopus" else 16000, layout="mono")
        for src in sources:
            with av.open(str(src)) as inp:
                for frame in inp.decode(audio=0):
                    frame.pts = None
                    for packet in stream.encode(frame):
                        out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def _number_words(n: int) -> str:
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        return _ONES[n // 100] + " hundred" + ("" if n % 100 == 0 else " " + _number_words(n % 100))
    if 1100 <= n < 2000 and n % 100:  # years: 1455 -> fourteen fifty five
        return _number_words(n // 100) + " " + _number_words(n % 100)
    if n < 1_000_000:
        return _number_words(n // 1000) + " thousand" + ("" if n % 1000 == 0 else " " + _number_words(n % 1000))
    return " ".join(_ONES[int(d)] for d in str(n))


def normalize_en(text: str) -> str:
    text = text.lower().replace("mr.", "mister").replace("%", " percent")
    text = strip_digit_groups(text)
    text = re.sub(r"\d+", lambda m: " " + _number_words(int(m.group())) + " ", text)
    text = re.sub(r"[-‐–—]", " ", text)
    text = re.sub(r"[^\w\s']", " ", text).replace("'", "")
    return " ".join(text.split())


def normalize_cjk(text: str) -> str:
    try:
        from opencc import OpenCC
        text = OpenCC("t2s").convert(text)
    except ImportError:
        pass
    return "".join(ch for ch in text if unicodedata.category(ch)[0] in "LN")


def strip_digit_groups(text: str) -> str:
    """1,250 -> 1250 (references write numbers without separators)."""
    return re.sub(r"(?<=\d),(?=\d{3})", "", text)


def written_words(text: str) -> str:
    """Text for scoring on the written form: case and punctuation go, digits and symbols stay."""
    text = strip_digit_groups(text.lower())
    return " ".join(re.findall(r"[\w%×=$.]+", text.replace(". ", " ").rstrip(".")))


def error_rate(references: list[str], hypotheses: list[str], language: str) -> float:
    """WER for English, CER for Chinese/Japanese, on normalized text."""
    import jiwer
    if language == "en":
        return jiwer.wer([normalize_en(r) for r in references], [normalize_en(h) or "<empty>" for h in hypotheses])
    return jiwer.cer([normalize_cjk(r) for r in references], [normalize_cjk(h) or "?" for h in hypotheses])
