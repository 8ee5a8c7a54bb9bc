"""End to end: ITN, hotwords and watch-phrase alerts on real (and espeak) speech."""

from __future__ import annotations

import json
import re

import pytest
import websockets
from rapidfuzz.distance import Levenshtein

from lingting_client import StreamOptions
from lingting_testkit.corpus import dev_clips, error_rate, load_manifest, written_words
from lingting_testkit.streams import check_event_grammar, finals_text, gather_limited, stream_events, wav_pcm

pytestmark = pytest.mark.e2e


async def test_itn_gives_the_written_form(server, shared_audio):
    (clip,) = [c for c in load_manifest() if c.file == "en/cheetah_test_en_norm_ITN.wav"]
    events = await stream_events(server.url, wav_pcm(clip.path), StreamOptions(language="en", speed=0))
    check_event_grammar(events)
    final = " ".join(e["text"] for e in events if e["type"] == "final")
    raw = " ".join(e["raw_text"] for e in events if e["type"] == "final")
    import jiwer
    rate = jiwer.wer(written_words(clip.transcript), written_words(final))
    print(f"written-form WER {rate:.3f}: {final!r} (raw {raw!r})")
    assert rate <= 0.1, final
    assert "6 × 10 = 60" in final and "12%" in final and "times" in raw


async def test_itn_off_keeps_the_spoken_form(server, shared_audio):
    (clip,) = [c for c in load_manifest() if c.file == "en/cheetah_test_en_norm_ITN.wav"]
    events = await stream_events(server.url, wav_pcm(clip.path), StreamOptions(language="en", speed=0, itn=False))
    finals = [e for e in events if e["type"] == "final"]
    assert all(e["text"] == e["raw_text"] for e in finals) and "times" in finals_text(events)


async def test_digit_strings_come_out_as_digits(server, shared_audio):
    expected = {"en/vosk_test_digits.wav": "100019021001803", "en/sr_english_123.wav": "123"}
    for file, digits in expected.items():
        events = await stream_events(server.url, wav_pcm(shared_audio / file), StreamOptions(language="en", speed=0))
        got = "".join(re.findall(r"\d", finals_text(events)))
        print(file, repr(finals_text(events)), got)
        assert Levenshtein.distance(got, digits) <= 2, finals_text(events)


async def test_dates_and_money(server, shared_audio):
    events = await stream_events(server.url, wav_pcm(shared_audio / "synthetic" / "en_itn_dates_money.wav"),
                                 StreamOptions(language="en", speed=0))
    text = finals_text(events)
    print(repr(text))
    assert "March 3" in text and "2024" in text
    assert "$1250.75" in text or "$1,250.75" in text


async def test_countdown_alerts_arrive_in_order_before_each_final(server, shared_audio):
    pcm = wav_pcm(shared_audio / "synthetic" / "en_countdown.wav")
    events = await stream_events(server.url, pcm, StreamOptions(
        language="en", speed=1.0, watch=["T minus <number>", "<number>"], partial_interval_ms=300))
    check_event_grammar(events)
    first_report: dict[str, int] = {}
    retracted = set()
    for i, e in enumerate(events):
        if e["type"] == "alert" and e["phrase"] == "<number>":
            first_report.setdefault(e["alert_id"], i)
            if e["status"] == "retracted":
                retracted.add(e["alert_id"])
    kept = sorted((i, a) for a, i in first_report.items() if a not in retracted)
    numbers = [next(e["number"] for e in events if e.get("alert_id") == a) for _, a in kept]
    print("countdown alerts:", numbers, "retracted:", len(retracted))
    # Every number of the countdown is alerted, and the final confirms them in order.
    assert sorted(numbers, reverse=True) == list(range(10, 0, -1))
    confirmed = [e["number"] for e in events if e["type"] == "alert" and e["status"] == "confirmed"
                 and e["phrase"] == "<number>"]
    assert confirmed == list(range(10, 0, -1))
    # First reports follow the countdown; a number a partial misheard may come late,
    # once the decoder corrects itself (seen: "t minus 10, i n 8" before "10, 9, 8").
    in_order = sum(a > b for a, b in zip(numbers, numbers[1:]))
    assert in_order >= len(numbers) - 3, numbers
    final_index = {e["utterance"]: i for i, e in enumerate(events) if e["type"] == "final"}
    for i, alert_id in kept:
        alert = events[i]
        assert i < final_index[alert["utterance"]], "an alert comes before its utterance's final"
    assert any(e["type"] == "alert" and e["status"] == "detected" for e in events), "alerts come from partials"
    t_minus = [e for e in events if e["type"] == "alert" and e["phrase"] == "T minus <number>"]
    assert t_minus and t_minus[0]["number"] == 10


