"""The session state machine, driven by synthetic audio and hand-made decode results."""

import numpy as np
import pytest

from lingting_server.wire.recognition import DecodeResult, Word
from lingting_server.wire.errors import ErrorCode, ProtocolError
from lingting_server.text.postprocess import postprocess
from lingting_server.protocols.messages import Audio, Clear, Dtmf, Flush, Mark, Stop, parse_message
from lingting_server.streaming.commands import Close, Store, Transcribe
from lingting_server.settings import LimitSettings
from lingting_server.streaming.session import MAX_SIGNALS, End, Session, State
from lingting_testkit.synth import silence, to_s16, voice


class Driven(Session):
    """A session whose decode results go through the text work, as the batch collector does it."""

    def handle(self, message):
        return self.receive(message)

    def result(self, job, result, error=None):
        return self.on_result(job, postprocess(job.text, job.kind, result) if result else None, error)


def started(**fields):
    s = Driven("s1", "test-model", ("en", "zh"))
    out = s.handle(parse_message({"type": "start", **fields}))
    assert out.events[0].type == "ready" and out.events[0].session_id == "s1"
    return s


def types(out):
    return [e.type for e in out.events]


def wire(out):
    return [e.to_wire() for e in out.events]


def error_code(out):
    (error,) = [e for e in out.events if e.type == "error"]
    return error.code


def test_audio_before_start_is_an_error():
    s = Driven("s1", "m")
    assert error_code(s.handle(Audio(b"\x00\x00"))) == ErrorCode.NOT_STARTED


def test_second_start_and_unknown_language():
    s = started()
    assert error_code(s.handle(parse_message({"type": "start"}))) == ErrorCode.ALREADY_STARTED
    assert error_code(Driven("s2", "m", ("en",)).handle(parse_message({"type": "start", "language": "zh"}))) \
        == ErrorCode.UNSUPPORTED


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
    shown = s.result(newest, DecodeResult("hello world", "en"))
    assert shown.events[0].type == "partial" and shown.events[0].text == "hello world"
    if oldest is not newest:
        assert s.result(oldest, DecodeResult("hello", "en")).events == []

    out = s.handle(Audio(to_s16(silence(1.0))))
    assert "speech_ended" in types(out)
    (final_job,) = [j for j in out.jobs if j.kind == "final"]
    assert final_job.request.word_timestamps
    result = DecodeResult("Hello world.", "en", [Word("Hello", 100, 400, 0.9), Word("world.", 450, 900, 0.8)])
    final = wire(s.result(final_job, result))[0]
    assert final["type"] == "final" and final["text"] == "Hello world." and final["language"] == "en"
    assert final["start_ms"] == pytest.approx(500, abs=60)
    # Word times are on the stream clock (the request's audio starts with pre-roll).
    assert final["words"][0]["start_ms"] == final_job.audio_start // 16 + 100
    # A partial for an utterance that has ended is not shown.
    assert s.result(newest, DecodeResult("late", "en")).events == []

    out = s.handle(Stop())
    assert types(out) == ["stopped"] and out.close == Close(1000, "stopped")
    assert out.events[0].utterances == 1 and s.state is State.CLOSED and s.outcome == "stopped"


def test_stop_waits_for_pending_finals_in_order():
    s = started(partials=False)
    out = s.handle(Audio(to_s16(np.concatenate([voice(1), silence(1), voice(1)]))))
    (first,) = out.jobs
    out = s.handle(Stop())
    assert types(out) == ["speech_ended"]
    (second,) = out.jobs
    assert second.reason == "stop"
    # The second decode finishes first: its final waits for the first one's.
    assert s.result(second, DecodeResult("two", "en")).events == []
    out = s.result(first, DecodeResult("one", "en"))
    assert [(e["type"], e.get("text")) for e in wire(out)] == [("final", "one"), ("final", "two"), ("stopped", None)]
    assert out.close


