"""The session state machine, driven by synthetic audio and hand-made decode results."""

import numpy as np
import pytest

from lingting_server.engines.base import DecodeResult, Word
from lingting_server.protocol import Audio, ErrorCode, Flush, ProtocolError, Stop, parse_message
from lingting_server.streaming.session import Session
from synth import silence, to_s16, voice


def started(**fields):
    s = Session("s1", "test-model", ("en", "zh"))
    out = s.handle(parse_message({"type": "start", **fields}))
    assert out.events[0]["type"] == "ready" and out.events[0]["session_id"] == "s1"
    return s


def types(out):
    return [e["type"] for e in out.events]


def test_audio_before_start_is_an_error():
    s = Session("s1", "m")
    with pytest.raises(ProtocolError) as info:
        s.handle(Audio(b"\x00\x00"))
    assert info.value.code == ErrorCode.NOT_STARTED


def test_second_start_and_unknown_language():
    s = started()
    with pytest.raises(ProtocolError) as info:
        s.handle(parse_message({"type": "start"}))
    assert info.value.code == ErrorCode.ALREADY_STARTED
    with pytest.raises(ProtocolError) as info:
        Session("s2", "m", ("en",)).handle(parse_message({"type": "start", "language": "zh"}))
    assert info.value.code == ErrorCode.UNSUPPORTED


def test_utterance_lifecycle_partials_final_stop():
    s = started(partial_interval_ms=300)
    out = s.handle(Audio(to_s16(np.concatenate([silence(0.5), voice(1.5)]))))
    assert types(out)[0] == "speech_started"
    partials = [j for j in out.jobs if j.kind == "partial"]
    assert partials, "a partial decode is asked for while speech goes on"
    for job in partials:
        assert len(job.request.audio) > 0 and job.utterance == 0
    # An older partial result arriving after a newer one is not shown.
    newest, oldest = partials[-1], partials[0]
    shown = s.on_result(newest, DecodeResult("hello world", "en"))
    assert shown.events[0]["type"] == "partial" and shown.events[0]["text"] == "hello world"
    if oldest is not newest:
        assert s.on_result(oldest, DecodeResult("hello", "en")).events == []

    out = s.handle(Audio(to_s16(silence(1.0))))
    assert "speech_ended" in types(out)
    (final_job,) = [j for j in out.jobs if j.kind == "final"]
    assert final_job.request.word_timestamps
    result = DecodeResult("Hello world.", "en", [Word("Hello", 100, 400, 0.9), Word("world.", 450, 900, 0.8)])
    final = s.on_result(final_job, result).events[0]
    assert final["type"] == "final" and final["text"] == "Hello world." and final["language"] == "en"
    assert final["start_ms"] == pytest.approx(500, abs=60)
    # Word times are on the stream clock (the request's audio starts with pre-roll).
    assert final["words"][0]["start_ms"] == final_job.audio_start // 16 + 100
    # A partial for an utterance that has ended is not shown.
    assert s.on_result(newest, DecodeResult("late", "en")).events == []

    out = s.handle(Stop())
    assert types(out) == ["stopped"] and out.close
    assert out.events[0]["utterances"] == 1


def test_stop_waits_for_pending_finals_in_order():
    s = started(partials=False)
    out = s.handle(Audio(to_s16(np.concatenate([voice(1), silence(1), voice(1)]))))
    (first,) = out.jobs
    out = s.handle(Stop())
    assert types(out) == ["speech_ended"]
    (second,) = out.jobs
    assert second.reason == "stop"
    # The second decode finishes first: its final waits for the first one's.
    assert s.on_result(second, DecodeResult("two", "en")).events == []
    out = s.on_result(first, DecodeResult("one", "en"))
    assert [(e["type"], e.get("text")) for e in out.events] == [("final", "one"), ("final", "two"), ("stopped", None)]
    assert out.close


def test_failed_final_still_closes_the_utterance():
    s = started(partials=False)
    s.handle(Audio(to_s16(voice(1))))
    (job,) = s.handle(Flush()).jobs
    out = s.on_result(job, None, error="boom")
    assert types(out) == ["error", "final"]
    assert out.events[0]["code"] == ErrorCode.DECODE_FAILED and not out.events[0]["fatal"]
    assert out.events[1]["error"] == "boom"


def test_bad_frame_is_reported_and_stream_continues():
    s = started()
    with pytest.raises(ProtocolError) as info:
        s.handle(Audio(b"\x00\x01\x02"))
    assert info.value.code == ErrorCode.BAD_AUDIO
    assert s.handle(Audio(to_s16(silence(0.1)))).events == []


def test_auto_language_sticks_once_heard_on_enough_audio_and_finals_detect_their_own():
    s = started(partial_interval_ms=200)
    jobs = s.handle(Audio(to_s16(voice(0.8)))).jobs
    assert jobs[0].request.language is None
    s.on_result(jobs[-1], DecodeResult("hello", "en"))          # under 2 s: not trusted yet
    jobs = s.handle(Audio(to_s16(voice(1.6)))).jobs
    assert jobs[-1].request.language is None
    s.on_result(jobs[-1], DecodeResult("你好", "zh"))
    later = s.handle(Audio(to_s16(voice(0.5)))).jobs
    assert later and later[-1].request.language == "zh"
    (final,) = s.handle(Flush()).jobs
    assert final.request.language is None


