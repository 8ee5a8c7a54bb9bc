"""Phone platforms against the real server and model: each platform's protocol
spoken as its documentation shows it, with real speech converted to what the
platform sends (8 kHz mu-law, L16, PCMU interleaved), two legs per call where
the platform has them. Checked: each leg's finals (WER), the speaker labels,
DTMF, the hangup, the tenant the call belongs to, and redaction down to the
bytes of the database file, its WAL and the server's log."""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
import struct
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import websockets

from lingting_testkit.corpus import error_rate, load_manifest
from lingting_testkit.phone import interleaved, leg, mulaw_packets, packets, s16
from lingting_testkit.servers import free_port, start_server, stop_server
from lingting_testkit.streams import drain

pytestmark = pytest.mark.e2e

CALLCENTER_KEY = "callcenter-" + "c" * 24
OTHER_KEY = "other-tenant-" + "o" * 24
AGENT, CUSTOMER = "en/fw_stereo_left.wav", "en/fw_stereo_right.wav"
DIGITS = "en/vosk_test_digits.wav"     # "one zero zero zero one, nine oh two one oh, zero one eight zero three"
MAX_WER = 0.15


def clip(name: str):
    return next(c for c in load_manifest() if c.file == name)


@pytest.fixture(scope="module")
def phone_server(shared_audio):
    audiosocket = free_port()
    running = start_server("--audiosocket-port", str(audiosocket), "--audiosocket-key", "callcenter",
                           "--audiosocket-options", json.dumps({"language": "en", "channel_labels": ["caller"]}),
                           "--log-level", "DEBUG",
                           env={"LINGTING_API_KEYS": f"callcenter:{CALLCENTER_KEY},other:{OTHER_KEY}"})
    running.audiosocket_port = audiosocket
    yield running
    stop_server(running)


def history(server, path: str, key: str = CALLCENTER_KEY):
    request = urllib.request.Request(server.http + "/v1/history" + path, headers={"X-API-Key": key})
    with urllib.request.urlopen(request, timeout=30) as r:
        body = r.read().decode()
    return json.loads(body) if path.split("?")[0].rsplit("/", 1)[-1] != "export" else body


def newest(server, subprotocol: str, key: str = CALLCENTER_KEY) -> dict:
    """The newest stored session of this platform, once it has ended."""
    for _ in range(200):
        for s in history(server, "/sessions?limit=20", key)["sessions"]:
            if s["client"].get("subprotocol") == subprotocol and s["ended_at"]:
                return history(server, f"/sessions/{s['id']}", key)
        time.sleep(0.1)
    raise AssertionError(f"no ended {subprotocol} session in history")


def said_by(session: dict, speaker: str) -> str:
    return " ".join(u["text"] for u in session["utterances"] if u["speaker"] == speaker and u["text"]).strip()


def check_legs(session: dict, legs: dict[str, str]) -> None:
    for speaker, name in legs.items():
        text = said_by(session, speaker)
        rate = error_rate([clip(name).transcript], [text], "en")
        print(f"{speaker}: WER {rate:.3f} {text!r}")
        assert rate <= MAX_WER, (speaker, text)


# ---- Twilio Media Streams ------------------------------------------------------
class TwilioCall:
    """Sends Twilio's messages as its docs show them: connected, then events numbered by sequenceNumber."""

    def __init__(self, ws, sid: str):
        self.ws, self.sid, self.seq = ws, sid, 0

    async def connected(self) -> None:
        await self.ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))

    async def send(self, event: str, **fields) -> None:
        self.seq += 1
        await self.ws.send(json.dumps({"event": event, "sequenceNumber": str(self.seq), "streamSid": self.sid,
                                       **fields}))


