"""Streams of several channels, telephony events and redaction in the session, sans I/O."""

import numpy as np
import pytest

from lingting_server.wire.recognition import DecodeResult, Word
from lingting_server.wire.errors import ErrorCode, ProtocolError
from lingting_server.protocols.messages import Audio, Dtmf, Mark, Stop, parse_message
from lingting_testkit.synth import silence, to_s16, voice
from test_session import error_code, started, types, wire


def interleave(*channels: np.ndarray) -> bytes:
    n = max(len(c) for c in channels)
    padded = [np.pad(c, (0, n - len(c))) for c in channels]
    return to_s16(np.stack(padded, axis=1).reshape(-1))


def test_each_channel_has_its_own_utterances_and_labels():
    s = started(partials=False, channels=2, channel_labels=["agent", "customer"])
    assert s.stream.numbers.taken == 0
    # The agent talks for 3 s; the customer says something short in the middle.
    agent = np.concatenate([voice(3.0), silence(1.0)])
    customer = np.concatenate([silence(1.0), voice(0.6), silence(2.4)])
    out = s.handle(Audio(interleave(agent, customer)))
    started_events = [e for e in wire(out) if e["type"] == "speech_started"]
    assert [(e["channel"], e["speaker"], e["utterance"]) for e in started_events] == [(0, "agent", 0),
                                                                                     (1, "customer", 1)]
    jobs = {j.channel: j for j in out.jobs if j.kind == "final"}
    assert set(jobs) == {0, 1} and jobs[0].utterance == 0 and jobs[1].utterance == 1
    # The customer's final goes out when it is decoded: it does not wait for the agent's (utterance 0).
    (final,) = wire(s.result(jobs[1], DecodeResult("yes", "en")))
    assert final["type"] == "final" and final["text"] == "yes" and (final["channel"], final["speaker"]) == (1, "customer")
    (final,) = wire(s.result(jobs[0], DecodeResult("hello there", "en")))
    assert final["speaker"] == "agent" and final["utterance"] == 0
    out = s.handle(Stop(reason="hangup"))
    assert types(out) == ["stopped"] and out.events[0].utterances == 2


def test_unlabelled_channels_get_names_and_ready_lists_them():
    s = started(channels=2)
    assert s.config.speaker(1) == "ch1"
    out = started(channels=3, channel_labels=["a", "b", "c"])
    assert out.config.labelled


def test_ready_says_the_channels():
    from lingting_server.streaming.session import Session
    s = Session("s", "m")
    (ready,) = wire(s.receive(parse_message({"type": "start", "channels": 2, "channel_labels": ["agent", "customer"]})))
    assert ready["channels"] == ["agent", "customer"]
    (ready,) = wire(Session("t", "m").receive(parse_message({"type": "start"})))
    assert "channels" not in ready


@pytest.mark.parametrize("fields, words", [
    ({"channels": 0}, "between 1 and 8"),
    ({"channels": 2, "channel_labels": ["agent"]}, "names 1 channel"),
    ({"channels": 2, "channel_labels": ["agent", ""]}, "channel_labels"),
    ({"mode": "offline", "channels": 2}, "does not apply to offline"),
    ({"redact": ["pci", "passwords"]}, "unknown redact kind"),
])
def test_bad_channel_and_redact_settings(fields, words):
    with pytest.raises(ProtocolError) as info:
        parse_message({"type": "start", **fields})
    assert words in info.value.message


def test_interleaved_frames_must_hold_whole_frames_of_every_channel():
    s = started(channels=2)
    assert error_code(s.handle(Audio(b"\x00" * 6))) == ErrorCode.BAD_AUDIO     # 1.5 two-channel s16 frames
    assert s.handle(Audio(b"\x00" * 8)).events == []


def test_one_legs_audio_by_channel():
    s = started(partials=False, channels=2, channel_labels=["inbound", "outbound"])
    out = s.handle(Audio(to_s16(np.concatenate([voice(1.0), silence(1.0)])), channel=1))
    (job,) = out.jobs
    assert job.channel == 1 and s.stream.channels[0].audio_samples == 0
    assert error_code(s.handle(Audio(b"\x00\x00", channel=2))) == ErrorCode.BAD_MESSAGE
    assert error_code(started().handle(Audio(b"\x00\x00", channel=1))) == ErrorCode.BAD_MESSAGE


def test_partials_of_two_channels_do_not_replace_each_other():
    s = started(partial_interval_ms=300, channels=2)
    out = s.handle(Audio(interleave(voice(1.0), voice(1.0))))
    lanes = {j.lane for j in out.jobs if j.kind == "partial"}
    assert lanes == {("s1", 0), ("s1", 1)}


def test_dtmf_and_marks_and_a_hangup():
    s = started(partials=False, channels=2, channel_labels=["agent", "customer"])
    s.handle(Audio(interleave(voice(1.0), silence(1.0))))
    (dtmf,) = wire(s.handle(Dtmf("5", channel=1)))
    assert dtmf == {"type": "dtmf", "digit": "5", "audio_ms": 1000, "channel": 1, "speaker": "customer",
                    "redacted": False}
    assert wire(s.handle(Mark("greeting"))) == [{"type": "mark", "name": "greeting", "audio_ms": 1000}]
    out = s.handle(Stop(reason="hangup"))
    (job,) = out.jobs
    assert job.reason == "hangup"


def test_pci_redaction_withholds_dtmf_digits():
    s = started(redact="pci")
    (dtmf,) = wire(s.handle(Dtmf("4")))
    assert dtmf["digit"] is None and dtmf["redacted"] is True and "channel" not in dtmf


def test_finals_and_their_words_are_redacted_before_they_leave_the_session():
    s = started(partials=False, redact=["pci", "email"], watch=["card"])
    out = s.handle(Audio(to_s16(np.concatenate([voice(1.0), silence(1.0)]))))
    (job,) = out.jobs
    words = [Word(" My", 0, 100, 0.9), Word(" card", 100, 200, 0.9), Word(" is", 200, 300, 0.9)]
    words += [Word(f" {g}", 300 + i * 100, 400 + i * 100, 0.9) for i, g in enumerate(["4111", "1111", "1111", "1111"])]
    text = "".join(w.word for w in words).strip() + ", mail me at a.b@example.com"
    out = wire(s.result(job, DecodeResult(text, "en", words)))
    final = next(e for e in out if e["type"] == "final")
    assert final["text"] == "My card is [card], mail me at [email]" == final["raw_text"]
    assert [w["word"] for w in final["words"]] == [" My", " card", " is", " [card]"]
    assert final["words"][-1]["end_ms"] - final["words"][-1]["start_ms"] == 400
    alert = next(e for e in out if e["type"] == "alert")
    assert alert["phrase"] == "card" and "4111" not in str(out)
