import json
import re
from pathlib import Path

import msgpack
import pytest

from lingting_server.text.hotwords import Hotword
from lingting_server.wire.errors import ErrorCode, ProtocolError
from lingting_server.protocols.messages import MAX_MARK_CHARS, Audio, Dtmf, Flush, KeepAlive, Mark, Start, Stop, parse_message
from lingting_server.protocols.v1 import V1Codec
from lingting_server.protocols.start import START_OPTIONS


def error_of(fn, *args):
    with pytest.raises(ProtocolError) as info:
        fn(*args)
    return info.value


def test_start_defaults_and_fields():
    msg = parse_message({"type": "start", "sample_rate": 8000, "encoding": "mulaw", "language": "zh",
                         "partials": False, "endpointing": {"silence_ms": 300},
                         "hotwords": ["ComfyUI", {"phrase": "T minus", "boost": 2}]})
    assert isinstance(msg, Start)
    c = msg.config
    assert (c.sample_rate, c.encoding, c.language, c.partials) == (8000, "mulaw", "zh", False)
    assert c.endpointing.silence_ms == 300 and c.endpointing.max_utterance_ms == 20000
    assert c.hotwords == (Hotword("ComfyUI", 1.0), Hotword("T minus", 2.0))


@pytest.mark.parametrize("fields, code, words", [
    ({"sample_rate": 96000}, ErrorCode.UNSUPPORTED, "sample_rate 96000"),
    ({"sample_rate": 4000}, ErrorCode.UNSUPPORTED, "8000..48000"),
    ({"sample_rate": "16000"}, ErrorCode.INVALID_FIELD, "integer"),
    ({"encoding": "opus"}, ErrorCode.UNSUPPORTED, "encoding"),
    ({"language": "fr"}, ErrorCode.UNSUPPORTED, "language"),
    ({"partials": "yes"}, ErrorCode.INVALID_FIELD, "partials"),
    ({"endpointing": {"silence_ms": 5}}, ErrorCode.INVALID_FIELD, "silence_ms"),
    ({"endpointing": {"bogus": 1}}, ErrorCode.INVALID_FIELD, "bogus"),
    ({"samplerate": 16000}, ErrorCode.INVALID_FIELD, "samplerate"),
    ({"hotwords": ["x" * 200]}, ErrorCode.INVALID_FIELD, "hotword"),
    ({"hotwords": ["a"] * 101}, ErrorCode.INVALID_FIELD, "at most"),
])
def test_bad_start_fields(fields, code, words):
    err = error_of(parse_message, {"type": "start", **fields})
    assert err.code == code and words in err.message and not err.fatal


def test_docs_start_table_names_the_declared_fields():
    """docs/protocol.md's start table, with its offline example for the fields only a
    file takes, names exactly StartConfig's fields: a new option is documented."""
    doc = (Path(__file__).parents[1] / "docs" / "protocol.md").read_text()
    section = doc.split("### `start` (first message)")[1].split("\n### ")[0]
    table = re.findall(r"^\| `(\w+)` \|", section, re.M)      # endpointing.* rows are the map's fields
    offline = re.search(r'```json\n(\{"type": "start", "mode": "offline".*?\})\n```', section, re.S)
    assert len(table) == len(set(table)) and table
    assert (set(table) | set(json.loads(offline.group(1)))) - {"type"} == set(START_OPTIONS)


def test_simple_messages():
    assert isinstance(parse_message({"type": "flush"}), Flush)
    assert isinstance(parse_message({"type": "keepalive"}), KeepAlive)
    assert isinstance(parse_message({"type": "stop"}), Stop)


def test_json_codec():
    codec = V1Codec(["lingting.v1.json"])
    assert codec.negotiated == "lingting.v1.json"
    assert codec.decode(b"\x01\x02") == [Audio(b"\x01\x02")]
    assert error_of(codec.decode, "{not json").code == ErrorCode.BAD_MESSAGE
    assert error_of(codec.decode, "[1, 2]").code == ErrorCode.BAD_MESSAGE
    err = error_of(codec.decode, json.dumps({"type": "dance"}))
    assert err.code == ErrorCode.BAD_MESSAGE and "dance" in err.message
    assert json.loads(codec.encode({"type": "final", "text": "你好"})) == {"type": "final", "text": "你好"}


def test_msgpack_codec():
    codec = V1Codec(["realtime", "lingting.v1.msgpack"])
    assert codec.negotiated == codec.history_name == "lingting.v1.msgpack"
    assert codec.decode(msgpack.packb({"type": "audio", "data": b"\x00\x00"})) == [Audio(b"\x00\x00")]
    assert error_of(codec.decode, b"\xc1garbage").code == ErrorCode.BAD_MESSAGE
    assert error_of(codec.decode, "text frame").code == ErrorCode.BAD_MESSAGE
    assert error_of(codec.decode, msgpack.packb({"type": "audio", "data": "str"})).code == ErrorCode.INVALID_FIELD
    assert msgpack.unpackb(codec.encode({"type": "stopped"})) == {"type": "stopped"}


def test_no_subprotocol_means_json():
    codec = V1Codec([])
    assert codec.negotiated is None and codec.history_name == "lingting.v1.json" and not codec.msgpack


def test_update_and_watch_messages():
    from lingting_server.protocols.messages import Update
    msg = parse_message({"type": "update", "hotwords": ["Lingting"], "watch": ["hold", "T minus <number>"]})
    assert isinstance(msg, Update)
    assert [h.phrase for h in msg.hotwords] == ["Lingting"]
    assert [w.phrase for w in msg.watch] == ["hold", "T minus <number>"]
    assert parse_message({"type": "update", "watch": []}).hotwords is None
    assert error_of(parse_message, {"type": "update"}).code == ErrorCode.INVALID_FIELD
    assert error_of(parse_message, {"type": "update", "watch": ["x" * 65]}).code == ErrorCode.INVALID_FIELD
    assert error_of(parse_message, {"type": "start", "watch": "hold"}).code == ErrorCode.INVALID_FIELD
    assert error_of(parse_message, {"type": "start", "watch": ["   "]}).code == ErrorCode.INVALID_FIELD


# ---- telephony signals (issue 34.6): every codec's DTMF keys and marks are checked here
@pytest.mark.parametrize("digit", list("0123456789*#ABCD"))
def test_dtmf_digits_are_the_sixteen_keys(digit):
    assert Dtmf(digit, 1).digit == digit


@pytest.mark.parametrize("digit", ["", "12", "x", "a", "\x00", "5" * 262144, "\ufffd"])
def test_dtmf_other_than_one_key_is_refused(digit):
    error = error_of(Dtmf, digit)
    assert error.code == ErrorCode.INVALID_FIELD and not error.fatal and "0-9, *, #, A-D" in error.message


def test_mark_names_are_short_printable_text():
    assert Mark("greeting played").name == "greeting played"
    assert Mark("\u64ad\u653e\u5b8c\u6bd5 " + "x" * (MAX_MARK_CHARS - 5)).name    # any script, up to the limit
    for name in ("", "x" * (MAX_MARK_CHARS + 1), "x" * 262144, "a\x00b", "line\nbreak"):
        error = error_of(Mark, name)
        assert error.code == ErrorCode.INVALID_FIELD and not error.fatal and f"{MAX_MARK_CHARS}" in error.message


def test_v1_takes_no_dtmf_or_mark_messages():
    for kind in ("dtmf", "mark"):
        assert error_of(parse_message, {"type": kind, "digit": "1", "name": "x"}).code == ErrorCode.BAD_MESSAGE