def test_clear_drops_the_open_utterance_and_later_finals_keep_their_order():
    s = started(partials=False)
    out = s.handle(Audio(to_s16(np.concatenate([voice(1), silence(1), voice(1)]))))
    (first,) = out.jobs                       # utterance 0 ended; utterance 1 is open
    out = s.handle(Clear())
    assert wire(out) == [{"type": "cleared", "utterance": 1}] and not out.jobs
    assert wire(s.handle(Clear())) == [{"type": "cleared", "utterance": None}]
    out = s.handle(Audio(to_s16(np.concatenate([silence(0.5), voice(1), silence(1)]))))
    (third,) = out.jobs
    assert third.utterance == 2
    assert s.result(third, DecodeResult("three", "en")).events == []     # waits for utterance 0, not for 1
    out = s.result(first, DecodeResult("one", "en"))
    assert [e.get("text") for e in wire(out)] == ["one", "three"]


def test_a_commit_needs_an_open_utterance():
    s = started(partials=False)
    assert error_code(s.handle(Flush(require_speech=True))) == ErrorCode.NO_SPEECH
    assert s.handle(Flush()).events == []                       # protocol v1: nothing to flush is fine
    s.handle(Audio(to_s16(voice(1))))
    assert types(s.handle(Flush(require_speech=True))) == ["speech_ended"]


def test_failed_final_still_closes_the_utterance():
    s = started(partials=False)
    s.handle(Audio(to_s16(voice(1))))
    (job,) = s.handle(Flush()).jobs
    out = s.result(job, None, error="boom")
    assert types(out) == ["error", "final"]
    assert out.events[0].code == ErrorCode.DECODE_FAILED and not out.events[0].fatal
    assert out.events[1].error == "boom"


def test_bad_frame_is_reported_and_stream_continues():
    s = started()
    out = s.handle(Audio(b"\x00\x01\x02"))
    assert error_code(out) == ErrorCode.BAD_AUDIO and not out.close
    assert s.handle(Audio(to_s16(silence(0.1)))).events == []


def test_auto_language_sticks_once_heard_on_enough_audio_and_finals_detect_their_own():
    s = started(partial_interval_ms=200)
    jobs = s.handle(Audio(to_s16(voice(0.8)))).jobs
    assert jobs[0].request.language is None
    s.result(jobs[-1], DecodeResult("hello", "en"))          # under 2 s: not trusted yet
    jobs = s.handle(Audio(to_s16(voice(1.6)))).jobs
    assert jobs[-1].request.language is None
    s.result(jobs[-1], DecodeResult("你好", "zh"))
    later = s.handle(Audio(to_s16(voice(0.5)))).jobs
    assert later and later[-1].request.language == "zh"
    (final,) = s.handle(Flush()).jobs
    assert final.request.language is None


def test_hotwords_itn_and_alerts_in_events():
    s = started(hotwords=["ComfyUI"], watch=["<number>"], partial_interval_ms=300)
    jobs = s.handle(Audio(to_s16(voice(1.0)))).jobs
    assert jobs[-1].request.hotwords == ("ComfyUI",)       # the engine is biased, partials too
    out = s.result(jobs[-1], DecodeResult("open comfy UI in ten", "en"))
    assert out.events[0].text == "open ComfyUI in ten"
    assert [(e.type, e.number, e.status) for e in out.events[1:]] == [("alert", 10, "detected")]
    (final_job,) = s.handle(Flush()).jobs
    out = s.result(final_job, DecodeResult("open comfy UI in twenty five dollars", "en"))
    kinds = [(e["type"], e.get("status")) for e in wire(out)]
    assert kinds == [("alert", "retracted"), ("alert", "confirmed"), ("final", None)]
    final = wire(out)[-1]
    assert final["raw_text"] == "open ComfyUI in twenty five dollars"
    assert final["text"] == "open ComfyUI in $25"


