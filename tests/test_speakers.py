"""Speaker labels from embeddings: online assignment, changes inside an
utterance, whole-file clustering, renames in exports. Synthetic unit vectors
stand in for voices here; real voices are in test_e2e_speakers.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lingting_server.wire.errors import ProtocolError
from lingting_server.text.export import render
from lingting_server.protocols.messages import parse_start
from lingting_server.text.speakers import OnlineSpeakers, cluster, turns, unit

RNG = np.random.default_rng(7)
VOICES = [unit(RNG.normal(size=256)) for _ in range(3)]     # random directions: cosine about 0 between them


def heard(voice: int, noise: float = 0.35) -> np.ndarray:
    """An utterance's embedding: its voice plus noise (cosine to the voice about 0.85)."""
    return unit(VOICES[voice] + noise * unit(RNG.normal(size=256)))


def test_online_labels_follow_the_voices_and_wait_for_enough_speech():
    speakers = OnlineSpeakers()
    order = [0, 1, 0, 2, 1, 0, 2]
    assert [speakers.assign(heard(v), 3.0) for v in order] == ["S1", "S2", "S1", "S3", "S2", "S1", "S3"]
    short = OnlineSpeakers()
    short.assign(heard(0), 3.0)
    assert short.assign(heard(1), 0.6) == "S1"        # too short to open a new speaker: the nearest
    assert short.assign(heard(1), 2.0) == "S2"
    capped = OnlineSpeakers(max_speakers=2)
    assert [capped.assign(heard(v), 3.0) for v in (0, 1, 2)][:2] == ["S1", "S2"]
    assert len(capped.centroids) == 2


def test_one_voice_never_gets_a_second_label():
    speakers = OnlineSpeakers()
    assert {speakers.assign(heard(0, noise=0.5), 2.0) for _ in range(40)} == {"S1"}


def windows(voices: list[int], step_ms: int = 500, span_ms: int = 1600):
    return [(n * step_ms, n * step_ms + span_ms, heard(v, 0.2)) for n, v in enumerate(voices)]


def test_a_change_inside_an_utterance_splits_it_into_turns():
    one = turns(windows([0] * 10), heard(0), 6100)
    assert len(one) == 1 and (one[0].start_ms, one[0].end_ms) == (0, 6100)
    two = turns(windows([0] * 6 + [1] * 6), heard(0), 7100)
    assert len(two) == 2 and 2500 <= two[0].end_ms == two[1].start_ms <= 3600
    assert float(two[0].embedding @ VOICES[0]) > 0.8 and float(two[1].embedding @ VOICES[1]) > 0.8
    short_tail = turns(windows([0] * 8 + [1] * 2), heard(0), 6100)    # under 1.5 s of the other voice
    assert len(short_tail) == 1


def test_a_file_is_clustered_as_a_whole():
    order = [0, 1, 0, 2, 1, 2, 0]
    labels = cluster([heard(v) for v in order])
    assert labels == ["S1", "S2", "S1", "S3", "S2", "S3", "S1"]
    assert len(set(cluster([heard(v) for v in order], speakers=2))) == 2
    assert cluster([heard(0)]) == ["S1"] and cluster([]) == []


def test_diarize_is_for_one_channel_and_exports_use_given_names():
    assert parse_start({"type": "start", "diarize": True, "max_speakers": 3}).summary()["max_speakers"] == 3
    for bad in ({"max_speakers": 2}, {"diarize": True, "channels": 2}, {"diarize": True, "max_speakers": 0}):
        with pytest.raises(ProtocolError):
            parse_start({"type": "start", **bad})
    session = {"speaker_names": {"S1": "Dr. Chen"}, "utterances": [
        {"idx": 0, "start_ms": 0, "end_ms": 4000, "text": "hello there how are you", "speaker": "S1",
         "turns": [{"speaker": "S1", "start_ms": 0, "end_ms": 1500, "text": "hello there"},
                   {"speaker": "S2", "start_ms": 1500, "end_ms": 4000, "text": "how are you"}]},
        {"idx": 1, "start_ms": 5000, "end_ms": 6000, "text": "fine", "speaker": "S1", "turns": None}]}
    assert render(session, "txt") == "Dr. Chen: hello there\nS2: how are you\nDr. Chen: fine\n"
    assert "Dr. Chen: fine" in render(session, "srt") and json.loads(render(session, "json"))["speaker_names"]


async def test_diarize_is_refused_by_a_server_without_a_speaker_model():
    import websockets

    from lingting_testkit.inprocess import edge_server
    async with edge_server() as edge:          # the recording engine has no speaker model
        async with websockets.connect(edge.ws + "/v1/stream") as ws:
            await ws.send(json.dumps({"type": "start", "diarize": True}))
            answer = json.loads(await ws.recv())
    assert answer["code"] == "unsupported" and "diarize" in answer["message"]


def test_only_the_sessions_tenant_renames_its_speakers(tmp_path):
    from lingting_server.services.history.store import HistoryStore
    store = HistoryStore(tmp_path / "h.sqlite3")
    store.open_session("s1", "file", owner="acme")
    store.add_utterance("s1", {"utterance": 0, "start_ms": 0, "end_ms": 900, "text": "hi", "speaker": "S1"})
    assert not store.rename_speakers("s1", {"S1": "Mallory"}, tenant="globex")
    assert store.rename_speakers("s1", {"S1": "Dr. Chen"}, tenant="acme")
    assert store.rename_speakers("s1", {"S2": "Bob"}, tenant=None)            # an admin
    assert store.get_session("s1")["speaker_names"] == {"S1": "Dr. Chen", "S2": "Bob"}
    assert store.rename_speakers("s1", {"S2": ""}, tenant="acme")            # an empty name removes it
    assert store.get_session("s1", "acme")["speaker_names"] == {"S1": "Dr. Chen"}
