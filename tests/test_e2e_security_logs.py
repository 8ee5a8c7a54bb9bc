"""No secret in the server's log (issue 34.10), against a real server at
DEBUG (where uvicorn logs paths with their queries and websockets logs every
frame): an API key in ?api%5Fkey=, a viewer token in ?token=, a Twilio call's
api_key customParameter, webhook secrets (the server's and a stream's), a
token in a --webhook URL, and a database password in a URL that fails."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys

import pytest
import websockets

from lingting_testkit.receivers import Receivers
from lingting_testkit.servers import REPO, free_port, start_server, stop_server

pytestmark = pytest.mark.e2e
KEY = "agents-" + "k" * 28
SERVER_SECRET = "server-hook-secret-" + "s" * 20
STREAM_SECRET = "stream-hook-secret-" + "t" * 20
HOOK_TOKEN = "hook-url-token-" + "u" * 20
PASSWORD = "db-password-" + "p" * 20


def leaked(log: str, *secrets: str) -> list[str]:
    """Each secret found, whole or its last 19 characters (websockets elides a frame's middle)."""
    return [s for s in secrets if s in log or s[-19:] in log]


async def speak_and_watch(server, hook_url: str) -> str:
    """A stream keyed by ?api%5Fkey= into a room with a webhook of its own, a
    viewer by ?token=; then a Twilio call keyed by its customParameters. Its
    viewer token (a secret too)."""
    ws_base = server.http.replace("http://", "ws://")
    async with websockets.connect(f"{server.url}?api%5Fkey={KEY}") as speaker:
        await speaker.send(json.dumps({"type": "start", "language": "en", "room": "hall",
                                       "webhooks": [{"url": hook_url, "secret": STREAM_SECRET}]}))
        ready = json.loads(await speaker.recv())
        assert ready["type"] == "ready", ready
        token = ready["viewer_token"]
        async with websockets.connect(f"{ws_base}/v1/rooms/hall/events?token={token}") as viewer:
            assert json.loads(await viewer.recv())["type"] == "room"
            await speaker.send(b"\x00\x00" * 16000)
            await speaker.send(json.dumps({"type": "stop"}))
            async for message in speaker:
                if isinstance(message, str) and json.loads(message)["type"] == "closed":
                    break
    async with websockets.connect(f"{ws_base}/v1/twilio") as call:
        sid = "MZ" + "1" * 32
        await call.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await call.send(json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": sid, "start": {
            "accountSid": "AC" + "3" * 32, "streamSid": sid, "callSid": "CA" + "2" * 32, "tracks": ["inbound"],
            "customParameters": {"api_key": KEY, "language": "en"},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}))
        for n in range(10):
            await call.send(json.dumps({"event": "media", "sequenceNumber": str(n + 2), "streamSid": sid, "media": {
                "track": "inbound", "chunk": str(n + 1), "timestamp": str(n * 20),
                "payload": base64.b64encode(b"\xff" * 160).decode()}}))
        await call.send(json.dumps({"event": "stop", "sequenceNumber": "12", "streamSid": sid, "stop": {}}))
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await asyncio.wait_for(call.recv(), 30)
    return token


def test_a_debug_log_holds_none_of_the_secrets_clients_and_operators_give():
    async def run():
        hooks = Receivers(SERVER_SECRET)
        await hooks.up()
        server = start_server("--model", "whisper-tiny.en", "--log-level", "DEBUG", "--model-workers", "1",
                              "--webhook", f"{hooks.base}/hook?token={HOOK_TOKEN}", "--webhook-secret", SERVER_SECRET,
                              "--webhook-allow-private", env={"LINGTING_API_KEYS": f"agents:{KEY}"})
        try:
            token = await speak_and_watch(server, f"{hooks.base}/hook")
            await asyncio.sleep(2)          # the webhooks go out (and are logged)
            return server.log_text(), token
        finally:
            stop_server(server)
            await hooks.down()

    log, token = asyncio.run(run())
    assert leaked(log, KEY, token, SERVER_SECRET, STREAM_SECRET, HOOK_TOKEN) == []
    for logged in ("WebSocket /v1/stream?", "/v1/rooms/hall/events?token=", "/v1/twilio", "< TEXT", "/hook?token="):
        assert logged in log, logged          # it was all logged, without the secrets


def test_a_database_url_that_fails_is_logged_without_its_password():
    url = f"postgresql://edge:{PASSWORD}@127.0.0.1:{free_port()}/lingting?password={PASSWORD}&sslmode=disable"
    failed = subprocess.run([sys.executable, "-m", "lingting_server", "--port", "0", "--model", "whisper-tiny.en",
                             "--history-db", url, "--model-workers", "1"], cwd=REPO, capture_output=True, text=True,
                            timeout=180)
    assert failed.returncode == 2 and "ERROR" in failed.stderr and "--history-db" in failed.stderr
    assert leaked(failed.stderr, PASSWORD) == []
