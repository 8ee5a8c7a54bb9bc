"""The FunASR protocol codec: config in, replies out (synthetic events)."""

import dataclasses
import json

import pytest

from lingting_server.protocols.funasr import FunasrCodec
from lingting_server.wire.errors import ProtocolError
from lingting_server.protocols.messages import Audio, KeepAlive, Start, Stop
from lingting_server.wire import events


def replies(codec, event):
    return [json.loads(r) for r in codec.encode_all(event)]


def test_config_maps_to_a_start():
    codec = FunasrCodec()
    [start] = codec.decode(json.dumps({"mode": "2pass", "chunk_size": [5, 10, 5], "wav_name": "w1", "audio_fs": 8000,
                                     "wav_format": "pcm", "is_speaking": True, "itn": False,
                                     "hotwords": json.dumps({"阿里巴巴": 20, "达摩院": 5})}))
    assert isinstance(start, Start)
    config = start.config
    assert (config.mode, config.sample_rate, config.encoding, config.partials, config.itn) == (
        "stream", 8000, "pcm_s16le", True, False)
    assert [(h.phrase, h.boost) for h in config.hotwords] == [("阿里巴巴", 2.0), ("达摩院", 1.0)]
    assert codec.decode(b"\0\0") == [Audio(b"\0\0")]
    assert codec.decode(json.dumps({"mode": "2pass", "is_speaking": True})) == [KeepAlive()]
    assert codec.decode(json.dumps({"is_speaking": False})) == [Stop()]
    [file_start] = FunasrCodec().decode(json.dumps({"mode": "offline", "wav_format": "mp3", "wav_name": "a.mp3",
                                                    "hotwords": "阿里巴巴 达摩院"}))
    file = file_start.config
    assert (file.mode, file.filename, [h.phrase for h in file.hotwords]) == ("offline", "a.mp3", ["阿里巴巴", "达摩院"])
    with pytest.raises(ProtocolError):
        FunasrCodec().decode(json.dumps({"is_speaking": False}))       # before any config
    with pytest.raises(ProtocolError):
        FunasrCodec().decode(json.dumps({"mode": "3pass"}))


def test_2pass_replies_and_the_last_is_final():
    codec = FunasrCodec()
    codec.decode(json.dumps({"mode": "2pass", "wav_name": "w"}))
    def partial(text, stable):
        return events.Partial(0, 0, 500, text, stable, "zh")
    assert [r["text"] for r in replies(codec, partial("今天", ""))] == ["今天"]
    assert [r["text"] for r in replies(codec, partial("今天天气", "今天"))] == ["天气"]
    assert replies(codec, partial("今日天气好", "今")) == []   # reworded: wait
    final = events.Final(0, 100, 1900, "silence", "今天天气好。", "今天天气好。", "zh",
                         words=(events.Word("今天", 100, 600, 0.9),))
    (r,) = replies(codec, final)
    assert (r["mode"], r["text"], r["is_final"], r["wav_name"]) == ("2pass-offline", "今天天气好。", False, "w")
    assert json.loads(r["timestamp"]) == [[100, 600]] and r["stamp_sents"][0]["start"] == 100
    codec.decode(json.dumps({"is_speaking": False}))
    assert replies(codec, dataclasses.replace(final, utterance=1)) == []   # held until the end is known
    last = replies(codec, events.Stopped(2, 3000))
    assert [(r["text"], r["is_final"]) for r in last] == [("今天天气好。", True)]


def test_online_mode_sends_increments_only():
    codec = FunasrCodec()
    codec.decode(json.dumps({"mode": "online"}))
    replies(codec, events.Partial(0, 0, 1, "hello", "hello", "en"))
    (r,) = replies(codec, events.Final(0, 0, 1, "silence", "hello world", "hello world", "en"))
    assert (r["mode"], r["text"]) == ("online", " world")
