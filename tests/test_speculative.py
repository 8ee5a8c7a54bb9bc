"""Speculative finals, adaptive endpointing and mid-stream configure, sans I/O:
synthetic audio in, hand-made decode results, the session's commands out."""

import numpy as np
import pytest

from lingting_server.wire.recognition import DecodeResult
from lingting_server.wire.errors import ProtocolError
from lingting_server.text.postprocess import postprocess
from lingting_server.protocols.messages import Audio, Flush, Stop, parse_message
from lingting_server.streaming.commands import Cancel, Expedite
from lingting_server.streaming.session import Session
from lingting_server.wire.words import clause_shape
from lingting_testkit.synth import silence, to_s16, voice


class Driven(Session):
    def result(self, job, text, error=None):
        recognized = postprocess(job.text, job.kind, DecodeResult(text, "en")) if text is not None else None
        return self.on_result(job, recognized, error)


def started(**fields):
    s = Driven("s1", "test-model", ("en",))
    assert s.receive(parse_message({"type": "start", "language": "en", "partials": False, **fields})).events
    return s


def audio(s, *pieces):
    return s.receive(Audio(to_s16(np.concatenate(pieces))))


def types(out):
    return [e.type for e in out.events]


def speculation(out):
    (job,) = [j for j in out.jobs if j.kind == "final"]
    assert job.speculative
    return job


def commands(out, kind):
    return [c for c in out.commands if isinstance(c, kind)]


def test_clause_shape():
    assert clause_shape("We are holding at T minus 5 minutes.") == "sentence"
    assert clause_shape("是这样吗？") == "sentence"
    assert clause_shape("Hold, hold, hold!\"") == "sentence"
    assert clause_shape("represented in the exhibition,") == "open"
    assert clause_shape("the cotton and") == "open"
    assert clause_shape("T minus 10") == "unknown"
    assert clause_shape("") == "unknown"


def test_a_speculation_that_ends_a_sentence_is_the_final_at_once():
    s = started()
    out = audio(s, silence(0.3), voice(1.5), silence(0.45))
    assert "speech_ended" not in types(out)          # the 600 ms endpoint has not fired...
    job = speculation(out)                           # ...but the final's audio is known
    out = s.result(job, "Hold, hold, hold.")
    # A sentence ends: the endpoint is 300 ms, and 360 ms have passed. No second decode.
    assert types(out) == ["speech_ended", "final"] and out.events[1].text == "Hold, hold, hold."
    assert not out.jobs and out.events[1].reason == "silence"
    assert s.finals_pending == 0
    assert audio(s, silence(1.0)).events == []       # nothing more for that silence


def test_mid_clause_speculation_waits_for_the_longer_endpoint_and_shows_its_text():
    s = started(endpointing={"mid_clause_ms": 900})
    job = speculation(audio(s, silence(0.3), voice(1.5), silence(0.45)))
    out = s.result(job, "differs from most if not from all the arts and")
    assert types(out) == ["partial"] and out.events[0].text.endswith("arts and")
    assert "speech_ended" not in types(audio(s, silence(0.3)))      # 660 ms: past 600, short of 900
    out = audio(s, silence(0.3))
    assert types(out) == ["speech_ended", "final"] and not out.jobs and not commands(out, Expedite)
    assert out.events[1].text == "differs from most if not from all the arts and"


def test_endpoint_before_the_speculation_is_back_expedites_it():
    s = started()
    out = audio(s, silence(0.3), voice(1.5), silence(1.0))
    job = speculation(out)
    assert "speech_ended" in types(out) and commands(out, Expedite)[0].job is job
    assert "final" not in types(out) and s.finals_pending == 1
    out = s.result(job, "Today only platforms one and three are used.")
    assert types(out) == ["final"] and out.events[0].utterance == 0


def test_speech_that_resumes_discards_the_speculation():
    s = started()
    first = speculation(audio(s, silence(0.3), voice(1.2), silence(0.45)))
    out = audio(s, voice(1.0))
    assert commands(out, Cancel)[0].job is first and "speech_ended" not in types(out)
    # Its result, if it comes anyway, is never shown nor taken as the final.
    assert s.result(first, "We are folding").events == []
    out = audio(s, silence(1.0))
    second = speculation(out)
    assert second is not first and len(second.request.audio) > len(first.request.audio)
    assert s.result(second, "We are holding at T minus 5 minutes.").events[0].text == \
        "We are holding at T minus 5 minutes."


