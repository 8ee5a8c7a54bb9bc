"""The phone platforms through the edge in this process, on real sockets, with
the recording engine: each call's ids reach history (client.call) with the
platform's protocol name, whatever the platform."""

from __future__ import annotations

import asyncio
import base64
import json

import httpx
import numpy as np
import websockets

from lingting_testkit.inprocess import edge_server
from lingting_testkit.phone import mulaw_packets, packets
from lingting_testkit.synth import silence, to_s16, voice

SPEECH = np.concatenate([voice(0.8), silence(1.0)])        # 16 kHz: one utterance, so history keeps the session


async def stored_call(http: httpx.AsyncClient, history_name: str) -> dict:
    """client.call of the ended session this platform made."""
    for _ in range(100):
        sessions = (await http.get("/v1/history/sessions")).json()["sessions"]
        ended = [s for s in sessions if s["client"]["subprotocol"] == history_name and s["ended_at"]]
        if ended:
            return ended[0]["client"].get("call")
        await asyncio.sleep(0.05)
    raise AssertionError(f"no ended {history_name} session in history")


def audiohook(kind: str, seq: int, **parameters) -> str:
    return json.dumps({"version": "2", "id": "ah-session-1", "type": kind, "seq": seq, "serverseq": seq - 1,
                       "position": "PT0S", "parameters": parameters})


async def audiohook_call(ws) -> None:
    await ws.send(audiohook("open", 1, conversationId="conv-1", participant={"id": "part-1", "ani": "tel:+15551234"},
                            media=[{"type": "audio", "format": "L16", "channels": ["external"], "rate": 16000}]))
    assert json.loads(await ws.recv())["type"] == "opened"
    for packet in packets(to_s16(SPEECH), 16000, 2):
        await ws.send(packet)
    await ws.send(audiohook("close", 2, reason="end"))
    while json.loads(await ws.recv())["type"] != "closed":
        pass


async def audio_fork_call(ws) -> None:
    await ws.send(json.dumps({"callId": "fs-call-1"}))
    for packet in packets(to_s16(SPEECH), 16000, 2):
        await ws.send(packet)
    await asyncio.sleep(0.3)       # FreeSWITCH ends a call by closing: the open utterance is still stored


async def twilio_call(ws) -> None:
    await ws.send(json.dumps({"event": "start", "streamSid": "MZ1", "start": {
        "streamSid": "MZ1", "callSid": "CA1", "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}))
    for packet in mulaw_packets(SPEECH[::2]):
        await ws.send(json.dumps({"event": "media", "media": {"track": "inbound",
                                                              "payload": base64.b64encode(packet).decode()}}))
    await ws.send(json.dumps({"event": "stop", "stop": {}}))
    await ws.wait_closed()


async def test_every_platforms_call_ids_reach_history(tmp_path):
    calls = [("/v1/audiohook", None, audiohook_call, "audiohook",
              {"sessionId": "ah-session-1", "conversationId": "conv-1", "participantId": "part-1"}),
             ("/v1/audio-fork?sample_rate=16000&uuid=fs-uuid-1", "audio.drachtio.org", audio_fork_call, "audio_fork",
              {"uuid": "fs-uuid-1", "callId": "fs-call-1"}),
             ("/v1/twilio", None, twilio_call, "twilio", {"streamSid": "MZ1", "callSid": "CA1"})]
    async with edge_server(history_path=str(tmp_path / "h.sqlite3")) as edge:
        async with httpx.AsyncClient(base_url=edge.http, timeout=30) as http:
            for path, subprotocol, call, history_name, ids in calls:
                async with websockets.connect(edge.ws + path, subprotocols=[subprotocol] if subprotocol else None,
                                              max_size=None) as ws:
                    assert ws.subprotocol == subprotocol
                    await call(ws)
                assert await stored_call(http, history_name) == ids, history_name
