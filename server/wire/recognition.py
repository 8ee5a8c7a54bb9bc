"""What a model is asked and what it answers: requests, words and results, the
units the core, the text work and every engine share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Kind = Literal["partial", "final"]


@dataclass
class DecodeRequest:
    audio: np.ndarray                  # 16 kHz mono float32
    kind: Kind
    language: str | None = None        # None: let the model detect it
    hotwords: tuple[str, ...] = ()     # phrases to bias toward, most important first
    word_timestamps: bool = False
    stream: str | None = None          # which stream and utterance: engines with per-stream state key on it
    speaker_embedding: bool = False    # finals of diarized streams: who spoke (engines/speakers.py)


@dataclass
class Word:
    word: str
    start_ms: int                      # relative to the start of the request's audio
    end_ms: int
    probability: float


@dataclass
class DecodeResult:
    text: str
    language: str | None
    words: list[Word] | None = None
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    extra: dict = field(default_factory=dict)