def test_finals_stay_in_order_when_a_later_speculation_comes_back_first():
    s = started()
    out = audio(s, silence(0.3), voice(1.0), silence(1.0), voice(1.0), silence(1.0))
    first, second = [j for j in out.jobs if j.kind == "final"]
    assert (first.utterance, second.utterance) == (0, 1)
    assert s.result(second, "Second one.").events == []      # held until utterance 0 is out
    out = s.result(first, "First one.")
    assert [e.text for e in out.events if e.type == "final"] == ["First one.", "Second one."]


def test_a_failed_speculation_is_decoded_again_at_the_endpoint():
    s = started()
    job = speculation(audio(s, silence(0.3), voice(1.2), silence(0.45)))
    assert s.result(job, None, error="worker died").events == []
    out = audio(s, silence(0.6))
    (final_job,) = [j for j in out.jobs if j.kind == "final"]
    assert not final_job.speculative and final_job is not job
    assert s.result(final_job, "Again.").events[0].text == "Again."


def test_stop_and_flush_adopt_the_speculation():
    s = started()
    job = speculation(audio(s, silence(0.3), voice(1.2), silence(0.45)))
    out = s.receive(Stop())
    assert commands(out, Expedite)[0].job is job and not out.jobs
    out = s.result(job, "The end.")
    assert types(out) == ["final", "stopped"] and out.events[0].reason == "stop"

    s = started()
    job = speculation(audio(s, silence(0.3), voice(1.2), silence(0.45)))
    assert s.result(job, "Over and").events[0].type == "partial"     # open: waits for 600 ms
    out = s.receive(Flush())
    assert types(out) == ["speech_ended", "final"] and out.events[1].text == "Over and"


def test_speculation_off_decodes_at_the_endpoint_only():
    s = started(endpointing={"speculative": False})
    assert audio(s, silence(0.3), voice(1.2), silence(0.45)).jobs == []
    out = audio(s, silence(0.3))
    (job,) = out.jobs
    assert not job.speculative and "speech_ended" in types(out)


def test_no_partials_are_asked_for_in_the_silence_after_speech():
    s = started(partials=True, partial_interval_ms=100)
    out = audio(s, silence(0.3), voice(1.2))
    assert any(j.kind == "partial" for j in out.jobs)
    audio(s, silence(0.25))                 # the last voiced frames (webrtcvad hears a little past the end)
    out = audio(s, silence(0.1))            # not yet the tail: nothing was said since the last partial
    assert [j.kind for j in out.jobs] == []
    out = audio(s, silence(0.2))
    assert [j.kind for j in out.jobs] == ["final"]


def test_first_partials_say_so():
    s = started(partials=True, partial_interval_ms=300)
    jobs = [j for j in audio(s, silence(0.3), voice(0.6)).jobs if j.kind == "partial"]
    assert jobs and jobs[0].first
    s.result(jobs[-1], "hello")
    later = [j for j in audio(s, voice(0.6)).jobs if j.kind == "partial"]
    assert later and not any(j.first for j in later)


# ---- endpointing options ------------------------------------------------------
def test_endpointing_spellings():
    def endpointing(value):
        return parse_message({"type": "start", "endpointing": value}).config.endpointing
    assert endpointing(1200).silence_ms == 1200
    assert endpointing(False).silence_ms == 0
    callouts = endpointing("callouts")
    assert (callouts.silence_ms, callouts.sentence_end_ms) == (400, 200)
    mixed = endpointing({"preset": "agent_assist", "silence_ms": 700})
    assert (mixed.silence_ms, mixed.mid_clause_ms) == (700, 1200)
    for bad in (True, 5, "fast", {"silence": 5}, {"preset": 3}, {"speculative": "yes"}, [600]):
        with pytest.raises(ProtocolError):
            endpointing(bad)
    with pytest.raises(ProtocolError, match="utterance_end_ms"):
        parse_message({"type": "start", "utterance_end_ms": 200})


def test_endpointing_false_leaves_the_end_to_the_client():
    s = started(endpointing=False)
    job = speculation(audio(s, silence(0.3), voice(1.2), silence(0.4)))
    assert s.result(job, "Over.").events[0].type == "partial"         # a sentence, but no silence ends it
    assert "speech_ended" not in types(audio(s, silence(3.0)))
    assert types(s.receive(Flush())) == ["speech_ended", "final"]


