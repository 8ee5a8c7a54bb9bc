"""The funasr engine on random-weight Paraformer checkpoints built from
funasr's own model classes (no downloads): loading through AutoModel, cache
handling across chunk boundaries, and cross-stream batching that gives
exactly the tokens of one-by-one decodes. These prove the code path, not
accuracy (the weights are random)."""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest

pytest.importorskip("funasr", reason="the funasr extra is not installed: .venv/bin/pip install -e '.[funasr]'")

from lingting_testkit.corpus import dev_clips, read_wav  # noqa: E402
from lingting_testkit.funasr_checkpoints import build_pair  # noqa: E402
from lingting_server.wire.recognition import DecodeRequest  # noqa: E402
from lingting_server.engines.funasr_engine import FunasrEngine, FunasrUnavailable, import_funasr  # noqa: E402
from lingting_server.engines.funasr_streaming import cache_signature, split_caches, stack_caches  # noqa: E402

CHUNK = 9600   # 600 ms


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    return build_pair(tmp_path_factory.mktemp("funasr-models"), "tiny")


@pytest.fixture(scope="module")
def engine(model_dirs):
    online, offline = model_dirs
    return FunasrEngine(str(offline), str(online))


@pytest.fixture(scope="module")
def clips(shared_audio):
    found = dev_clips("zh")[:4]
    assert len(found) >= 3, "needs Mandarin clips in the corpus"
    return [read_wav(c.path)[0].astype(np.float32) / 32768 for c in found]


def stream_through(engine, audios, step, batched):
    """Feeds each audio as a growing utterance, `step` samples per call, like
    the session's partial requests; returns the last partial text of each."""
    texts = [""] * len(audios)
    for end in range(step, max(map(len, audios)) + step, step):
        live = [i for i, a in enumerate(audios) if end - step < len(a)]
        requests = [DecodeRequest(audios[i][:end], "partial", stream=f"s{i}/0") for i in live]
        results = engine.decode(requests) if batched else [engine.decode([r])[0] for r in requests]
        for i, result in zip(live, results):
            texts[i] = result.text
    return texts


