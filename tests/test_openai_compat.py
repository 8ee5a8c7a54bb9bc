"""OpenAI's API shapes, sans-I/O: transcription answers and the realtime codec."""

from __future__ import annotations

import base64
import json

import pytest

from lingting_server.wire.errors import ErrorCode, ProtocolError
from lingting_server.text.hotwords import from_prompt
from lingting_server.protocols.openai import StreamedTranscript, check_model, join_texts, model_names, render
from lingting_server.protocols.openai_realtime import MANUAL_SILENCE_MS, RealtimeCodec
from lingting_server.protocols.messages import Audio, Clear, Flush, Start, Update
from lingting_server.wire import events
from lingting_testkit.streams import final

NAMES = model_names("whisper-base", ("base",))


def test_model_names_and_prompt_terms():
    assert NAMES[:2] == ("whisper-base", "base") and "whisper-1" in NAMES
    check_model("gpt-4o-mini-transcribe", NAMES)
    with pytest.raises(ProtocolError) as missing:
        check_model("whisper-large-v3", NAMES)
    assert missing.value.code == ErrorCode.MODEL_NOT_FOUND and "whisper-base" in missing.value.message
    assert from_prompt("ComfyUI, Lingting;\nFun-ASR\nThe following is a call about our billing system") == [
        "ComfyUI", "Lingting", "Fun-ASR"]
    assert from_prompt("达摩院，通义千问") == ["达摩院", "通义千问"]


def test_transcripts_join_words_with_spaces_and_cjk_without():
    assert join_texts(["Hold.", " ", "T minus 10."]) == "Hold. T minus 10."
    assert join_texts(["今天天气", "很好", "OK"]) == "今天天气很好 OK"
    stream = StreamedTranscript()
    deltas = [stream.delta(final(n, t)) for n, t in enumerate(["你好", "世界", "", "Lingting"])]
    assert [d and d["delta"] for d in deltas] == ["你好", "世界", None, " Lingting"]
    assert stream.done(3.0)["text"] == "你好世界 Lingting" == "".join(d["delta"] for d in deltas if d)


def test_every_response_format_renders_the_finals():
    words = (events.Word(" Hold", 200, 500, 0.9), events.Word(" on.", 500, 900, 0.8))
    finals = [final(0, "Hold on.", 200, 900, words), final(1, "", 1000, 1200), final(2, "T minus 10.", 1500, 2600)]
    assert render(finals, "json", duration_s=3, language="en") == {
        "text": "Hold on. T minus 10.", "usage": {"type": "duration", "seconds": 3}}
    assert render(finals, "text", duration_s=3, language="en") == "Hold on. T minus 10.\n"
    assert render(finals, "srt", duration_s=3, language="en").startswith("1\n00:00:00,200 --> 00:00:00,900\nHold on.")
    assert render(finals, "vtt", duration_s=3, language="en").startswith("WEBVTT\n\n00:00:00.200 --> 00:00:00.900")
    verbose = render(finals, "verbose_json", duration_s=3, language="en", temperature=0.2, words=True)
    assert verbose["language"] == "english" and verbose["duration"] == 3
    assert [(s["id"], s["start"], s["end"], s["text"]) for s in verbose["segments"]] == [
        (0, 0.2, 0.9, "Hold on."), (1, 1.5, 2.6, "T minus 10.")]
    assert verbose["segments"][0]["avg_logprob"] < 0 and verbose["segments"][0]["temperature"] == 0.2
    assert verbose["words"] == [{"word": "Hold", "start": 0.2, "end": 0.5}, {"word": "on.", "start": 0.5, "end": 0.9}]
    assert "words" not in render(finals, "verbose_json", duration_s=3, language="zh")


def wire(frames: list[str]) -> list[dict]:
    return [json.loads(f) for f in frames]


def update(codec, **session):
    [message] = codec.decode(json.dumps({"type": "transcription_session.update", "event_id": "c1",
                                         "session": session}))
    return message


def test_realtime_update_starts_the_session_in_openais_formats():
    codec = RealtimeCodec("s1", NAMES)
    (created,) = wire(codec.greeting())
    assert created["type"] == "transcription_session.created" and created["session"]["input_audio_format"] == "pcm16"
    start = update(codec, input_audio_format="g711_alaw", turn_detection={"type": "server_vad",
                   "silence_duration_ms": 400, "threshold": 0.8},
                   input_audio_transcription={"model": "whisper-1", "language": "en-US", "prompt": "ComfyUI, Lingting"})
    assert isinstance(start, Start)
    c = start.config
    assert (c.sample_rate, c.encoding, c.language, c.endpointing.silence_ms, c.endpointing.vad_aggressiveness) == (
        8000, "alaw", "en", 400, 3)
    assert [h.phrase for h in c.hotwords] == ["ComfyUI", "Lingting"]
    (updated,) = wire(codec.encode_all(events.Ready("s1", "whisper-base", "stream", "en", {}, 8000, "alaw")))
    assert updated["type"] == "transcription_session.updated"
    assert updated["session"]["turn_detection"]["silence_duration_ms"] == 400
    # Started: a new prompt is new hotwords; the format is fixed.
    again = update(codec, input_audio_transcription={"prompt": "Fun-ASR"})
    assert isinstance(again, Update) and [h.phrase for h in again.hotwords] == ["Fun-ASR"]
    with pytest.raises(ProtocolError) as fixed:
        update(codec, input_audio_format="pcm16")
    assert fixed.value.code == ErrorCode.INVALID_FIELD