async def test_hotword_reaches_partials_and_finals(server, shared_audio):
    pcm = wav_pcm(shared_audio / "en" / "fw_hotwords_ComfyUI.wav")

    async def run(**extra):
        options = StreamOptions(language="en", speed=1.0, **extra)
        events = await stream_events(server.url, pcm, options)
        check_event_grammar(events)
        partials = [e["text"] for e in events if e["type"] == "partial"]
        return finals_text(events), partials

    final, partials = await run()
    print("without:", final, partials)
    assert "ComfyUI" not in final and not any("ComfyUI" in p for p in partials)
    final, partials = await run(hotwords=["ComfyUI"])
    print("with:", final, partials)
    assert final.count("ComfyUI") == 2
    assert any("ComfyUI" in p for p in partials)


async def test_hotword_update_mid_stream(server, shared_audio):
    pcm = wav_pcm(shared_audio / "en" / "fw_hotwords_ComfyUI.wav")
    async with websockets.connect(server.url) as ws:
        await ws.send(json.dumps({"type": "start", "language": "en", "partials": False}))
        await ws.send(json.dumps({"type": "update", "hotwords": [{"phrase": "ComfyUI", "boost": 2}]}))
        for i in range(0, len(pcm), 3200):
            await ws.send(pcm[i:i + 3200])
        await ws.send(json.dumps({"type": "stop"}))
        events = [json.loads(frame) async for frame in ws]
    updated = next(e for e in events if e["type"] == "updated")
    assert updated["hotwords"] == ["ComfyUI"]
    assert "ComfyUI" in finals_text(events)


async def test_unrelated_hotwords_leave_correct_text_alone(server, shared_audio):
    clips = dev_clips("en")

    async def score(hotwords):
        options = StreamOptions(language="en", speed=0, partials=False, hotwords=hotwords)
        results = await gather_limited([stream_events(server.url, wav_pcm(c.path), options) for c in clips], 4)
        return error_rate([c.transcript for c in clips], [finals_text(r) for r in results], "en")

    without = await score([])
    with_unrelated = await score(["ComfyUI", "Lingting", "Kubernetes", "agent-assist"])
    print(f"English WER without hotwords {without:.4f}, with unrelated hotwords {with_unrelated:.4f}")
    assert with_unrelated <= without + 0.005


async def test_configure_mid_stream_hotwords_vad_events_and_utterance_end(server, shared_audio):
    """One configure, after the stream started: hotwords for what follows, no VAD
    events, and utterance_end after a second of silence past each final's words."""
    pcm = wav_pcm(shared_audio / "en" / "fw_hotwords_ComfyUI.wav") + bytes(2 * 16000 * 2)   # + 2 s of silence
    async with websockets.connect(server.url) as ws:
        await ws.send(json.dumps({"type": "start", "language": "en", "partials": False}))
        await ws.send(json.dumps({"type": "configure", "hotwords": ["ComfyUI"], "vad_events": False,
                                  "utterance_end_ms": 1000, "endpointing": "agent_assist"}))
        for i in range(0, len(pcm), 3200):
            await ws.send(pcm[i:i + 3200])
        await ws.send(json.dumps({"type": "stop"}))
        events = [json.loads(frame) async for frame in ws]
    kinds = [e["type"] for e in events]
    updated = events[kinds.index("updated")]
    assert updated["hotwords"] == ["ComfyUI"] and updated["vad_events"] is False
    assert updated["utterance_end_ms"] == 1000 and updated["endpointing"]["silence_ms"] == 800
    assert "speech_started" not in kinds and "speech_ended" not in kinds
    assert "ComfyUI" in finals_text(events), finals_text(events)
    # The 2 s of silence at the end: utterance_end, after the last final, naming where its words ended.
    last_final = max(i for i, k in enumerate(kinds) if k == "final")
    ends = [i for i, k in enumerate(kinds) if k == "utterance_end"]
    assert ends and ends[-1] > last_final, kinds
    assert abs(events[ends[-1]]["last_word_end_ms"] - events[last_final]["end_ms"]) <= 400