def test_update_replaces_hotwords_mid_stream():
    s = started()
    out = s.handle(parse_message({"type": "update", "hotwords": ["Lingting"], "watch": ["hold"]}))
    assert wire(out) == [{"type": "updated", "hotwords": ["Lingting"], "watch": ["hold"]}]
    jobs = s.handle(Audio(to_s16(voice(1.0)))).jobs
    assert jobs[-1].request.hotwords == ("Lingting", "hold")    # watch phrases steer the decode too


def test_itn_can_be_turned_off():
    s = started(itn=False, partials=False)
    s.handle(Audio(to_s16(voice(1.0))))
    (job,) = s.handle(Flush()).jobs
    final = s.result(job, DecodeResult("twenty five dollars", "en")).events[-1]
    assert final.text == final.raw_text == "twenty five dollars"


def test_offline_mode_spools_the_file_then_transcribes_in_the_background():
    s = Driven("f1", "test-model", ("en",), {"max_file_bytes": 3 << 20})
    ready = wire(s.handle(parse_message({"type": "start", "mode": "offline", "filename": "a.mp3",
                                         "file_bytes": 1500000})))[0]
    assert ready["mode"] == "offline" and "sample_rate" not in ready
    out = s.handle(Audio(b"x" * 1200000))
    assert out.commands[0] == Store(b"x" * 1200000)
    assert wire(out) == [{"type": "progress", "stage": "upload", "received_bytes": 1200000,
                          "file_bytes": 1500000}]   # crossed 1 MiB
    assert error_code(s.handle(Flush())) == ErrorCode.BAD_MESSAGE
    out = s.handle(Stop())
    assert Transcribe() in out.commands and s.state is State.TRANSCRIBING
    assert s.file_opened(20000).events[0].fraction == 0.0
    out = s.file_audio(np.concatenate([silence(0.5), voice(1.5), silence(1.0)]))
    # No VAD events and no partials offline: finals, in the background lane.
    (job,) = out.jobs
    assert job.kind == "final" and job.background
    assert "speech_started" not in types(out) and "speech_ended" not in types(out)
    assert s.file_ended().events == []      # the final is still decoding
    out = s.result(job, DecodeResult("hello", "en"))
    assert types(out) == ["final", "progress", "stopped"]
    assert out.events[1].fraction > 0 and out.close == Close(1000, "stopped")


def test_offline_mode_limits_and_fields():
    s = Driven("f1", "m", (), {"max_file_bytes": 100})
    out = s.handle(parse_message({"type": "start", "mode": "offline", "file_bytes": 101}))
    assert error_code(out) == ErrorCode.TOO_LARGE and out.close == Close(1008, ErrorCode.TOO_LARGE)
    s = Driven("f2", "m", (), {"max_file_bytes": 100})
    s.handle(parse_message({"type": "start", "mode": "offline"}))
    s.handle(Audio(b"x" * 100))
    out = s.handle(Audio(b"x"))
    assert error_code(out) == ErrorCode.TOO_LARGE and out.close == Close(1008, ErrorCode.TOO_LARGE)
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
    final = wire(s.result(job, DecodeResult("comfy UI rocks", "en")))[0]
    assert final["hotwords"] == ["ComfyUI"] and final["text"].startswith("ComfyUI")


# ---- how streams end: the close code and reason come from the core ----------

def test_stop_during_a_shutdown_closes_with_going_away_after_the_finals():
    s = started(partials=False)
    s.handle(Audio(to_s16(voice(1.0))))
    out = s.end(End.SHUTDOWN)
    assert types(out) == ["speech_ended"] and out.jobs[0].reason == "shutdown" and not out.close
    assert s.handle(Stop()).commands == []                # ending: input is no longer taken
    out = s.result(out.jobs[0], DecodeResult("bye", "en"))
    assert types(out) == ["final", "stopped"] and out.close == Close(1001, "server shutting down")
    assert s.outcome == "shutdown"


@pytest.mark.parametrize("why, code, reason", [(End.IDLE, 1008, "idle timeout"),
                                               (End.QUOTA, 1008, "quota exceeded")])
