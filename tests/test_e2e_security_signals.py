"""Issue 34.6 against a real server over real sockets: a tenant's phone calls flood
Twilio marks and DTMF (huge names, keys that are not keys, more than a call may keep)
while another tenant streams. The bad ones are refused, a call keeps --max-signals of
them, its transcription goes on, and the other tenant's stream and history are as
they would be without the flood."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
import urllib.request

import pytest
import websockets

from lingting_client import LingtingClient, StreamOptions
from lingting_server.protocols.messages import MAX_MARK_CHARS
from lingting_server.streaming.session import MAX_SIGNALS
from lingting_testkit.phone import leg, mulaw_packets
from lingting_testkit.servers import start_server, stop_server
from lingting_testkit.streams import drain, wav_pcm

pytestmark = pytest.mark.e2e
ALPHA = "alpha-" + "a" * 24
BETA = "beta-" + "b" * 24
BAD = [("mark", {"name": "x" * 262144}), ("mark", {"name": "a\x00b"}), ("mark", {"name": ""}),
       ("dtmf", {"digit": "12"}), ("dtmf", {"digit": "x"}), ("dtmf", {"digit": "5" * 65536})]


@pytest.fixture(scope="module")
def server():
    running = start_server("--model", "whisper-tiny.en", "--max-connections-per-ip", "100",
                           env={"LINGTING_API_KEYS": f"alpha:{ALPHA},beta:{BETA}"})
    yield running
    stop_server(running)


def get(server, path: str, key: str | None = None):
    request = urllib.request.Request(server.http + path, headers={"X-API-Key": key} if key else {})
    with urllib.request.urlopen(request, timeout=30) as r:
        body = r.read().decode()
    return body if path == "/metrics" else json.loads(body)


def errors_by_code(server) -> dict[str, float]:
    return {code: float(n) for code, n in
            re.findall(r'^lingting_errors_total\{code="(\w+)"\} (\S+)$', get(server, "/metrics"), re.M)}


async def flooding_call(server, sid: str, speech) -> int | None:
    """A Twilio call whose app sends every bad signal, then more marks than a call keeps, between its audio."""
    async with websockets.connect(server.http.replace("http://", "ws://") + "/v1/twilio",
                                  max_size=None) as ws:
        seq = 0

        async def send(event: str, **fields) -> None:
            nonlocal seq
            seq += 1
            await ws.send(json.dumps({"event": event, "sequenceNumber": str(seq), "streamSid": sid, **fields}))

        await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await send("start", start={"streamSid": sid, "callSid": "CA" + sid[2:], "tracks": ["inbound"],
                                   "customParameters": {"api_key": ALPHA, "language": "en"},
                                   "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}})
        for kind, body in BAD:
            await send(kind, **{kind: body})
        marks = iter(range(MAX_SIGNALS + 100))
        for chunk, packet in enumerate(mulaw_packets(speech)):
            await send("media", media={"track": "inbound", "chunk": str(chunk + 1), "timestamp": str(chunk * 20),
                                       "payload": base64.b64encode(packet).decode()})
            for n in [next(marks, None) for _ in range(3)]:
                if n is not None:
                    await send("mark", mark={"name": f"m{n}:" + "x" * (MAX_MARK_CHARS - 6)})
        for n in marks:
            await send("mark", mark={"name": f"m{n}"})
        await send("stop", stop={"callSid": "CA" + sid[2:]})
        return await drain(ws)


async def other_tenant(server, pcm: bytes) -> tuple[float, list[dict]]:
    """Beta's stream: how long its `ready` took (its session stored first), and its events."""
    started = time.monotonic()
    ready_after, got = None, []
    async for event in LingtingClient(server.url, api_key=BETA).stream(pcm, StreamOptions(language="en", speed=1)):
        if event["type"] == "ready":
            ready_after = time.monotonic() - started
        got.append(event)
    return ready_after, got


async def test_a_flood_of_signals_is_capped_and_slows_no_other_tenant(server, shared_audio):
    before = errors_by_code(server)
    speech = leg(shared_audio / "en" / "jfk.wav")
    calls = [flooding_call(server, f"MZ{n:032d}", speech) for n in range(4)]
    codes, (ready_after, beta_events) = await asyncio.gather(asyncio.gather(*calls),
                                                             other_tenant(server, wav_pcm(
                                                                 shared_audio / "en" / "ps_goforward.wav")))
    assert codes == [1000] * 4                         # each call ended as a hangup does, every final stored
    print(f"beta: ready after {ready_after * 1000:.0f} ms while 4 calls flooded signals")

    # Beta's stream went as usual, and history holds it.
    beta_finals = [e["text"] for e in beta_events if e["type"] == "final" and e["text"]]
    assert beta_finals and not [e for e in beta_events if e["type"] == "error"]
    (beta_session,) = get(server, "/v1/history/sessions?limit=50", BETA)["sessions"]
    assert beta_session["signals"] == [] and beta_session["utterances"] == len(beta_finals)

    # Each call kept its transcript and exactly --max-signals well-formed signals, in order.
    calls = get(server, "/v1/history/sessions?limit=50", ALPHA)["sessions"]
    assert len(calls) == 4
    for listed in calls:
        session = get(server, f"/v1/history/sessions/{listed['id']}", ALPHA)
        assert session["utterances"] and "country" in " ".join(u["text"] for u in session["utterances"]).lower()
        numbers = [int(s["name"][1:].split(":")[0]) for s in session["signals"]]
        assert numbers == list(range(MAX_SIGNALS))                  # the first ones, in the order they came
        assert all(s["type"] == "mark" and 0 < len(s["name"]) <= MAX_MARK_CHARS for s in session["signals"])
        assert listed["signals"] == session["signals"]          # the list shows what the session holds

    # Each bad signal was a non-fatal invalid_field, each call's cap one too_large.
    after = errors_by_code(server)
    assert after.get("invalid_field", 0) - before.get("invalid_field", 0) == 4 * len(BAD)
    assert after.get("too_large", 0) - before.get("too_large", 0) == 4
    assert get(server, "/health")["status"] == "ok"
