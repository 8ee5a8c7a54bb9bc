"""Speaker labels end to end: conversations built from ../shared/audio clips of
different real speakers (known boundaries), through the real server, its
Whisper model and resemblyzer's voice encoder, live and as files
(tests/lingting_testkit/conversations.py builds them and scores the labels)."""

from __future__ import annotations

import json
import urllib.request

import pytest

from lingting_client import FileOptions, LingtingClient, StreamOptions
from lingting_testkit.conversations import ENGLISH, MANDARIN, ONE_SPEAKER, accuracy, conversation, labelled_units
from lingting_testkit.streams import check_event_grammar, stream_events, wav_file

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(
    __import__("importlib").util.find_spec("resemblyzer") is None,
    reason="resemblyzer is not installed (make test installs the diarize extra)")]
def file_labels(events: list[dict]) -> dict:
    (speakers,) = [e for e in events if e["type"] == "speakers"]
    return {(s["utterance"], s["start_ms"]): s["speaker"] for s in speakers["segments"]}


async def transcribe(url: str, pcm: bytes, tmp_path, language: str) -> list[dict]:
    path = tmp_path / "talk.wav"
    path.write_bytes(wav_file(pcm))
    return [e async for e in LingtingClient(url).transcribe(str(path), FileOptions(language=language, diarize=True))]


def report(name: str, value: float) -> None:
    print(f"{name}: {value:.3f}")


async def test_three_english_speakers_live_and_as_a_file(server, shared_audio, tmp_path):
    talk = conversation(shared_audio, ENGLISH)
    live = await stream_events(server.url, talk.pcm, StreamOptions(language="en", diarize=True))
    check_event_grammar(live)
    finals = [e for e in live if e["type"] == "final" and e["text"]]
    live_accuracy = accuracy(labelled_units(finals), talk)
    report("english live word-speaker accuracy", live_accuracy)
    print([(f.get("speaker"), f["start_ms"], f["text"][:30]) for f in finals])
    assert all(f.get("speaker") for f in finals)
    assert live_accuracy >= 0.8

    events = await transcribe(server.url, talk.pcm, tmp_path, "en")
    file_finals = [e for e in events if e["type"] == "final" and e["text"]]
    relabel = file_labels(events)
    file_accuracy = accuracy(labelled_units(file_finals, relabel), talk)
    report("english file word-speaker accuracy", file_accuracy)
    assert file_accuracy >= 0.9
    speakers = next(e for e in events if e["type"] == "speakers")
    assert speakers["count"] == 3

    # The file's labels are in its history; renamed, exports use the names.
    session_id = events[0]["session_id"]
    request = urllib.request.Request(f"{server.http}/v1/history/sessions/{session_id}", method="PATCH",
                                     data=json.dumps({"speaker_names": {"S1": "Linda"}}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        assert json.load(response)["speaker_names"] == {"S1": "Linda"}
    text = LingtingClient(server.url).export(session_id, "txt")
    assert text.splitlines()[0].startswith("Linda: ") and "S2: " in text


async def test_two_mandarin_speakers_in_short_turns(server, shared_audio, tmp_path):
    talk = conversation(shared_audio, MANDARIN)
    live = await stream_events(server.url, talk.pcm, StreamOptions(language="zh", diarize=True, speed=0))
    finals = [e for e in live if e["type"] == "final" and e["text"]]
    live_accuracy = accuracy(labelled_units(finals, chars=True), talk)
    report("mandarin live character-speaker accuracy", live_accuracy)
    print([(f.get("speaker"), f["start_ms"], f["text"]) for f in finals])
    events = await transcribe(server.url, talk.pcm, tmp_path, "zh")
    relabel = file_labels(events)
    file_finals = [e for e in events if e["type"] == "final" and e["text"]]
    file_accuracy = accuracy(labelled_units(file_finals, relabel, chars=True), talk)
    report("mandarin file character-speaker accuracy", file_accuracy)
    assert live_accuracy >= 0.7 and file_accuracy >= 0.7


async def test_one_speaker_gets_one_label(server, shared_audio):
    talk = conversation(shared_audio, ONE_SPEAKER)
    live = await stream_events(server.url, talk.pcm, StreamOptions(language="en", diarize=True, speed=0))
    labels = {e.get("speaker") for e in live if e["type"] == "final" and e["text"]}
    turns = [e for e in live if e["type"] == "final" and e.get("turns")]
    assert labels == {"S1"} and not turns


async def test_a_final_that_holds_a_speaker_change_is_split_into_turns(server, shared_audio):
    """Two voices back to back (0.15 s apart: under the endpoint's pause), so one final holds both."""
    talk = conversation(shared_audio, [("LJ", "en/ljspeech/LJ001-0004.wav"), ("JFK", "en/jfk.wav")], gap_s=0.15)
    live = await stream_events(server.url, talk.pcm, StreamOptions(language="en", diarize=True, speed=0))
    finals = [e for e in live if e["type"] == "final" and e["text"]]
    print([(f.get("speaker"), f["start_ms"], f["end_ms"], f.get("turns")) for f in finals])
    split = [f for f in finals if f.get("turns")]
    assert split, "no final held the change"
    turns = split[0]["turns"]
    assert len(turns) == 2 and turns[0]["speaker"] != turns[1]["speaker"]
    change_ms = talk.turns[0][2]
    assert abs(turns[0]["end_ms"] - change_ms) < 1500 and "fellow Americans" in turns[1]["text"]
    assert accuracy(labelled_units(finals), talk) >= 0.85
