"""Issue 34, items 2 and 3, end to end: a redacted stream of real spoken digits
(vosk's "one zero zero zero one, nine oh two one oh, zero one eight zero three")
watched for `<number>`, and every way its words leave the server: the speaker,
a room viewer, the tenant's board, a webhook receiver and the outbox table,
YouTube captions, the history and its exports, and the server's DEBUG log.
Alerts still fire on what was said; none of them carries a masked number."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest
import websockets

from lingting_client import LingtingClient, StreamOptions
from lingting_testkit.corpus import read_wav
from lingting_testkit.receivers import Receivers
from lingting_testkit.servers import start_server, stop_server

pytestmark = pytest.mark.e2e
KEY = "vault-" + "v" * 24
SECRET = "e2e-hook-secret-" + "r" * 16
DIGITS = "en/vosk_test_digits.wav"
REDACT = ["numbers", "pci", "phone", "ssn"]
# What was said, as digits and as words. Timings may hold any short digit string,
# so bytes and the log are searched for the long ones; JSON for every one, in its strings.
SAID = ("90210", "01803", "1 0 0 0 1", "one zero zero zero one", "nine oh two one", "zero one eight zero three")
SAID_IN_STRINGS = SAID + ("10001", "9021", "1803", "0001")


@dataclass
class RedactedOptions(StreamOptions):
    redact: list = field(default_factory=list)

    def start_message(self) -> dict:
        return super().start_message() | {"redact": self.redact}


async def collect(ws, into: list) -> None:
    try:
        async for message in ws:
            into.append(json.loads(message))
    except websockets.ConnectionClosed:
        pass


@pytest.fixture(scope="module")
def redacted_call(shared_audio):
    samples, rate = read_wav(shared_audio / DIGITS)
    assert rate == 16000
    pcm = np.concatenate([samples, np.zeros(rate * 2, "<i2")]).astype("<i2").tobytes()
    server = start_server("--webhook-allow-private", "--log-level", "DEBUG",
                          env={"LINGTING_API_KEYS": f"vault:{KEY}"})
    try:
        yield asyncio.run(_call(server, pcm)) | {"log": server.log_text()}
    finally:
        stop_server(server)


async def _call(server, pcm: bytes) -> dict:
    rooms = server.http.replace("http", "ws", 1) + "/v1/rooms"
    key = {"Authorization": f"Bearer {KEY}"}
    receivers = Receivers(SECRET)
    await receivers.up()
    out: dict = {"speaker": [], "viewer": [], "board": []}
    options = RedactedOptions(language="en", redact=REDACT, watch=["<number>"], room="vault",
                              webhooks=[{"url": receivers.base + "/hook", "secret": SECRET,
                                         "events": ["final", "alert", "session_end"]}],
                              captions=[{"type": "youtube", "url": receivers.base + "/youtube/closedcaption?cid=v"}])
    tasks = []
    async for event in LingtingClient(server.url, api_key=KEY).stream(pcm, options):
        out["speaker"].append(event)
        if event["type"] == "ready":
            out["session_id"] = event["session_id"]
            viewer = await websockets.connect(f"{rooms}/vault/events", additional_headers=key)
            board = await websockets.connect(rooms, additional_headers=key)
            tasks += [asyncio.ensure_future(collect(viewer, out["viewer"])),
                      asyncio.ensure_future(collect(board, out["board"]))]
    await asyncio.wait_for(tasks[0], 30)         # the viewer's room closes with the stream
    await asyncio.sleep(0.5)
    await board.close()
    await tasks[1]
    deadline = time.monotonic() + 30
    while not any(body.get("type") == "session_end" for _, _, body in receivers.got.webhooks) \
            and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    out["webhooks"] = [body for _, _, body in receivers.got.webhooks]
    out["youtube"] = [text for _, _, text in receivers.got.youtube]
    await receivers.down()
    async with httpx.AsyncClient(base_url=server.http + "/v1/history", headers=key) as http:
        session = f"/sessions/{out['session_id']}"
        out["history"] = (await http.get(session)).json()
        out["exports"] = {fmt: (await http.get(f"{session}/export?format={fmt}")).text
                          for fmt in ("txt", "srt", "vtt", "json")}
    db = Path(server.history_db)
    with sqlite3.connect(db) as conn:
        out["outbox"] = [row[0] for row in conn.execute("SELECT body FROM webhook_deliveries")]
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    out["stored"] = b"".join(p.read_bytes() for p in (db, Path(str(db) + "-wal")) if p.exists())
    return out


def alerts(events: list[dict]) -> list[dict]:
    return [e for e in events if e.get("type") == "alert"]


def walk(value):
    """Every (key, value) pair in a JSON value, nested ones included."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield k, v
            yield from walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from walk(v)


def test_alerts_fire_on_the_spoken_numbers_but_carry_none(redacted_call):
    speaker = redacted_call["speaker"]
    said = " ".join(e["text"] for e in speaker if e["type"] == "final")
    assert "[card]" in said or "[number]" in said, said
    fired = alerts(speaker)
    assert any(a["status"] == "confirmed" for a in fired), speaker
    webhook_alerts = [b["event"] for b in redacted_call["webhooks"] if b.get("type") == "alert"]
    assert alerts(redacted_call["viewer"]) and webhook_alerts
    for alert in fired + alerts(redacted_call["viewer"]) + alerts(redacted_call["board"]) + webhook_alerts:
        assert alert["number"] is None and not any(ch.isdigit() for ch in alert["text"]), alert


JSON_PATHS = ("speaker", "viewer", "board", "webhooks", "history")


# A random id or token (hex or base64url with at least one letter) may hold "9021" by chance.
RANDOM_IDS = re.compile(r"\b(?=[0-9a-fA-F-]*[a-fA-F])[0-9a-fA-F-]{12,}\b|\b(?=[\w-]*[A-Za-z])[\w-]{20,}\b")

@pytest.mark.parametrize("path", [*JSON_PATHS, "youtube", "outbox", "exports", "stored", "log"])
def test_no_path_out_carries_what_was_masked(redacted_call, path):
    got = redacted_call[path]
    assert got, f"nothing came out by {path}"
    if path == "outbox":
        got = [json.loads(body) for body in got]
    if path == "exports":
        got = {**got, "json": json.loads(got["json"])}
    if path in (*JSON_PATHS, "outbox", "exports"):
        strings = [v for _, v in walk(got) if isinstance(v, str)] + [k for k, _ in walk(got)]
        strings += [v for v in (got.values() if isinstance(got, dict) else []) if isinstance(v, str)]
        numbers = [v for k, v in walk(got) if k == "number"]
        assert all(v is None for v in numbers), (path, numbers)
        text, said = "\n".join(strings), SAID_IN_STRINGS
    else:
        text = got.decode("utf-8", "replace") if isinstance(got, bytes) else "\n".join(got) if isinstance(
            got, list) else got
        said = SAID_IN_STRINGS if path == "youtube" else SAID
    text = RANDOM_IDS.sub(" ", text)     # session and delivery ids, tokens, signatures: hex digits by chance
    for secret in said:
        assert secret not in text.lower(), (path, secret)