def test_hotwords_itn_and_alerts_in_events():
    s = started(hotwords=["ComfyUI"], watch=["<number>"], partial_interval_ms=300)
    jobs = s.handle(Audio(to_s16(voice(1.0)))).jobs
    assert jobs[-1].request.hotwords == ("ComfyUI",)       # the engine is biased, partials too
    out = s.on_result(jobs[-1], DecodeResult("open comfy UI in ten", "en"))
    assert out.events[0]["text"] == "open ComfyUI in ten"
    assert [(e["type"], e["number"], e["status"]) for e in out.events[1:]] == [("alert", 10, "detected")]
    (final_job,) = s.handle(Flush()).jobs
    out = s.on_result(final_job, DecodeResult("open comfy UI in twenty five dollars", "en"))
    kinds = [(e["type"], e.get("status")) for e in out.events]
    assert kinds == [("alert", "retracted"), ("alert", "confirmed"), ("final", None)]
    final = out.events[-1]
    assert final["raw_text"] == "open ComfyUI in twenty five dollars"
    assert final["text"] == "open ComfyUI in $25"


def test_update_replaces_hotwords_mid_stream():
    s = started()
    out = s.handle(parse_message({"type": "update", "hotwords": ["Lingting"], "watch": ["hold"]}))
    assert out.events == [{"type": "updated", "hotwords": ["Lingting"], "watch": ["hold"]}]
    jobs = s.handle(Audio(to_s16(voice(1.0)))).jobs
    assert jobs[-1].request.hotwords == ("Lingting",)


def test_itn_can_be_turned_off():
    s = started(itn=False, partials=False)
    s.handle(Audio(to_s16(voice(1.0))))
    (job,) = s.handle(Flush()).jobs
    final = s.on_result(job, DecodeResult("twenty five dollars", "en")).events[-1]
    assert final["text"] == final["raw_text"] == "twenty five dollars"


def test_offline_mode_spools_the_file_then_transcribes_in_the_background():
    s = Session("f1", "test-model", ("en",), {"max_file_bytes": 3 << 20})
    ready = s.handle(parse_message({"type": "start", "mode": "offline", "filename": "a.mp3",
                                    "file_bytes": 1500000})).events[0]
    assert ready["mode"] == "offline" and "sample_rate" not in ready
    out = s.handle(Audio(b"x" * 1200000))
    assert out.file_data == [b"x" * 1200000]
    assert types(out) == ["progress"] and out.events[0]["stage"] == "upload"   # crossed 1 MiB
    with pytest.raises(ProtocolError):
        s.handle(Flush())
    out = s.handle(Stop())
    assert out.file_complete and s.state == "transcribing"
    assert s.file_opened(20000).events[0]["fraction"] == 0.0
    out = s.file_audio(np.concatenate([silence(0.5), voice(1.5), silence(1.0)]))
    # No VAD events and no partials offline: finals, in the background lane.
    (job,) = out.jobs
    assert job.kind == "final" and job.background
    assert "speech_started" not in types(out) and "speech_ended" not in types(out)
    assert s.file_ended().events == []      # the final is still decoding
    out = s.on_result(job, DecodeResult("hello", "en"))
    assert types(out) == ["final", "progress", "stopped"]
    assert out.events[1]["fraction"] > 0 and out.close


def test_offline_mode_limits_and_fields():
    s = Session("f1", "m", (), {"max_file_bytes": 100})
    with pytest.raises(ProtocolError) as info:
        s.handle(parse_message({"type": "start", "mode": "offline", "file_bytes": 101}))
    assert info.value.code == ErrorCode.TOO_LARGE and info.value.fatal
    s.handle(parse_message({"type": "start", "mode": "offline"}))
    s.handle(Audio(b"x" * 100))
    with pytest.raises(ProtocolError) as info:
        s.handle(Audio(b"x"))
    assert info.value.code == ErrorCode.TOO_LARGE and info.value.fatal
    for bad in ({"sample_rate": 8000}, {"encoding": "mulaw"}, {"partials": True}):
        with pytest.raises(ProtocolError):
            parse_message({"type": "start", "mode": "offline", **bad})
    with pytest.raises(ProtocolError):
        parse_message({"type": "start", "filename": "x.wav"})     # stream mode takes no filename
    with pytest.raises(ProtocolError):
        parse_message({"type": "start", "mode": "batch"})


def test_final_names_the_hotwords_in_force():
    s = started(hotwords=["ComfyUI"])
    out = s.handle(Audio(to_s16(np.concatenate([silence(0.5), voice(1.5), silence(1.0)]))))
    (job,) = [j for j in out.jobs if j.kind == "final"]
    final = s.on_result(job, DecodeResult("comfy UI rocks", "en")).events[0]
    assert final["hotwords"] == ["ComfyUI"] and final["text"].startswith("ComfyUI")
