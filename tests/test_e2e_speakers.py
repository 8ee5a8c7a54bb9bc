"""Speaker labels end to end: conversations built from ../shared/audio clips of
different real speakers (known boundaries), through the real server, its
Whisper model and resemblyzer's voice encoder, live and as files.

Score: the share of words (characters for Mandarin) whose speaker is right,
after the best mapping of the server's labels onto the true speakers."""

from __future__ import annotations

import itertools
import json
import urllib.request
from dataclasses import dataclass

import numpy as np
import pytest

from bench.corpus import read_wav
from lingting_client import FileOptions, LingtingClient, StreamOptions
from lingting_testkit.streams import check_event_grammar, stream_events, wav_file

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(
    __import__("importlib").util.find_spec("resemblyzer") is None,
    reason="resemblyzer is not installed (make test installs the diarize extra)")]
RATE = 16000
GAP_S = 1.0

# Three English voices (LJ Speech's reader, a LibriVox reader, JFK), turns of 6-11 s.
ENGLISH = [("LJ", "en/ljspeech/LJ001-0001.wav"), ("AUSTEN", "en/ps_sense_and_sensibility_01_austen_64kb-0870.wav"),
           ("LJ", "en/ljspeech/LJ001-0003.wav"), ("JFK", "en/jfk.wav"),
           ("AUSTEN", "en/ps_sense_and_sensibility_01_austen_64kb-0920.wav"), ("LJ", "en/ljspeech/LJ001-0005.wav")]
# Two Mandarin voices, each clip cut in two: turns of 2-3 s.
MANDARIN = [("AISHELL", "zh/aishell_BAC009S0724W0121.wav", 0.0, 2.2), ("FUNASR", "zh/funasr_asr_example.wav", 0.0, 2.9),
            ("AISHELL", "zh/aishell_BAC009S0724W0121.wav", 2.2, None), ("FUNASR", "zh/funasr_asr_example.wav", 2.9, None)]
ONE_SPEAKER = [("LJ", f"en/ljspeech/LJ001-000{n}.wav") for n in range(1, 8)]


@dataclass
class Conversation:
    pcm: bytes
    turns: list[tuple[str, int, int]]        # (speaker, start_ms, end_ms)

    def speaker_at(self, ms: int) -> str | None:
        return next((s for s, start, end in self.turns if start - 300 <= ms <= end + 300), None)


def conversation(root, parts) -> Conversation:
    pieces, turns, at = [], [], 0
    gap = np.zeros(int(GAP_S * RATE), "<i2")
    for speaker, name, *cut in parts:
        samples, rate = read_wav(root / name)
        assert rate == RATE
        if cut:
            start, end = cut
            samples = samples[int(start * RATE):None if end is None else int(end * RATE)]
        turns.append((speaker, at * 1000 // RATE, (at + len(samples)) * 1000 // RATE))
        pieces += [samples, gap]
        at += len(samples) + len(gap)
    return Conversation(np.concatenate(pieces).astype("<i2").tobytes(), turns)


def labelled_units(finals: list[dict], relabel: dict | None = None, chars: bool = False):
    """(predicted label, weight, time) per turn of each final: words, or characters for Mandarin."""
    for final in finals:
        for part in final.get("turns") or [final]:
            label = part.get("speaker")
            if relabel is not None:
                label = relabel.get((final["utterance"], part["start_ms"]), label)
            text = part["text"].replace(" ", "") if chars else part["text"].split()
            yield label, len(text), (part["start_ms"] + part["end_ms"]) // 2


def accuracy(units, talk: Conversation) -> float:
    units = [(label, weight, talk.speaker_at(mid)) for label, weight, mid in units]
    labels = sorted({u[0] for u in units if u[0]})
    truths = sorted({u[2] for u in units if u[2]})
    total = sum(w for _, w, truth in units if truth)
    best = 0
    for chosen in itertools.permutations(truths + [None] * max(0, len(labels) - len(truths)), len(labels)):
        mapping = dict(zip(labels, chosen))
        best = max(best, sum(w for label, w, truth in units if truth and mapping.get(label) == truth))
    return best / total if total else 0.0


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
    global GAP_S
    saved, GAP_S = GAP_S, 0.15
    try:
        talk = conversation(shared_audio, [("LJ", "en/ljspeech/LJ001-0004.wav"), ("JFK", "en/jfk.wav")])
    finally:
        GAP_S = saved
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