async def test_twilio_media_stream_with_both_tracks(phone_server):
    server = phone_server
    inbound = leg(clip(CUSTOMER).path, lead_s=0.0)
    outbound = leg(clip(AGENT).path, lead_s=4.0)
    sid, call = "MZ" + "1" * 32, "CA" + "2" * 32
    url = server.http.replace("http://", "ws://") + "/v1/twilio"
    async with websockets.connect(url) as ws:      # Twilio sends no key header: it is a <Parameter>
        twilio = TwilioCall(ws, sid)
        await twilio.connected()
        await twilio.send("start", start={
            "accountSid": "AC" + "3" * 32, "streamSid": sid, "callSid": call, "tracks": ["inbound", "outbound"],
            "customParameters": {"api_key": CALLCENTER_KEY, "language": "en"},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}})
        legs = {"inbound": mulaw_packets(inbound), "outbound": mulaw_packets(outbound)}
        for chunk in range(max(len(p) for p in legs.values())):
            for track, track_packets in legs.items():
                if chunk < len(track_packets):
                    await twilio.send("media", media={
                        "track": track, "chunk": str(chunk + 1), "timestamp": str(chunk * 20),
                        "payload": base64.b64encode(track_packets[chunk]).decode()})
            if chunk == 100:
                await twilio.send("dtmf", dtmf={"track": "inbound_track", "digit": "7"})
                await twilio.send("mark", mark={"name": "greeting played"})
        await twilio.send("stop", stop={"accountSid": "AC" + "3" * 32, "callSid": call})
        assert await drain(ws) == 1000          # every final decoded and stored first
    session = newest(server, "twilio")
    assert session["status"] == "stopped" and session["owner"] == "callcenter"
    assert session["client"]["call"] == {"streamSid": sid, "callSid": call}
    assert session["settings"]["channel_labels"] == ["inbound", "outbound"]
    check_legs(session, {"inbound": CUSTOMER, "outbound": AGENT})
    assert [(s["type"], s.get("digit"), s.get("speaker")) for s in session["signals"]] == [
        ("dtmf", "7", "inbound"), ("mark", None, None)]
    assert abs(session["signals"][0]["audio_ms"] - 2000) <= 100
    # Another tenant does not see the call.
    ids = [s["id"] for s in history(server, "/sessions?limit=50", OTHER_KEY)["sessions"]]
    assert session["id"] not in ids


async def test_twilio_without_a_key_is_refused_at_start(phone_server):
    url = phone_server.http.replace("http://", "ws://") + "/v1/twilio"
    async with websockets.connect(url) as ws:
        twilio = TwilioCall(ws, "MZ1")
        await twilio.connected()
        await twilio.send("start", start={
            "streamSid": "MZ1", "callSid": "CA1", "tracks": ["inbound"], "customParameters": {"api_key": "wrong" * 4},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}})
        assert await drain(ws) == 1008


# ---- Genesys AudioHook ------------------------------------------------------------
async def test_audiohook_stereo_call_with_ping_dtmf_and_close(phone_server):
    server = phone_server
    external = leg(clip(CUSTOMER).path)
    internal = leg(clip(AGENT).path, lead_s=4.0)
    frames = mulaw_packets(interleaved(external, internal), channels=2)
    session_id = str(uuid.uuid4())
    headers = {"X-API-KEY": CALLCENTER_KEY, "Audiohook-Organization-Id": str(uuid.uuid4()),
               "Audiohook-Correlation-Id": str(uuid.uuid4()), "Audiohook-Session-Id": session_id}
    url = server.http.replace("http://", "ws://") + "/v1/audiohook"
    async with websockets.connect(url, additional_headers=headers) as ws:
        seq, server_seq = 0, 0

        async def send(kind: str, parameters: dict, position: str = "PT0S") -> None:
            nonlocal seq
            seq += 1
            await ws.send(json.dumps({"version": "2", "id": session_id, "type": kind, "seq": seq,
                                      "serverseq": server_seq, "position": position, "parameters": parameters}))

        async def reply(kind: str) -> dict:
            nonlocal server_seq
            while True:
                message = json.loads(await ws.recv())
                assert message["seq"] == server_seq + 1 and message["id"] == session_id
                server_seq = message["seq"]
                if message["type"] == kind:
                    return message

        stereo = {"type": "audio", "format": "PCMU", "channels": ["external", "internal"], "rate": 8000}
        conversation, participant = str(uuid.uuid4()), str(uuid.uuid4())
        await send("open", {"organizationId": headers["Audiohook-Organization-Id"],
                            "conversationId": conversation,
                            "participant": {"id": participant, "ani": "+15551230000", "aniName": "Caller",
                                            "dnis": "+15559870000"},
                            "media": [stereo, {"type": "audio", "format": "PCMU", "channels": ["external"],
                                               "rate": 8000}],
                            "language": "en-US"})
        opened = await reply("opened")
        assert opened["clientseq"] == 1 and opened["parameters"] == {"startPaused": False, "media": [stereo]}
        for n, frame in enumerate(frames):
            await ws.send(frame)
            if n == 50:
                await send("ping", {}, "PT1S")
                assert (await reply("pong"))["clientseq"] == seq
                await send("dtmf", {"digit": "3"}, "PT1S")
        await send("close", {"reason": "end"}, f"PT{len(frames) * 0.02:.2f}S")
        closed_message = await reply("closed")
        assert closed_message["clientseq"] == seq
        assert await drain(ws) == 1000
    session = newest(server, "audiohook")
    assert session["settings"]["channel_labels"] == ["customer", "agent"] and session["language"] == "en"
    check_legs(session, {"customer": CUSTOMER, "agent": AGENT})
    assert [(s["type"], s["digit"], s["speaker"]) for s in session["signals"]] == [("dtmf", "3", "customer")]
    assert session["client"]["call"] == {"sessionId": session_id, "conversationId": conversation,
                                         "participantId": participant}


