"""FunASR's WebSocket protocol, spoken by a client written like FunASR's own
(funasr_wss_client.py): config, 60 ms PCM frames at real time, is_speaking
false; against the server running the embedded Whisper model."""

from __future__ import annotations

import asyncio
import json

import pytest

from lingting_testkit.corpus import dev_clips, error_rate, read_wav

from lingting_testkit.funasr import funasr_client

pytestmark = pytest.mark.e2e




async def test_2pass_mandarin_clips(server, shared_audio):      # shared_audio: skipped without the corpus
    clips = dev_clips("zh")
    assert clips, "no Mandarin clips in the corpus"
    urls = [server.url.replace("/v1/stream", "/"), server.url.replace("/v1/stream", "/funasr")]
    runs = await asyncio.gather(*(
        funasr_client(urls[n % 2], read_wav(c.path)[0].tobytes(), wav_name=c.file)
        for n, c in enumerate(clips)))
    hypotheses = []
    for clip, replies in zip(clips, runs):
        assert all(r["wav_name"] == clip.file for r in replies)
        online = [r for r in replies if r["mode"] == "2pass-online"]
        offline = [r for r in replies if r["mode"] == "2pass-offline"]
        assert offline and offline[-1]["is_final"] and replies[-1] is offline[-1]
        assert all(not r["is_final"] for r in replies[:-1])
        assert online, f"{clip.file}: no 2pass-online partials"
        assert min(r["at"] for r in online) < max(r["at"] for r in offline)
        for r in offline:
            if r["text"]:
                stamps = json.loads(r["timestamp"])
                sentence = r["stamp_sents"][0]
                assert sentence["text_seg"] == r["text"] and sentence["start"] <= sentence["end"]
                assert all(a <= b for a, b in stamps)
        hypotheses.append("".join(r["text"] for r in offline))
    cer = error_rate([c.transcript for c in clips], hypotheses, "zh")
    print(f"FunASR protocol, 2pass, {len(clips)} Mandarin clips: CER {cer:.3f}", hypotheses)
    assert cer <= 0.15


async def test_online_and_offline_modes_and_hotwords(server, shared_audio):
    pcm = read_wav(shared_audio / "en" / "jfk.wav")[0].tobytes()
    url = server.url.replace("/v1/stream", "/")
    online = await funasr_client(url, pcm, mode="online")
    assert {r["mode"] for r in online} == {"online"}
    assert "ask not what your country" in "".join(r["text"] for r in online).lower()
    offline = await funasr_client(url, pcm, mode="offline", hotwords='{"Americans": 20}')
    assert {r["mode"] for r in offline} == {"offline"} and offline[-1]["is_final"]
    assert "fellow americans" in " ".join(r["text"] for r in offline).lower()


async def test_an_end_with_nothing_said_is_acknowledged(server):
    replies = await funasr_client(server.url.replace("/v1/stream", "/"), b"\0\0" * 16000)
    assert replies[-1]["is_final"] and replies[-1]["text"] == ""