def test_vad_events_off_and_utterance_end():
    s = started(vad_events=False, utterance_end_ms=1000)
    out = audio(s, silence(0.3), voice(1.2), silence(0.7))
    assert "speech_started" not in types(out) and "speech_ended" not in types(out)
    job = [j for j in out.jobs if j.kind == "final"][0]
    assert "utterance_end" not in types(audio(s, silence(0.5)))       # its final is not out yet
    out = s.result(job, "Done.")                     # the silence is long enough by now: both go out
    assert types(out) == ["final", "utterance_end"]
    assert out.events[1].to_wire()["last_word_end_ms"] == pytest.approx(1500, abs=150)
    job = speculation(audio(s, voice(1.0), silence(0.45)))     # the next one: its final is quick this time
    assert types(s.result(job, "Again.")) == ["final"]
    assert audio(s, silence(0.3)).events == []
    assert types(audio(s, silence(0.5))) == ["utterance_end"]
    assert audio(s, silence(2.0)).events == []                        # once per gap


# ---- configure -----------------------------------------------------------------
def test_configure_changes_endpointing_mid_stream():
    s = started()
    out = s.receive(parse_message({"type": "configure", "endpointing": {"silence_ms": 2000, "speculative": False},
                                   "vad_events": False}))
    (updated,) = out.events
    wire = updated.to_wire()
    assert wire["endpointing"]["silence_ms"] == 2000 and wire["vad_events"] is False
    assert wire["endpointing"]["mid_clause_ms"] == 600              # what it did not name stays
    out = audio(s, silence(0.3), voice(1.2), silence(1.5))
    assert out.events == [] and out.jobs == []
    out = audio(s, silence(0.6))
    assert [j.kind for j in out.jobs] == ["final"]


def test_configure_that_shortens_the_endpoint_ends_an_utterance_in_its_silence():
    s = started(endpointing={"speculative": False, "silence_ms": 3000})
    audio(s, silence(0.3), voice(1.2), silence(1.0))
    out = s.receive(parse_message({"type": "configure", "endpointing": 500}))
    assert types(out) == ["speech_ended", "updated"] and [j.kind for j in out.jobs] == ["final"]


def test_configure_changes_hotwords_and_watch_for_the_next_decode():
    s = started(partials=True)
    out = s.receive(parse_message({"type": "configure", "hotwords": ["Lingting"], "watch": ["hold"]}))
    assert out.events[0].to_wire() == {"type": "updated", "hotwords": ["Lingting"], "watch": ["hold"]}
    jobs = audio(s, silence(0.3), voice(1.2)).jobs
    assert jobs and all(j.request.hotwords == ("Lingting", "hold") for j in jobs)   # watch phrases steer too
    assert [w.phrase for w in jobs[-1].text.watch] == ["hold"]


def test_configure_refusals():
    s = started()
    for bad in ({"type": "configure"}, {"type": "configure", "language": "zh"},
                {"type": "configure", "endpointing": "slow"}, {"type": "update", "endpointing": 500}):
        with pytest.raises(ProtocolError):
            parse_message(bad)
    offline = Driven("s2", "m")
    offline.receive(parse_message({"type": "start", "mode": "offline"}))
    out = offline.receive(parse_message({"type": "configure", "endpointing": 500}))
    assert types(out) == ["error"] and "live streams only" in out.events[0].message


def test_channels_answer_configure_once_and_each_follows_it():
    s = started(channels=2, channel_labels=["agent", "customer"])
    out = s.receive(parse_message({"type": "configure", "endpointing": {"speculative": False}}))
    assert types(out) == ["updated"]
    both = np.stack([np.concatenate([silence(0.3), voice(1.2), silence(1.0)])] * 2, axis=1).reshape(-1)
    out = s.receive(Audio(to_s16(both)))
    assert sorted(j.channel for j in out.jobs if j.kind == "final") == [0, 1]
    assert not any(j.speculative for j in out.jobs)


def test_a_speculation_leaves_the_streams_engine_state_alone():
    """FunASR keeps a stream's partial caches until its final: a speculation
    names no stream, so speech that comes back keeps them."""
    s = started()
    job = speculation(audio(s, silence(0.3), voice(1.2), silence(0.45)))
    assert job.request.stream is None
    out = audio(s, voice(0.5), silence(1.0))
    assert all(j.request.stream is None for j in out.jobs if j.kind == "final")