async def test_audiohook_messages_out_of_sequence_are_disconnected(phone_server):
    url = phone_server.http.replace("http://", "ws://") + "/v1/audiohook"
    async with websockets.connect(url, additional_headers={"X-API-KEY": CALLCENTER_KEY}) as ws:
        await ws.send(json.dumps({"version": "2", "id": "s", "type": "open", "seq": 1, "serverseq": 0,
                                  "parameters": {"media": [{"type": "audio", "format": "PCMU",
                                                            "channels": ["external"], "rate": 8000}]}}))
        assert json.loads(await ws.recv())["type"] == "opened"
        await ws.send(json.dumps({"version": "2", "id": "s", "type": "ping", "seq": 5, "serverseq": 1,
                                  "parameters": {}}))
        message = json.loads(await ws.recv())
        assert message["type"] == "disconnect" and message["parameters"]["reason"] == "error"
        assert "out of sequence" in message["parameters"]["info"]


# ---- FreeSWITCH mod_audio_fork -----------------------------------------------------
async def test_audio_fork_16k_mono_sends_events_back_and_keeps_the_call_on_hangup(phone_server):
    server = phone_server
    audio = leg(clip("en/jfk.wav").path, rate=16000)
    url = server.http.replace("http://", "ws://") + f"/v1/audio-fork?api_key={CALLCENTER_KEY}&uuid=fs-uuid-1"
    async with websockets.connect(url, subprotocols=["audio.drachtio.org"]) as ws:
        assert ws.subprotocol == "audio.drachtio.org"
        await ws.send(json.dumps({"sample_rate": 16000, "language": "en", "callId": "fs-call-1"}))
        for frame in packets(s16(audio), 16000, 2):
            await ws.send(frame)
        finals = []
        while not finals or said(finals).count(" ") < 15:       # events come back as mod_audio_fork::json text
            event = json.loads(await asyncio.wait_for(ws.recv(), 60))
            if event["type"] == "final":
                finals.append(event)
    # The hangup: FreeSWITCH closes the socket. What was said is stored.
    text = said(finals)
    assert error_rate([clip("en/jfk.wav").transcript], [text], "en") <= MAX_WER, text
    session = newest(server, "audio_fork")
    assert session["status"] == "disconnected" and session["owner"] == "callcenter"
    assert " ".join(u["text"] for u in session["utterances"]) == text
    assert session["client"]["call"] == {"uuid": "fs-uuid-1", "callId": "fs-call-1"}


def said(finals: list[dict]) -> str:
    return " ".join(f["text"] for f in finals if f["text"]).strip()


# ---- Asterisk AudioSocket ------------------------------------------------------------
async def test_audiosocket_call_with_dtmf_and_hangup(phone_server):
    server = phone_server
    call_id = uuid.uuid4()
    audio = leg(clip("en/leopard_test.wav").path)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.audiosocket_port)
    writer.write(struct.pack(">BH", 0x01, 16) + call_id.bytes)
    for n, frame in enumerate(packets(s16(audio), 8000, 2)):
        writer.write(struct.pack(">BH", 0x10, len(frame)) + frame)
        if n == 25:
            writer.write(struct.pack(">BH", 0x03, 1) + b"#")
        await writer.drain()
    writer.write(struct.pack(">BH", 0x00, 0))
    await writer.drain()
    # The server decodes the last utterance, stores it, then hangs up its side too.
    assert await asyncio.wait_for(reader.read(3), 60) == b"\x00\x00\x00"
    writer.close()
    session = newest(server, "audiosocket")
    assert session["status"] == "stopped" and session["owner"] == "callcenter"
    assert session["client"]["call"] == {"uuid": str(call_id)}
    check_legs(session, {"caller": "en/leopard_test.wav"})
    assert [(s["type"], s["digit"]) for s in session["signals"]] == [("dtmf", "#")]


