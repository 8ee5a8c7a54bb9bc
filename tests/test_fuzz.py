"""Property-based fuzzing of every inbound message path: whatever a client
sends, the answer is a ProtocolError (a clear error event) or a normal
result, never another exception; and a session's events keep their grammar."""

from __future__ import annotations

import json

import msgpack
import pytest
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lingting_server.wire.recognition import DecodeResult
from lingting_server.wire.errors import ProtocolError
from lingting_server.protocols.funasr import FunasrCodec
from lingting_server.text.postprocess import postprocess
from lingting_server.protocols.messages import parse_message
from lingting_server.wire import events
from lingting_server.wire.audio import ENCODINGS
from lingting_server.streaming.audio import AudioDecoder, AudioFormatError
from lingting_server.streaming.commands import Close, Decode, Send, Transcribe
from lingting_server.streaming.session import End, Session, State
from lingting_server.protocols.v1 import V1Codec
from lingting_testkit.synth import silence, to_s16, voice

FIELDS = ["type", "sample_rate", "encoding", "language", "partials", "partial_interval_ms", "endpointing",
          "word_timestamps", "hotwords", "watch", "itn", "itn_partials", "mode", "filename", "file_bytes",
          "silence_ms", "max_utterance_ms", "vad_aggressiveness", "data", "phrase", "boost"]
TYPES = ["start", "update", "audio", "flush", "clear", "keepalive", "stop", "sing", "", None]

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
        survives(lambda: V1Codec([subprotocol]).decode(frame))
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


VOICE, SILENCE = to_s16(voice(0.7)), to_s16(silence(0.7))
FILE_AUDIO = np.concatenate([voice(0.7), silence(0.8), voice(0.5)])
START = {"type": "start", "language": "en", "partial_interval_ms": 200, "watch": ["hold", "<number>"]}
texts = st.sampled_from(["", "hold", "T minus 10", "hold hold", "ten nine eight", "hello world"])
actions = st.one_of(
    st.just(("frame", json.dumps(START))),
    st.just(("frame", json.dumps({"type": "start", "mode": "offline", "watch": ["hold"]}))),
    st.sampled_from([("frame", VOICE), ("frame", SILENCE), ("frame", json.dumps({"type": "stop"})),
                     ("frame", json.dumps({"type": "flush"})), ("frame", json.dumps({"type": "clear"})),
                     ("frame", json.dumps({"type": "keepalive"})),
                     ("frame", json.dumps({"type": "update", "watch": ["abort"]}))]),
    messages.map(lambda m: ("frame", json.dumps(m, default=repr))),
    st.binary(max_size=700).map(lambda b: ("frame", b)),
    st.tuples(st.just("result"), st.integers(0, 5), texts, st.booleans()),
    st.sampled_from([("end", why) for why in End]),
)


def check_grammar(commands: list, offline: bool) -> None:
    """What any client may rely on, whatever it sent and however decodes went."""
    closes = [i for i, c in enumerate(commands) if isinstance(c, Close)]
    assert len(closes) <= 1 and closes == [len(commands) - 1][:len(closes)], commands
    wire = [c.event.to_wire() for c in commands if isinstance(c, Send)]
    json.dumps(wire)                                        # every event serializes
    kinds = [e["type"] for e in wire]
    assert set(kinds) <= events.TYPES
    if "ready" in kinds:
        assert kinds.count("ready") == 1 and [k for k in kinds if k != "error"][0] == "ready"
    else:
        assert set(kinds) <= {"error"}, kinds             # nothing happens before a start
    started, ended, finals, open_utterance = 0, 0, 0, None
    cleared: set[int] = set()
    for e in wire:
        if e["type"] == "speech_started":
            assert not offline and e["utterance"] == started and open_utterance is None
            started, open_utterance = started + 1, e["utterance"]
        elif e["type"] == "speech_ended":
            assert e["utterance"] == ended == open_utterance
            ended, open_utterance = ended + 1, None
        elif e["type"] == "cleared" and e["utterance"] is not None:     # it ends undecoded: no final
            assert e["utterance"] == ended == open_utterance
            ended, open_utterance = ended + 1, None
            cleared.add(e["utterance"])
        elif e["type"] == "partial":
            assert e["utterance"] == open_utterance and e["text"].startswith(e["stable_text"])
        elif e["type"] == "final":
            while finals in cleared:
                finals += 1
            assert e["utterance"] == finals and (offline or finals < ended)   # in order, after its end
            finals += 1
        elif e["type"] == "stopped":
            assert e["utterances"] == finals and closes    # the last final's index + 1
    if "stopped" in kinds:        # every final delivered: a normal close, or the server's reason for ending
        assert kinds[-1] == "stopped" and commands[-1].code in (1000, 1001, 1008)
    elif closes:
        assert commands[-1].code in (1001, 1008, 1011)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(actions, max_size=14))
def test_any_session_history_keeps_the_event_grammar_and_ends(steps):
    """Frames, decode results in any order (some failing), and the server's own
    ends, in any interleaving: the events keep their grammar, and once the
    client is gone and every decode is back, the stream is closed."""
    session = Session("fuzz", "m", ("en", "zh"), {"max_file_bytes": 10000}, max_errors=6)
    codec = V1Codec(["lingting.v1.json"])
    commands, pending = [], []

    def run(out):
        for command in out.commands:
            commands.append(command)
            if isinstance(command, Decode):
                pending.append(command.job)
            elif isinstance(command, Transcribe):      # the edge reads the file and feeds it back
                for step in (lambda: session.file_opened(2000), lambda: session.file_audio(FILE_AUDIO),
                             session.file_ended):
                    run(step())

    def resolve(index, text, fails):
        job = pending.pop(index % len(pending))
        recognized = postprocess(job.text, job.kind, DecodeResult(text, "en"))
        run(session.on_result(job, None if fails else recognized, "boom" if fails else None))

    for step in steps:
        if step[0] == "frame":
            try:
                messages = codec.decode(step[1])
            except ProtocolError as exc:
                run(session.reject(exc))
            else:
                for message in messages:
                    run(session.receive(message))
        elif step[0] == "result" and pending:
            resolve(*step[1:])
        elif step[0] == "end":
            run(session.end(step[1]))
    run(session.end(End.DISCONNECT))
    while pending:
        resolve(0, "hello", False)
    assert session.state is State.CLOSED and isinstance(commands[-1], Close)
    check_grammar(commands, session.offline)


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
            ws.send(V1Codec([subprotocol]).encode({"type": "stop"}))
            while True:                  # until the server goes quiet or closes
                frame = ws.recv(timeout=1.5)
                events.append(json.loads(frame) if isinstance(frame, str) else msgpack.unpackb(frame))
        except (ConnectionClosed, TimeoutError):
            pass
    assert ws.close_code in (1000, 1008, 1009, None), (ws.close_code, ws.close_reason, events)
    assert not [e for e in events if e.get("code") == "internal"], events
