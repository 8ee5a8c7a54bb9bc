"""The embedded Whisper engine on real speech: batching mixes languages,
hotwords and kinds without changing what each request gets."""

from __future__ import annotations

import numpy as np
import pytest

from bench.corpus import error_rate, read_wav
from lingting_models import resolve_model
from lingting_server.engines.base import DecodeRequest
from lingting_server.engines.whisper import WhisperEngine


@pytest.fixture(scope="module")
def engine():
    return WhisperEngine(resolve_model("whisper-base").path)


def audio(root, name: str) -> np.ndarray:
    data, _ = read_wav(root / name)
    return data.astype(np.float32) / 32768


def test_mixed_batch_equals_one_by_one(engine, shared_audio):
    requests = [
        DecodeRequest(audio(shared_audio, "en/leopard_test.wav"), "final", "en", word_timestamps=True),
        DecodeRequest(audio(shared_audio, "zh/funasr_asr_example.wav"), "final", None),
        DecodeRequest(audio(shared_audio, "en/fw_hotwords_ComfyUI.wav"), "final", "en", hotwords=("ComfyUI",)),
        DecodeRequest(audio(shared_audio, "en/cheetah_test_en.wav"), "final", "en", hotwords=("Kubernetes",)),
    ]
    batched = engine.decode(requests)
    alone = [engine.decode([r])[0] for r in requests]
    assert "apostle of the middle classes" in batched[0].text and batched[0].words
    assert batched[1].language == "zh"
    assert error_rate(["欢迎大家来体验达摩院推出的语音识别模型"], [batched[1].text], "zh") <= 0.1
    assert batched[2].text.count("ComfyUI") == 2
    # An unrelated hotword leaves the text as the plain decode has it.
    assert batched[3].text == engine.decode([DecodeRequest(requests[3].audio, "final", "en")])[0].text
    # Same window width (all under 10 s): batching changes nothing.
    assert [r.text for r in batched] == [r.text for r in alone]


def test_partials_and_silence(engine, shared_audio):
    jfk = audio(shared_audio, "en/jfk.wav")
    partial = engine.decode([DecodeRequest(jfk[:16000 * 3], "partial", "en")])[0]
    assert partial.text.lower().startswith("and so my")
    silent = engine.decode([DecodeRequest(np.zeros(16000 * 2, np.float32), "final", "en")])[0]
    assert silent.text == ""