def test_idle_and_quota_ends_say_so_in_the_close(why, code, reason):
    s = started(partials=False)
    s.handle(Audio(to_s16(voice(1.0))))
    error = ProtocolError(ErrorCode.QUOTA_EXCEEDED if why is End.QUOTA else ErrorCode.IDLE_TIMEOUT, "x", fatal=True)
    out = s.end(why, error)
    assert types(out) == ["error", "speech_ended"] and out.jobs[0].reason == why.final_reason
    assert s.end(End.SHUTDOWN).commands == []            # one end is enough
    assert s.handle(Audio(to_s16(voice(0.5)))).commands == []   # ending: input is no longer taken
    out = s.result(out.jobs[0], DecodeResult("last words", "en"))
    assert types(out) == ["final", "stopped"] and out.close == Close(code, reason)
    # Before start there is nothing to finish: it closes at once.
    fresh = Driven("s2", "m")
    assert fresh.end(why, error).close == Close(code, reason) and fresh.state is State.CLOSED


def test_fatal_and_repeated_protocol_errors_close_with_the_error_code():
    s = Driven("s1", "m", max_errors=3)
    s.handle(parse_message({"type": "start"}))
    for _ in range(2):
        out = s.handle(Audio(b"\x01"))
        assert not out.close
    out = s.handle(Audio(b"\x01"))
    assert out.events[0].fatal and "too many errors" in out.events[0].message
    assert out.close == Close(1008, ErrorCode.BAD_AUDIO) and s.outcome == "failed"
    assert s.handle(Stop()).commands == []                # closed: nothing more happens
    s = Driven("f1", "m", limits={"max_file_bytes": 10})
    s.handle(parse_message({"type": "start", "mode": "offline"}))
    out = s.handle(Stop())                                # no file was sent
    assert error_code(out) == ErrorCode.BAD_AUDIO and out.close == Close(1008, ErrorCode.BAD_AUDIO)


def test_a_client_that_left_still_gets_its_open_utterance_decoded():
    s = started(partials=False)
    s.handle(Audio(to_s16(voice(1.0))))
    out = s.end(End.DISCONNECT)
    (job,) = out.jobs
    out = s.result(job, DecodeResult("stored anyway", "en"))
    assert wire(out)[0]["text"] == "stored anyway" and s.outcome == "disconnected"
    # A file being transcribed stops; on shutdown it finishes.
    for why, closes in ((End.DISCONNECT, True), (End.QUOTA, True), (End.SHUTDOWN, False)):
        f = Driven("f", "m", limits={"max_file_bytes": 100})
        f.handle(parse_message({"type": "start", "mode": "offline"}))
        f.handle(Audio(b"x"))
        f.handle(Stop())
        assert bool(f.end(why).close) is closes


def test_signals_past_the_cap_get_one_error_then_are_dropped():
    """A platform's DTMF keys and marks are kept up to max_signals a stream (issue 34.6): past it one
    non-fatal error says so, later ones are dropped, and the transcription goes on."""
    s = Driven("s1", "m", limits={"max_signals": 3})
    s.handle(parse_message({"type": "start"}))
    assert [types(s.handle(m)) for m in (Mark("a"), Dtmf("1"), Mark("b"))] == [["mark"], ["dtmf"], ["mark"]]
    out = s.handle(Dtmf("2"))
    (error,) = out.events
    assert error.code == ErrorCode.TOO_LARGE and not error.fatal and "--max-signals" in error.message
    assert all(s.handle(m).events == [] for m in (Dtmf("3"), Mark("c")) * 50)
    assert s.errors == 0 and s.state is State.STREAMING and not out.close    # not one of max_errors
    assert types(s.handle(Stop()))[-1] == "stopped"


def test_signals_have_a_cap_by_default():
    assert LimitSettings().max_signals == MAX_SIGNALS        # --max-signals' default is the core's
    s = started()
    kept = [e for n in range(MAX_SIGNALS + 10) for e in s.handle(Mark(f"m{n}")).events]
    assert [e.type for e in kept].count("mark") == MAX_SIGNALS and [e.type for e in kept].count("error") == 1