def test_realtime_audio_before_any_update_starts_with_the_defaults():
    codec = RealtimeCodec("s1", NAMES)
    with pytest.raises(ProtocolError) as empty:
        codec.decode(json.dumps({"type": "input_audio_buffer.commit"}))
    assert empty.value.code == ErrorCode.NO_SPEECH
    start, audio = codec.decode(json.dumps({"type": "input_audio_buffer.append",
                                            "audio": base64.b64encode(b"\x01\x00" * 240).decode()}))
    assert (start.config.sample_rate, start.config.encoding) == (24000, "pcm_s16le") and audio == Audio(b"\x01\x00" * 240)
    assert codec.encode_all(events.Ready("s1", "whisper-base", "stream", "auto", {}, 24000, "pcm_s16le")) == []
    assert codec.decode(json.dumps({"type": "input_audio_buffer.commit"})) == [Flush(require_speech=True)]
    assert codec.decode(json.dumps({"type": "input_audio_buffer.clear"})) == [Clear()]
    manual = RealtimeCodec("s2", NAMES)
    assert update(manual, turn_detection=None).config.endpointing.silence_ms == MANUAL_SILENCE_MS


@pytest.mark.parametrize("frame, code", [
    (b"\x00\x01", ErrorCode.BAD_MESSAGE),
    ("[1, 2]", ErrorCode.BAD_MESSAGE),
    ('{"type": "response.create"}', ErrorCode.BAD_MESSAGE),
    ('{"type": "session.update", "session": {}}', ErrorCode.UNSUPPORTED),
    ('{"type": "input_audio_buffer.append", "audio": "not base64!"}', ErrorCode.BAD_AUDIO),
    ('{"type": "input_audio_buffer.append"}', ErrorCode.INVALID_FIELD),
    ('{"type": "transcription_session.update", "session": {"input_audio_format": "mp3"}}', ErrorCode.INVALID_FIELD),
    ('{"type": "transcription_session.update", "session": {"input_audio_transcription": {"model": "x"}}}',
     ErrorCode.MODEL_NOT_FOUND),
    ('{"type": "transcription_session.update", "session": {"turn_detection": {"silence_duration_ms": 5}}}',
     ErrorCode.INVALID_FIELD),
    ('{"type": "transcription_session.update", "session": {"input_audio_transcription": {"language": "xx"}}}',
     ErrorCode.UNSUPPORTED),
])
def test_realtime_bad_events_are_named(frame, code):
    with pytest.raises(ProtocolError) as bad:
        RealtimeCodec("s1", NAMES).decode(frame)
    assert bad.value.code == code


def test_realtime_events_become_items_deltas_and_transcripts():
    codec = RealtimeCodec("s1", NAMES)
    update(codec)
    out = wire(codec.encode_all(events.SpeechStarted(0, 300)))
    assert out[0]["type"] == "input_audio_buffer.speech_started" and out[0]["item_id"] == "item_s1_0"
    assert out[0]["audio_start_ms"] == 300 and out[0]["event_id"]
    grow = [codec.encode_all(events.Partial(0, 0, t, s + " x", s, "en")) for t, s in
            ((500, "T minus"), (800, "T minus"), (900, "T minus ten"))]
    assert [[e["delta"] for e in wire(g)] for g in grow] == [["T minus"], [], [" ten"]]
    stopped, committed = wire(codec.encode_all(events.SpeechEnded(0, 300, 1500, "silence")))
    assert (stopped["type"], stopped["audio_end_ms"]) == ("input_audio_buffer.speech_stopped", 1500)
    assert (committed["type"], committed["item_id"], committed["previous_item_id"]) == (
        "input_audio_buffer.committed", "item_s1_0", None)
    delta, completed = wire(codec.encode_all(final(0, "T minus ten, hold", 300, 1500)))
    assert delta["delta"] == ", hold" and completed["transcript"] == "T minus ten, hold"
    assert completed["usage"] == {"type": "duration", "seconds": 1.2}
    # A commit ends the next item: committed alone, chained to the first; ITN rewrote its deltas.
    codec.encode_all(events.Partial(1, 0, 500, "twenty five dollars", "twenty five", "en"))
    (committed,) = wire(codec.encode_all(events.SpeechEnded(1, 1600, 2500, "flush")))
    assert committed["previous_item_id"] == "item_s1_0"
    (completed,) = wire(codec.encode_all(final(1, "$25", 1600, 2500)))
    assert completed["transcript"] == "$25"
    (failed,) = wire(codec.encode_all(final(2, "", error="worker crashed")))
    assert failed["type"] == "conversation.item.input_audio_transcription.failed"
    assert failed["error"]["code"] == ErrorCode.DECODE_FAILED
    (cleared,) = wire(codec.encode_all(events.Cleared(3)))
    assert cleared["type"] == "input_audio_buffer.cleared"
    (error,) = wire(codec.encode_all(events.Error(ErrorCode.NO_SPEECH, "nothing to commit", False)))
    assert error["error"]["code"] == "no_speech" and error["error"]["event_id"] == "c1"
    assert codec.encode_all(events.Stopped(3, 2500)) == []
