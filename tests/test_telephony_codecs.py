"""The phone platforms' codecs, sans I/O: their documented messages in, Lingting messages out."""

import base64
import json
import struct
import uuid

import pytest

from lingting_server.protocols.codec import MAX_CALL_ID_CHARS, Codec
from lingting_server.wire.errors import ErrorCode, ProtocolError
from lingting_server.protocols.funasr import FunasrCodec
from lingting_server.protocols.openai_realtime import RealtimeCodec
from lingting_server.protocols.messages import Audio, Dtmf, KeepAlive, Mark, Start, Stop, Update
from lingting_server.wire import events
from lingting_server.protocols.telephony.audio_fork import AudioForkCodec
from lingting_server.protocols.telephony.audiohook import AudioHookCodec
from lingting_server.protocols.telephony.audiosocket import AudioSocketCodec
from lingting_server.protocols.telephony.options import call_options
from lingting_server.protocols.telephony.twilio import TwilioCodec
from lingting_server.protocols.v1 import V1Codec


@pytest.mark.parametrize("codec", [V1Codec(), FunasrCodec(), RealtimeCodec("s1", ("whisper-1",)), TwilioCodec(),
                                   AudioHookCodec(), AudioForkCodec({}), AudioSocketCodec({})],
                         ids=lambda codec: type(codec).__name__)
def test_every_codec_keeps_the_contract(codec):
    assert isinstance(codec, Codec)
    assert codec.greeting() == [] or type(codec) is RealtimeCodec
    assert codec.api_key is None and codec.call == {} and isinstance(codec.history_name, str)


@pytest.mark.parametrize("make, offered, negotiated, history_name", [
    (V1Codec, [], None, "lingting.v1.json"),
    (V1Codec, ["lingting.v1.msgpack", "lingting.v1.json"], "lingting.v1.json", "lingting.v1.json"),
    (V1Codec, ["lingting.v1.msgpack"], "lingting.v1.msgpack", "lingting.v1.msgpack"),
    (FunasrCodec, [], None, "binary"),
    (FunasrCodec, ["binary"], "binary", "binary"),
    (lambda offered: RealtimeCodec("s1", ("whisper-1",), offered), ["realtime"], "realtime", "openai.realtime"),
    (lambda offered: AudioForkCodec({}, offered), ["audio.drachtio.org"], "audio.drachtio.org", "audio_fork"),
    (lambda offered: AudioForkCodec({}, offered), [], None, "audio_fork"),
])
def test_negotiated_subprotocol_and_history_name(make, offered, negotiated, history_name):
    codec = make(offered)
    assert (codec.negotiated, codec.history_name) == (negotiated, history_name)


def twilio_start(**start):
    return json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": "MZ1", "start": {
        "streamSid": "MZ1", "callSid": "CA1", "tracks": ["inbound", "outbound"],
        "customParameters": {"api_key": "k" * 20, "language": "en", "hotwords": "Contoso, Premium Plus",
                             "itn": "false", "caller_name": "ignored"},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}, **start}})


def test_twilio_start_media_dtmf_mark_stop():
    codec = TwilioCodec()
    assert codec.decode(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})) == []
    (start,) = codec.decode(twilio_start())
    config = start.config
    assert (config.encoding, config.sample_rate, config.channels, config.channel_labels) == \
        ("mulaw", 8000, 2, ("inbound", "outbound"))
    assert [h.phrase for h in config.hotwords] == ["Contoso", "Premium Plus"] and config.itn is False
    assert codec.api_key == "k" * 20 and codec.call == {"streamSid": "MZ1", "callSid": "CA1"}
    payload = base64.b64encode(b"\xff" * 160).decode()
    media = {"event": "media", "sequenceNumber": "2", "streamSid": "MZ1",
             "media": {"track": "outbound", "chunk": "1", "timestamp": "5", "payload": payload}}
    assert codec.decode(json.dumps(media)) == [Audio(b"\xff" * 160, 1)]
    dtmf = {"event": "dtmf", "streamSid": "MZ1", "sequenceNumber": "3", "dtmf": {"track": "inbound_track", "digit": "1"}}
    assert codec.decode(json.dumps(dtmf)) == [Dtmf("1", 0)]
    assert codec.decode(json.dumps({"event": "mark", "mark": {"name": "m1"}})) == [Mark("m1")]
    assert codec.decode(json.dumps({"event": "stop", "stop": {}})) == [Stop(reason="hangup")]
    assert codec.encode_all(events.Stopped(1, 1000)) == []


