"""Property-based fuzzing of every inbound message path: whatever a client
sends, the answer is a ProtocolError (a clear error event) or a normal
result, never another exception."""

from __future__ import annotations

import json

import msgpack
import pytest
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lingting_server.engines.base import DecodeResult
from lingting_server.funasr_compat import FunasrCodec
from lingting_server.protocol import Codec, ProtocolError, parse_message
from lingting_server.streaming.audio import ENCODINGS, AudioDecoder, AudioFormatError
from lingting_server.streaming.session import Session

FIELDS = ["type", "sample_rate", "encoding", "language", "partials", "partial_interval_ms", "endpointing",
          "word_timestamps", "hotwords", "watch", "itn", "itn_partials", "mode", "filename", "file_bytes",
          "silence_ms", "max_utterance_ms", "vad_aggressiveness", "data", "phrase", "boost"]
TYPES = ["start", "update", "audio", "flush", "keepalive", "stop", "sing", "", None]

scalars = (st.none() | st.booleans() | st.integers(-2**63, 2**64) | st.floats(allow_nan=True)
           | st.text(max_size=80) | st.binary(max_size=64) | st.sampled_from([*TYPES, *ENCODINGS, "offline", "en", "zh"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=5)
                      | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), inner, max_size=5),
                      max_leaves=20)
messages = st.fixed_dictionaries({"type": st.sampled_from(TYPES)},
                                 optional={name: values for name in FIELDS[1:]})


def survives(call):
    try:
        call()
    except (ProtocolError, AudioFormatError):
        pass


@settings(max_examples=600, deadline=None)
@given(st.one_of(messages, values))
def test_parse_message_takes_any_map(message):
    survives(lambda: parse_message(message))


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200),
                 messages.map(lambda m: json.dumps(m, default=repr)),
                 messages.map(lambda m: msgpack.packb(m, use_bin_type=True, default=repr))))
def test_codecs_take_any_frame(frame):
    for subprotocol in ("lingting.v1.json", "lingting.v1.msgpack"):
        survives(lambda: Codec(subprotocol).decode(frame))
    survives(lambda: FunasrCodec().decode(frame))


funasr_configs = st.fixed_dictionaries({}, optional={name: values for name in (
    "mode", "chunk_size", "chunk_interval", "wav_name", "wav_format", "audio_fs", "is_speaking", "hotwords", "itn")})


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(funasr_configs.map(lambda m: json.dumps(m, default=repr)), st.binary(max_size=100)),
                max_size=4))
def test_funasr_codec_takes_any_frames(frames):
    codec = FunasrCodec()
    for frame in frames:
        survives(lambda: codec.decode(frame))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(ENCODINGS), st.integers(8000, 48000), st.lists(st.binary(max_size=700), max_size=6))
def test_audio_decoder_takes_any_bytes(encoding, rate, frames):
    decoder = AudioDecoder(encoding, rate)
    for frame in frames:
        try:
            samples = decoder.decode(frame)
            assert samples.dtype == np.float32 and np.all(np.abs(samples) <= 1.0 + 1e-6)
        except AudioFormatError:
            pass
    decoder.flush()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(messages, st.binary(max_size=4000)), max_size=8))
def test_session_takes_any_sequence_of_frames(frames):
    session = Session("fuzz", "m", ("en", "zh"), {"max_file_bytes": 10000})
    codec = Codec("lingting.v1.json")
    for frame in frames:
        wire = frame if isinstance(frame, bytes) else json.dumps(frame, default=repr)
        try:
            out = session.handle(codec.decode(wire))
        except ProtocolError:
            continue
        for job in out.jobs:           # decode results come back as empty text
            session.on_result(job, DecodeResult("", "en"))
    session.shutdown()


@pytest.mark.e2e
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["lingting.v1.json", "lingting.v1.msgpack"]),
       st.lists(st.one_of(messages.map(lambda m: json.dumps(m, default=repr)),
                          messages.map(lambda m: msgpack.packb(m, use_bin_type=True, default=repr)),
                          st.text(max_size=100), st.binary(max_size=3000)), min_size=1, max_size=12))
def test_the_live_server_answers_any_frames_with_errors_not_crashes(server, subprotocol, frames):
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect
    events = []
    with connect(server.url, subprotocols=[subprotocol], open_timeout=30) as ws:
        try:
            for frame in frames:
                ws.send(frame)
            ws.send(Codec(subprotocol).encode({"type": "stop"}))
            while True:                  # until the server goes quiet or closes
                frame = ws.recv(timeout=1.5)
                events.append(json.loads(frame) if isinstance(frame, str) else msgpack.unpackb(frame))
        except (ConnectionClosed, TimeoutError):
            pass
    assert ws.close_code in (1000, 1008, 1009, None), (ws.close_code, ws.close_reason, events)
    assert not [e for e in events if e.get("code") == "internal"], events