def funasr_reference(model_dir, audio):
    """funasr's own streaming inference (batch size 1), chunk by chunk."""
    _, auto_model = import_funasr()
    model = auto_model(model=str(model_dir), disable_update=True, disable_pbar=True, log_level="ERROR")
    cache, text = {}, ""
    for i in range(len(audio) // CHUNK):
        out = model.generate(input=audio[i * CHUNK:(i + 1) * CHUNK], cache=cache, is_final=False,
                             chunk_size=[0, 10, 5], encoder_chunk_look_back=4, decoder_chunk_look_back=1)
        text += out[0]["text"]
    return text


def test_loads_through_automodel(engine, model_dirs):
    info = engine.describe()
    assert info["engine"] == "funasr" and info["device"] == "cpu" and info["chunk_ms"] == 600
    assert type(engine._online.model).__name__ == "ParaformerStreaming"
    assert type(engine._offline.model).__name__ == "Paraformer"
    assert engine.languages == ("zh",)


def test_partials_equal_funasrs_own_streaming_inference(engine, model_dirs, clips):
    """Odd-sized requests (1.3 s) cut chunks across call boundaries: the
    caches and the carried-over samples must make that invisible."""
    engine._partials.streams.clear()
    ours = stream_through(engine, clips[:2], 20800, batched=False)
    for audio, text in zip(clips[:2], ours):
        reference = funasr_reference(model_dirs[0], audio)
        assert reference, "the random checkpoint fires no tokens: the test would prove nothing"
        assert text == reference


def test_batched_streams_give_the_tokens_of_one_by_one(engine, clips):
    engine._partials.streams.clear()
    alone = stream_through(engine, clips, 16000, batched=False)
    engine._partials.streams.clear()
    together = stream_through(engine, clips, 16000, batched=True)
    assert all(alone) and together == alone


def test_a_stream_that_fell_behind_catches_up(engine, clips):
    engine._partials.streams.clear()
    steady = stream_through(engine, clips[:1], CHUNK, batched=True)[0]
    engine._partials.streams.clear()
    # One request with the whole utterance: every chunk in one call.
    caught_up = engine.decode([DecodeRequest(clips[0], "partial", stream="s0/0")])[0].text
    assert caught_up == steady


def test_cache_shapes_and_lifecycle(engine, clips):
    engine._partials.streams.clear()
    audio = clips[0]
    engine.decode([DecodeRequest(audio[:CHUNK], "partial", stream="a/0")])
    first = engine._partials.streams["a/0"]
    assert first.fed == CHUNK
    assert first.cache["encoder"]["feats"].shape == (1, 5, 80 * 7)   # 5 LFR frames of overlap
    layer0 = first.cache["encoder"]["opt"][0]
    assert layer0["k"].shape[0] == 1 and layer0["k"].shape[2] == 10   # one chunk of look-back so far
    engine.decode([DecodeRequest(audio[:6 * CHUNK + 100], "partial", stream="a/0")])
    assert engine._partials.streams["a/0"].fed == 6 * CHUNK
    assert engine._partials.streams["a/0"].cache["encoder"]["opt"][0]["k"].shape[2] == 40   # full: 4 chunks
    # A shorter request is a new utterance under the same key: fresh caches.
    engine.decode([DecodeRequest(audio[:CHUNK], "partial", stream="a/0")])
    assert engine._partials.streams["a/0"].fed == CHUNK
    # The final decodes the whole utterance with the offline model and ends the caches.
    final = engine.decode([DecodeRequest(audio, "final", stream="a/0")])[0]
    assert final.text and "a/0" not in engine._partials.streams


def test_finals_batched_equal_one_by_one(engine, clips):
    requests = [DecodeRequest(a, "final") for a in clips]
    alone = [engine.decode([r])[0].text for r in requests]
    together = [r.text for r in engine.decode(requests)]
    assert all(alone) and together == alone


def test_final_word_times_come_from_the_predictor(engine, clips):
    result = engine.decode([DecodeRequest(clips[0], "final", word_timestamps=True)])[0]
    assert result.words and "".join(w.word for w in result.words) == result.text
    times = [(w.start_ms, w.end_ms) for w in result.words]
    assert all(0 <= a <= b <= len(clips[0]) / 16 for a, b in times)
    assert all(b[0] >= a[0] for a, b in zip(times, times[1:]))
    assert engine.decode([DecodeRequest(clips[0], "final")])[0].words is None


def test_seaco_finals_take_the_hotwords(model_dirs, clips, tmp_path):
    from lingting_testkit.funasr_checkpoints import build_model_dir
    seaco = FunasrEngine(str(build_model_dir(tmp_path / "seaco", "seaco", "tiny", seed=3)), str(model_dirs[0]))
    hotwords = ("伳似", "仁")
    plain = seaco.decode([DecodeRequest(clips[0], "final")])[0].text
    biased = seaco.decode([DecodeRequest(clips[0], "final", hotwords=hotwords)])[0].text
    assert plain and biased and biased != plain     # the bias decoder changes random-weight output
    # A batch mixing hotword sets is decoded per set: each row as if alone.
    mixed = seaco.decode([DecodeRequest(clips[0], "final"), DecodeRequest(clips[0], "final", hotwords=hotwords)])
    assert [r.text for r in mixed] == [plain, biased]


def test_mixed_batch_and_tiny_audio(engine, clips):
    results = engine.decode([DecodeRequest(clips[0][:3000], "partial", stream="m/0"),
                             DecodeRequest(np.zeros(800, np.float32), "final", stream="n/0"),
                             DecodeRequest(clips[1], "final", stream="o/0")])
    assert results[0].text == ""        # not a whole chunk yet
    assert results[1].text == ""        # too short to decode
    assert results[2].text


def test_stream_caches_are_bounded(model_dirs, clips):
    from lingting_server.engines.funasr_engine import FunasrOptions
    online, offline = model_dirs
    small = FunasrEngine(str(offline), str(online), options=FunasrOptions(max_streams=3, stale_s=0.5))
    for n in range(5):
        small.decode([DecodeRequest(clips[0][:CHUNK], "partial", stream=f"k{n}/0")])
    assert list(small._partials.streams) == ["k2/0", "k3/0", "k4/0"]
    time.sleep(0.6)     # streams that ended without a final go after stale_s
    small.decode([DecodeRequest(clips[0][:CHUNK], "partial", stream="k5/0")])
    assert list(small._partials.streams) == ["k5/0"]


def test_stack_and_split_round_trip():
    torch, _ = import_funasr()
    rows = [{"k": torch.full((1, 2, 3), float(i)), "opt": [None, torch.ones(1, 4) * i], "size": [0, 10, 5]}
            for i in range(3)]
    stacked = stack_caches(rows)
    assert stacked["k"].shape == (3, 2, 3) and stacked["opt"][0] is None and stacked["size"] == [0, 10, 5]
    back = split_caches(stacked, 3)
    assert all(torch.equal(b["k"], r["k"]) and torch.equal(b["opt"][1], r["opt"][1]) for b, r in zip(back, rows))
    assert cache_signature(rows[0]) == cache_signature(rows[2]) != cache_signature({**rows[0], "k": torch.ones(1, 2, 4)})


def test_bad_model_dir_is_a_clear_error(tmp_path, model_dirs):
    with pytest.raises(ValueError, match="could not load the FunASR model"):
        FunasrEngine(str(tmp_path), None)
    with pytest.raises(ValueError, match="not a streaming model"):
        FunasrEngine(str(model_dirs[1]), str(model_dirs[1]))


def test_missing_extra_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "funasr", None)    # import funasr now raises ImportError
    with pytest.raises(FunasrUnavailable, match=r"pip install 'lingting\[funasr\]'"):
        import_funasr()
