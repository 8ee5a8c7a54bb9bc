import numpy as np
import pytest

from lingting_server.wire.endpointing import EndpointConfig
from lingting_server.streaming.segmenter import Segmenter, SpeechEnded, SpeechStarted
from lingting_testkit.synth import silence, voice


def feed_in_chunks(seg, samples, chunk=1234):
    events = []
    for i in range(0, len(samples), chunk):
        events += seg.feed(samples[i:i + chunk])
    return events


def test_one_utterance_between_silences():
    events = feed_in_chunks(Segmenter(), np.concatenate([silence(1), voice(2), silence(1)]))
    assert [type(e) for e in events] == [SpeechStarted, SpeechEnded]
    started, ended = events
    assert abs(started.start_sample / 16 - 1000) <= 60
    assert abs(ended.end_sample / 16 - 3000) <= 200
    assert ended.reason == "silence"
    # The decoded audio holds the whole voiced part plus a little pre-roll.
    assert ended.audio_start < started.start_sample
    assert len(ended.audio) >= 2 * 16000


def test_chunking_does_not_change_segmentation():
    audio = np.concatenate([silence(0.5), voice(1.5), silence(1), voice(1), silence(1)])
    a = [(type(e).__name__, e.start_sample) for e in feed_in_chunks(Segmenter(), audio, 160)]
    b = [(type(e).__name__, e.start_sample) for e in feed_in_chunks(Segmenter(), audio, 4001)]
    assert a == b
    assert [name for name, _ in a] == ["SpeechStarted", "SpeechEnded"] * 2


def test_short_pause_does_not_end_utterance():
    seg = Segmenter(EndpointConfig(silence_ms=800))
    events = seg.feed(np.concatenate([voice(1), silence(0.4), voice(1), silence(1.2)]))
    assert [type(e) for e in events] == [SpeechStarted, SpeechEnded]


def test_silence_only_gives_nothing():
    seg = Segmenter()
    assert seg.feed(silence(3)) == []
    assert seg.flush() == []


def test_flush_forces_endpoint_mid_speech():
    seg = Segmenter()
    assert [type(e) for e in seg.feed(voice(1.01))] == [SpeechStarted]
    (ended,) = seg.flush()
    assert ended.reason == "flush" and ended.end_sample == seg.clock
    assert not seg.in_speech


def test_max_length_cuts_and_continues():
    seg = Segmenter(EndpointConfig(max_utterance_ms=3000))
    # A pause shorter than the endpoint silence sits inside the last 3 s.
    events = seg.feed(np.concatenate([voice(2.2), silence(0.3), voice(2.5)]))
    kinds = [type(e) for e in events]
    assert kinds[:3] == [SpeechStarted, SpeechEnded, SpeechStarted]
    ended, restarted = events[1], events[2]
    assert ended.reason == "max_length"
    # Cut inside the pause, not in the middle of a "word".
    assert 2200 <= ended.end_sample / 16 <= 2500
    assert restarted.start_sample == ended.end_sample
    assert seg.in_speech


def test_config_is_validated():
    with pytest.raises(ValueError):
        Segmenter(EndpointConfig(vad_aggressiveness=5))