# ---- Two channels in protocol v1 -----------------------------------------------------
async def test_two_channel_v1_stream_and_its_exports(phone_server):
    server = phone_server
    agent = leg(clip(AGENT).path, rate=16000, lead_s=0.3)
    customer = leg(clip(CUSTOMER).path, rate=16000, lead_s=6.0)
    data = s16(interleaved(agent, customer))
    async with websockets.connect(server.url, additional_headers={"X-API-Key": CALLCENTER_KEY}) as ws:
        await ws.send(json.dumps({"type": "start", "language": "en", "channels": 2,
                                  "channel_labels": ["agent", "customer"]}))
        ready = json.loads(await ws.recv())
        assert ready["channels"] == ["agent", "customer"]
        for frame in packets(data, 16000, 2, channels=2):
            await ws.send(frame)
        await ws.send(json.dumps({"type": "stop"}))
        events = []
        async for message in ws:
            events.append(json.loads(message))
    finals = [e for e in events if e["type"] == "final"]
    assert {f["speaker"] for f in finals} == {"agent", "customer"}
    assert all(f["channel"] == ("agent", "customer").index(f["speaker"]) for f in finals)
    for speaker, name in (("agent", AGENT), ("customer", CUSTOMER)):
        text = " ".join(f["text"] for f in finals if f["speaker"] == speaker)
        assert error_rate([clip(name).transcript], [text], "en") <= MAX_WER, text
    session_id = ready["session_id"]
    txt = history(server, f"/sessions/{session_id}/export?format=txt")
    lines = txt.strip().splitlines()
    assert lines[0].startswith("agent: ") and lines[-1].startswith("customer: "), lines
    srt_text = history(server, f"/sessions/{session_id}/export?format=srt")
    assert "agent: " in srt_text and "customer: " in srt_text
    assert srt_text.index("agent: ") < srt_text.index("customer: ")


# ---- Redaction --------------------------------------------------------------------------
async def test_redacted_digits_never_reach_the_database_its_wal_or_the_log(phone_server):
    server = phone_server
    audio = leg(clip(DIGITS).path)
    url = server.http.replace("http://", "ws://") + "/v1/twilio"
    sid, call, account = "MZ" + "9" * 32, "CA" + "9" * 32, "AC" + "9" * 32
    async with websockets.connect(url) as ws:
        twilio = TwilioCall(ws, sid)
        await twilio.connected()
        await twilio.send("start", start={
            "accountSid": account, "streamSid": sid, "callSid": call, "tracks": ["inbound"],
            "customParameters": {"api_key": CALLCENTER_KEY, "language": "en", "redact": "numbers,pci,ssn,phone"},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}})
        for n, frame in enumerate(mulaw_packets(audio)):
            await twilio.send("media", media={"track": "inbound", "chunk": str(n + 1), "timestamp": str(n * 20),
                                              "payload": base64.b64encode(frame).decode()})
            if n == 10:
                await twilio.send("dtmf", dtmf={"track": "inbound_track", "digit": "9"})
        await twilio.send("stop", stop={"accountSid": account, "callSid": call})
        assert await drain(ws) == 1000
    session = newest(server, "twilio")
    text = " ".join(u["text"] for u in session["utterances"])
    assert "[number]" in text and not any(ch.isdigit() for ch in text), text
    assert session["signals"][0]["digit"] is None and session["signals"][0]["redacted"] is True
    words = [w["word"] for u in session["utterances"] for w in (u["words"] or [])]
    assert not any(ch.isdigit() for w in words for ch in w), words
    # What the recognizer heard (unredacted) is nowhere in the bytes on disk or in the log.
    db = Path(server.history_db)
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    stored = b"".join(p.read_bytes() for p in (db, Path(str(db) + "-wal")) if p.exists())
    for secret in ("10001", "90210", "01803", "1 0 0 0 1", "one zero zero zero one", "nine oh two one"):
        assert secret.encode() not in stored, secret
        assert secret not in server.log_text(), secret


def test_platform_paths_take_websockets_only(phone_server):
    for path in ("/v1/twilio", "/v1/audiohook", "/v1/audio-fork"):
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(phone_server.http + path, timeout=30)
        assert info.value.code == 426 and json.loads(info.value.read())["error"] == "upgrade_required"
