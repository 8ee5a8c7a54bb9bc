"""Whisper tiny.en on real speech that makes it loop (issue 22): the final
that repeated its sentence, with zero-length words at the window's end, comes
out once with every word backed by audio; a sentence really said twice stays."""

from __future__ import annotations

import re

import numpy as np
import pytest

from bench.corpus import error_rate, read_wav
from lingting_models import resolve_model
from lingting_server.engines.base import DecodeRequest
from lingting_server.engines.guard import unheard_tail
from lingting_server.engines.whisper import WhisperEngine

LOOPING = "en/ljspeech/LJ001-0011.wav"
REFERENCE = "it is of the first importance that the letter used should be fine in form"


@pytest.fixture(scope="module")
def tiny():
    return WhisperEngine(resolve_model("whisper-tiny.en").path)


def audio(root, name: str) -> np.ndarray:
    data, _ = read_wav(root / name)
    return data.astype(np.float32) / 32768


def test_a_final_that_repeats_its_sentence_is_decoded_again(tiny, shared_audio):
    request = DecodeRequest(audio(shared_audio, LOOPING), "final", "en", word_timestamps=True)
    audio_ms = len(request.audio) // 16
    # The reproduction: in its 10 s window, without the guard, tiny.en says the sentence twice.
    [unguarded] = tiny._decode_group_unsafe([request], "fit")
    assert unguarded.text.lower().count("first importance") == 2
    assert unheard_tail(unguarded.words, audio_ms) >= 10                 # the copy: zero-length, at the end
    [final] = tiny.decode([request])
    assert final.extra.get("redecoded")
    assert final.text.lower().count("first importance") == 1
    assert error_rate([REFERENCE], [final.text], "en") <= 0.15
    assert unheard_tail(final.words, audio_ms) == 0
    assert all(w.end_ms <= audio_ms + 300 for w in final.words)
    assert len(final.words) <= len(final.text.split()) + 2          # words of the text, not of a loop
    # Partials and offline files take the same path: a partial is trimmed, not re-decoded.
    [partial] = tiny.decode([DecodeRequest(request.audio, "partial", "en")])
    assert partial.text.lower().count("first importance") == 1


def test_a_sentence_really_said_twice_stays_twice(tiny, shared_audio):
    said = audio(shared_audio, "en/ps_sense_and_sensibility_01_austen_64kb-0880.wav")   # "he was not an ill disposed young man"
    twice = np.concatenate([said, np.zeros(6400, np.float32), said])
    [final] = tiny.decode([DecodeRequest(twice, "final", "en", word_timestamps=True)])
    assert final.text.lower().count("young man") == 2, final.text
    assert not final.extra.get("trimmed")
    [hold] = tiny.decode([DecodeRequest(np.concatenate([audio(shared_audio, "en/sr_english_123.wav")] * 3),
                                        "final", "en", word_timestamps=True)])
    assert len(re.findall(r"\b(?:three|3)\b", hold.text.lower())) == 3, hold.text   # "one two three" x 3