@pytest.mark.parametrize("frame, code", [
    (b"\x00", ErrorCode.BAD_MESSAGE),
    (json.dumps({"event": "media", "media": {"track": "inbound", "payload": "%%"}}), ErrorCode.BAD_AUDIO),
    (json.dumps({"event": "media", "media": {"track": "sideways", "payload": ""}}), ErrorCode.BAD_MESSAGE),
    (json.dumps({"event": "dance"}), ErrorCode.BAD_MESSAGE),
])
def test_twilio_bad_messages(frame, code):
    codec = TwilioCodec()
    codec.decode(twilio_start(tracks=["inbound"]))
    with pytest.raises(ProtocolError) as info:
        codec.decode(frame)
    assert info.value.code == code


def test_twilio_refuses_other_media_formats():
    with pytest.raises(ProtocolError) as info:
        TwilioCodec().decode(twilio_start(mediaFormat={"encoding": "audio/opus", "sampleRate": 48000}))
    assert info.value.code == ErrorCode.UNSUPPORTED and info.value.fatal


def audiohook(kind, seq, **parameters):
    return json.dumps({"version": "2", "id": "sess-1", "type": kind, "seq": seq, "serverseq": seq - 1,
                       "position": "PT0S", "parameters": parameters})


STEREO = {"type": "audio", "format": "PCMU", "channels": ["external", "internal"], "rate": 8000}
MONO = {"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 8000}


def test_audiohook_open_chooses_both_parties_and_numbers_its_messages():
    codec = AudioHookCodec()
    (start,) = codec.decode(audiohook("open", 1, media=[MONO, STEREO], language="en-US",
                                      customConfig={"redact": ["pci"]}, inputVariables={"hotwords": "Contoso"}))
    config = start.config
    assert (config.channels, config.channel_labels, config.language) == (2, ("customer", "agent"), "en")
    assert config.redact == {"pci"} and [h.phrase for h in config.hotwords] == ["Contoso"]
    (opened,) = codec.encode_all(events.Ready("s", "m", "stream", "en", {}, 8000, "mulaw"))
    assert json.loads(opened) == {"version": "2", "type": "opened", "seq": 1, "clientseq": 1, "id": "sess-1",
                                  "parameters": {"startPaused": False, "media": [STEREO]}}
    assert codec.decode(b"\xff" * 320) == [Audio(b"\xff" * 320)]
    assert codec.decode(audiohook("ping", 2)) == [KeepAlive(reply=True)]
    assert json.loads(codec.encode_all(events.Pong())[0])["type"] == "pong"
    assert codec.decode(audiohook("paused", 3)) == []
    assert codec.decode(audiohook("dtmf", 4, digit="5")) == [Dtmf("5", 0)]
    assert codec.call == {"sessionId": "sess-1"}
    assert codec.decode(audiohook("close", 5, reason="end")) == [Stop(reason="hangup")]
    (closed,) = codec.encode_all(events.Stopped(1, 1000))
    assert json.loads(closed)["type"] == "closed" and json.loads(closed)["seq"] == 3 and json.loads(closed)["clientseq"] == 5


def test_audiohook_call_ids_are_the_session_conversation_and_participant():
    codec = AudioHookCodec()
    codec.decode(audiohook("open", 1, media=[MONO], conversationId="conv-1",
                           participant={"id": "part-1", "ani": "tel:+15551234567", "dnis": "tel:+18005550100"}))
    # The participant's phone numbers stay out: history keeps ids, not numbers.
    assert codec.call == {"sessionId": "sess-1", "conversationId": "conv-1", "participantId": "part-1"}


def test_call_ids_are_strings_and_bounded():
    codec = AudioForkCodec({"uuid": "u" * 1000})
    codec.decode(json.dumps({"callId": 42}))
    assert codec.call == {"uuid": "u" * MAX_CALL_ID_CHARS}


def test_audiohook_refusals():
    codec = AudioHookCodec()
    with pytest.raises(ProtocolError) as info:
        codec.decode(audiohook("open", 1, media=[{"type": "audio", "format": "opus", "channels": ["external"]}]))
    assert info.value.code == ErrorCode.UNSUPPORTED
    codec = AudioHookCodec()
    with pytest.raises(ProtocolError) as info:
        codec.decode(audiohook("ping", 1))
    assert info.value.code == ErrorCode.NOT_STARTED
    codec = AudioHookCodec()
    codec.decode(audiohook("open", 1, media=[MONO]))
    with pytest.raises(ProtocolError) as info:
        codec.decode(audiohook("ping", 3))
    assert "out of sequence" in info.value.message and info.value.fatal
    (disconnect,) = codec.encode_all(events.Error("bad_message", "out of sequence", fatal=True))
    assert json.loads(disconnect)["parameters"]["reason"] == "error"


def test_audio_fork_metadata_or_url_starts_the_call():
    codec = AudioForkCodec({"sample_rate": "16000", "channels": "2", "uuid": "fs-uuid"})
    (start,) = codec.decode(json.dumps({"language": "en", "watch": ["refund"], "callId": "x"}))
    assert codec.call == {"uuid": "fs-uuid", "callId": "x"}
    assert (start.config.sample_rate, start.config.channels, start.config.channel_labels) == (16000, 2, ("caller", "callee"))
    assert codec.decode(b"\x00" * 4) == [Audio(b"\x00" * 4)]
    (update,) = codec.decode(json.dumps({"hotwords": ["Contoso"]}))
    assert isinstance(update, Update) and [h.phrase for h in update.hotwords] == ["Contoso"] and update.watch is None
    assert codec.decode(json.dumps({"note": "anything else"})) == []
    # No metadata: the first audio starts the call from the URL alone (8 kHz mono unless it says).
    start, audio = AudioForkCodec({"mix_type": "stereo"}).decode(b"\x00" * 8)
    assert (start.config.sample_rate, start.config.channels) == (8000, 2) and audio == Audio(b"\x00" * 8)
    wire = json.loads(codec.encode_all(events.Stopped(0, 0))[0])
    assert wire == {"type": "stopped", "utterances": 0, "audio_ms": 0}


def packet(kind: int, payload: bytes = b"") -> bytes:
    return struct.pack(">BH", kind, len(payload)) + payload


def test_audiosocket_packets_across_reads():
    codec = AudioSocketCodec({"language": "en"})
    call = uuid.uuid4()
    stream = packet(0x01, call.bytes) + packet(0x12, b"\x01\x00" * 160) + packet(0x03, b"9") + packet(0x00)
    out = []
    for i in range(0, len(stream), 7):           # TCP may cut anywhere
        out += codec.decode(stream[i:i + 7])
    start, audio, dtmf, stop = out
    assert isinstance(start, Start) and start.config.sample_rate == 16000 and start.config.language == "en"
    assert audio == Audio(b"\x01\x00" * 160) and dtmf == Dtmf("9") and stop == Stop(reason="hangup")
    assert codec.call_id == str(call) and codec.call == {"uuid": str(call)}


def test_audiosocket_refusals():
    with pytest.raises(ProtocolError) as info:
        AudioSocketCodec({}).decode(packet(0x10, b"\x00\x00"))
    assert info.value.code == ErrorCode.NOT_STARTED and info.value.fatal
    codec = AudioSocketCodec({})
    codec.decode(packet(0x01, uuid.uuid4().bytes) + packet(0x10, b"\x00\x00"))
    with pytest.raises(ProtocolError) as info:
        codec.decode(packet(0x16, b"\x00\x00"))
    assert "48000 Hz after 8000 Hz" in info.value.message
    with pytest.raises(ProtocolError):
        codec.decode(packet(0x42, b"?"))
    # A call that hangs up before any audio still gets its session, then stops.
    codec = AudioSocketCodec({})
    start, stop = codec.decode(packet(0x01, uuid.uuid4().bytes) + packet(0xFF, b"\x01"))
    assert isinstance(start, Start) and stop == Stop(reason="hangup")


def test_call_options_from_platform_strings():
    assert call_options({"language": "zh-CN", "redact": "pci, ssn", "partials": "true", "other": 1}, "x") == \
        {"language": "zh", "redact": ["pci", "ssn"], "partials": True}


# ---- issue 34: wrong field types, Twilio's signature, keys before audio ----------
WRONG_TYPES = [None, 1, 1.5, True, "x", [], ["x"], {}, {"a": 1}]


def with_field(message: dict, path: tuple, value) -> dict:
    """A copy of a message with the field at path set to value."""
    out = json.loads(json.dumps(message))
    node = out
    for name in path[:-1]:
        node = node[name]
    node[path[-1]] = value
    return out


def field_paths(message: dict, prefix: tuple = ()):
    for name, value in message.items():
        yield (*prefix, name)
        if isinstance(value, dict):
            yield from field_paths(value, (*prefix, name))


def only_protocol_errors(decode, frames) -> None:
    """Whatever the types, a codec answers with messages or a ProtocolError: never a TypeError."""
    for frame in frames:
        try:
            decode(json.dumps(frame) if not isinstance(frame, bytes) else frame)
        except ProtocolError:
            pass


def test_codecs_answer_wrong_field_types_with_protocol_errors():
    twilio = json.loads(twilio_start())
    media = {"event": "media", "media": {"track": "inbound", "payload": "AAAA"}}
    for base in (twilio, media, {"event": "dtmf", "dtmf": {"track": "inbound", "digit": "1"}},
                 {"event": "mark", "mark": {"name": "m"}}):
        for path in field_paths(base):
            for value in WRONG_TYPES:
                codec = TwilioCodec()
                only_protocol_errors(codec.decode, [] if base is twilio else [twilio])
                only_protocol_errors(codec.decode, [with_field(base, path, value)])
    opened = json.loads(audiohook("open", 1, media=[STEREO], customConfig={"language": "en"}))
    dtmf = json.loads(audiohook("dtmf", 2, digit="1"))
    for base in (opened, dtmf):
        for path in [*field_paths(base), ("parameters", "media", 0)]:
            for value in WRONG_TYPES:
                codec = AudioHookCodec()
                if base is dtmf:
                    codec.decode(json.dumps(opened))
                frame = with_field(base, path, value) if path[-1] != 0 else with_field(
                    base, ("parameters", "media"), [value])
                only_protocol_errors(codec.decode, [frame])
    for name in ("sample_rate", "sampleRate", "channels", "mix_type", "language", "hotwords", "redact"):
        for value in WRONG_TYPES:
            only_protocol_errors(AudioForkCodec({}).decode, [{name: value}])
            try:
                AudioForkCodec({name: value}).decode(b"\x00\x00")
            except ProtocolError:
                pass


def test_a_twilio_open_with_a_wrong_type_says_which_field():
    with pytest.raises(ProtocolError) as info:
        TwilioCodec().decode(twilio_start(mediaFormat={"encoding": ["audio/x-mulaw"], "sampleRate": 8000}))
    assert info.value.fatal and "mediaFormat" in info.value.message
    with pytest.raises(ProtocolError) as info:
        AudioHookCodec().decode(audiohook("open", 1, media=[{**MONO, "format": ["PCMU"]}]))
    assert info.value.fatal and info.value.code == ErrorCode.UNSUPPORTED
    with pytest.raises(ProtocolError) as info:
        AudioForkCodec({"sample_rate": ["8000"]}).decode(b"\x00\x00")
    assert info.value.fatal and "sample_rate" in info.value.message


def test_twilio_signature_is_the_documented_hmac_of_the_wss_url():
    from twilio.request_validator import RequestValidator
    from lingting_server.protocols.telephony.twilio import signed_by_twilio
    token = "12345678901234567890123456789012"
    url = "wss://lingting.example.com/v1/twilio"
    sig = RequestValidator(token).compute_signature(url, {})       # what Twilio's own library computes
    assert signed_by_twilio(token, "lingting.example.com", "/v1/twilio", sig)
    assert signed_by_twilio(token, "lingting.example.com:443", "/v1/twilio", sig)
    assert not signed_by_twilio(token, "lingting.example.com", "/v1/twilio", None)
    assert not signed_by_twilio(token, "lingting.example.com", "/v1/other", sig)
    assert not signed_by_twilio("another-token-000000000000000000", "lingting.example.com", "/v1/twilio", sig)


def test_audiosocket_keys_before_the_first_audio_wait_for_its_rate():
    codec = AudioSocketCodec({})
    assert codec.decode(packet(0x01, uuid.uuid4().bytes) + packet(0x03, b"1") + packet(0x03, b"2")) == []
    start, one, two, audio = codec.decode(packet(0x12, b"\x00\x00" * 160))
    assert start.config.sample_rate == 16000 and (one, two) == (Dtmf("1"), Dtmf("2"))
    assert audio == Audio(b"\x00\x00" * 160)
    # A call keyed and hung up before any audio still gets its session, with its keys.
    codec = AudioSocketCodec({})
    start, key, stop = codec.decode(packet(0x01, uuid.uuid4().bytes) + packet(0x03, b"#") + packet(0x00))
    assert isinstance(start, Start) and key == Dtmf("#") and stop == Stop(reason="hangup")
    # Held keys are bounded.
    codec = AudioSocketCodec({})
    out = codec.decode(packet(0x01, uuid.uuid4().bytes) + packet(0x03, b"5") * 1000 + packet(0x10, b"\x00\x00"))
    assert sum(isinstance(m, Dtmf) for m in out) == 32
