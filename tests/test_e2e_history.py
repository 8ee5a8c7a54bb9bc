"""History and files, end to end: real speech in, real SQLite and HTTP out."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

import pytest
import srt
import webvtt
import websockets

from lingting_client import FileOptions, LingtingClient, StreamOptions
from lingting_testkit.corpus import encode_audio, error_rate, load_manifest
from lingting_testkit.servers import start_server, stop_server
from lingting_testkit.streams import finals_text, stream_events, wav_pcm

pytestmark = pytest.mark.e2e
LONG = "long/en_ljspeech_LJ001-0001_0016.wav"


def get(server, path):
    with urllib.request.urlopen(server.http + path, timeout=30) as r:
        return r.status, r.headers, r.read()


def get_json(server, path):
    return json.loads(get(server, path)[2])


def http_error(server, path, method="GET") -> tuple[int, dict]:
    request = urllib.request.Request(server.http + path, method=method)
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=30)
    return info.value.code, json.loads(info.value.read())


def seconds(stamp: str) -> float:
    """WebVTT 'HH:MM:SS.mmm' -> seconds."""
    h, m, s = stamp.split(":")
    return round(int(h) * 3600 + int(m) * 60 + float(s), 3)


def reference(file: str) -> str:
    return next(c.transcript for c in load_manifest() if c.file == file)


async def transcribe(server, path, **options) -> list[dict]:
    client = LingtingClient(server.url)
    return [e async for e in client.transcribe(str(path), FileOptions(**options))]


async def test_streamed_session_is_stored_and_searchable(server, shared_audio):
    pcm = wav_pcm(shared_audio / "en" / "jfk.wav")
    events = await stream_events(server.url, pcm, StreamOptions(language="en", speed=0, hotwords=["Americans"]))
    session_id = events[0]["session_id"]
    finals = [e for e in events if e["type"] == "final"]
    stored = get_json(server, f"/v1/history/sessions/{session_id}")
    assert stored["kind"] == "stream" and stored["status"] == "stopped" and stored["language"] == "en"
    assert stored["settings"]["hotwords"] == [{"phrase": "Americans", "boost": 1.0}]
    assert stored["client"]["subprotocol"] == "lingting.v1.json" and stored["audio_ms"] > 10000
    assert [(u["idx"], u["text"], u["raw_text"], u["start_ms"]) for u in stored["utterances"]] == [
        (f["utterance"], f["text"], f["raw_text"], f["start_ms"]) for f in finals]
    assert stored["utterances"][0]["hotwords"] == ["Americans"] and stored["utterances"][0]["words"]

    found = get_json(server, "/v1/history/search?q=" + urllib.parse.quote("what your country can do"))
    assert session_id in {r["session_id"] for r in found["results"]}
    listed = get_json(server, "/v1/history/sessions?limit=5")
    assert session_id in {s["id"] for s in listed["sessions"]} and listed["total"] >= 1


async def test_long_file_transcribed_offline_with_progress(server, shared_audio):
    events = await transcribe(server, shared_audio / LONG, language="en")
    kinds = [e["type"] for e in events]
    assert kinds[0] == "ready" and kinds[-1] == "stopped"
    assert "speech_started" not in kinds and "partial" not in kinds
    upload = [e for e in events if e["type"] == "progress" and e["stage"] == "upload"]
    assert upload[-1]["received_bytes"] == os.path.getsize(shared_audio / LONG)
    work = [e for e in events if e["type"] == "progress" and e["stage"] == "transcribe"]
    fractions = [e["fraction"] for e in work]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(set(fractions)) > 5
    assert abs(work[0]["duration_ms"] - 116084) < 100
    finals = [e for e in events if e["type"] == "final"]
    assert [f["utterance"] for f in finals] == list(range(len(finals))) and len(finals) >= 5
    assert error_rate([reference(LONG)], [finals_text(events)], "en") < 0.10

    stored = get_json(server, f"/v1/history/sessions/{events[0]['session_id']}")
    assert stored["kind"] == "file" and stored["filename"] == os.path.basename(LONG)
    assert [u["text"] for u in stored["utterances"]] == [f["text"] for f in finals]
    assert stored["audio_ms"] == events[-1]["audio_ms"] > 115000


@pytest.mark.parametrize("codec, suffix", [("libmp3lame", "mp3"), ("libopus", "ogg"), ("flac", "flac")])
async def test_common_containers_are_transcribed(server, shared_audio, tmp_path, codec, suffix):
    path = tmp_path / f"jfk.{suffix}"
    encode_audio([shared_audio / "en" / "jfk.wav"], path, codec)
    events = await transcribe(server, path, language="en")
    assert error_rate([reference("en/jfk.wav")], [finals_text(events)], "en") < 0.15


async def test_files_that_are_not_audio_get_a_clear_error(server, tmp_path):
    junk = tmp_path / "notes.wav"
    junk.write_bytes(b"these are not the samples you are looking for" * 1000)
    async with websockets.connect(server.url) as ws:
        await ws.send(json.dumps({"type": "start", "mode": "offline", "filename": junk.name}))
        assert json.loads(await ws.recv())["type"] == "ready"
        await ws.send(junk.read_bytes())
        await ws.send(json.dumps({"type": "stop"}))
        events = []
        with pytest.raises(websockets.ConnectionClosedError):
            async for message in ws:
                events.append(json.loads(message))
    error = next(e for e in events if e["type"] == "error")
    assert error["code"] == "bad_audio" and error["fatal"] and "FFmpeg" in error["message"]
    assert str(tmp_path) not in error["message"] and "lingting-upload" not in error["message"]
    async with websockets.connect(server.url) as ws:   # over the limit before a byte is sent
        await ws.send(json.dumps({"type": "start", "mode": "offline", "file_bytes": 1 << 40}))
        error = json.loads(await ws.recv())
        assert (error["code"], error["fatal"]) == ("too_large", True)


async def test_exports_parse_and_match_utterance_times(server, shared_audio):
    events = await transcribe(server, shared_audio / "long" / "en_sense_and_sensibility_5utt.wav", language="en")
    session_id = events[0]["session_id"]
    finals = [e for e in events if e["type"] == "final" and e["text"].strip()]
    times = [(f["start_ms"] / 1000, f["end_ms"] / 1000) for f in finals]

    status, headers, body = get(server, f"/v1/history/sessions/{session_id}/export?format=srt")
    assert headers["Content-Type"].startswith("application/x-subrip")
    assert f"lingting-{session_id}.srt" in headers["Content-Disposition"]
    cues = list(srt.parse(body.decode()))
    assert [(c.start.total_seconds(), c.end.total_seconds()) for c in cues] == times
    assert [c.content for c in cues] == [f["text"] for f in finals]

    vtt = webvtt.from_string(get(server, f"/v1/history/sessions/{session_id}/export?format=vtt")[2].decode())
    assert [(seconds(c.start), seconds(c.end), c.text) for c in vtt] == [
        (*t, f["text"]) for t, f in zip(times, finals)]
    txt = get(server, f"/v1/history/sessions/{session_id}/export?format=txt")[2].decode()
    assert txt.splitlines() == [f["text"] for f in finals]
    assert http_error(server, f"/v1/history/sessions/{session_id}/export?format=doc")[0] == 400


async def test_history_api_errors_and_delete(server, shared_audio):
    assert http_error(server, "/v1/history/sessions/nope") == (404, {"error": "not_found", "message": "no session 'nope'"})
    assert http_error(server, "/v1/history/sessions/nope", "DELETE")[0] == 404
    assert http_error(server, "/v1/history/sessions?limit=many")[0] == 400
    assert http_error(server, "/v1/history/sessions", "DELETE")[0] == 405
    events = await stream_events(server.url, wav_pcm(shared_audio / "en" / "cheetah_test_en.wav"),
                                 StreamOptions(language="en", speed=0))
    session_id = events[0]["session_id"]
    request = urllib.request.Request(f"{server.http}/v1/history/sessions/{session_id}", method="DELETE")
    with urllib.request.urlopen(request, timeout=30) as r:
        assert r.status == 204
    assert http_error(server, f"/v1/history/sessions/{session_id}")[0] == 404
    found = get_json(server, "/v1/history/search?q=platforms%20one%20and%20three")["results"]
    assert session_id not in {r["session_id"] for r in found}


async def test_a_dropped_client_still_gets_its_last_utterance_stored(server, shared_audio):
    pcm = wav_pcm(shared_audio / "en" / "jfk.wav")
    async with websockets.connect(server.url) as ws:
        await ws.send(json.dumps({"type": "start", "language": "en"}))
        session_id = json.loads(await ws.recv())["session_id"]
        for i in range(0, 16000 * 2 * 4, 3200):          # "And so my fellow Americans", mid-sentence
            await ws.send(pcm[i:i + 3200])
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)
        ws.transport.abort()                             # the cable is pulled: no close frame
    for _ in range(100):
        stored = get_json(server, f"/v1/history/sessions/{session_id}")
        if stored["status"] != "open":
            break
        await asyncio.sleep(0.2)
    assert stored["status"] == "disconnected"
    assert "fellow americans" in " ".join(u["text"] for u in stored["utterances"]).lower()


async def test_sigkill_keeps_every_final_the_client_saw(shared_audio, tmp_path):
    db = tmp_path / "history.sqlite3"
    server = start_server("--history-db", str(db))
    seen = []
    try:
        client = LingtingClient(server.url)
        pcm = wav_pcm(shared_audio / LONG)
        with pytest.raises(Exception):
            async for event in client.stream(pcm, StreamOptions(language="en", speed=3, partials=False)):
                if event["type"] == "ready":
                    session_id = event["session_id"]
                if event["type"] == "final":
                    seen.append(event)
                    if len(seen) == 3:
                        server.process.send_signal(signal.SIGKILL)
        assert server.process.wait(10) == -signal.SIGKILL
    finally:
        stop_server(server)
    rows = sqlite3.connect(db).execute(
        "SELECT idx, text, raw_text, start_ms, end_ms FROM utterances WHERE session_id=? ORDER BY idx",
        (session_id,)).fetchall()
    assert len(seen) >= 3
    assert rows[:len(seen)] == [(f["utterance"], f["text"], f["raw_text"], f["start_ms"], f["end_ms"]) for f in seen]
    # The next start marks the session the dead server left open.
    again = start_server("--history-db", str(db))
    try:
        assert get_json(again, f"/v1/history/sessions/{session_id}")["status"] == "interrupted"
    finally:
        stop_server(again)


def test_cli_transcribes_many_files_with_progress(server, shared_audio, tmp_path):
    files = [shared_audio / "en" / "jfk.wav", shared_audio / "en" / "cheetah_test_en.wav"]
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "lingting_client.cli", "transcribe", *map(str, files),
                          "--url", server.url, "--format", "srt", "--out", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "all files" in run.stderr and "100%" in run.stderr
    jfk = list(srt.parse((out / "jfk.srt").read_text()))
    assert "ask not what your country" in " ".join(c.content for c in jfk).lower()
    assert (out / "cheetah_test_en.srt").exists()
    run = subprocess.run([sys.executable, "-m", "lingting_client.cli", "transcribe", str(files[1]),
                          "--url", server.url, "--out", "-", "--quiet", "--no-itn"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "only platforms" in run.stdout.lower() and run.stderr == ""
    run = subprocess.run([sys.executable, "-m", "lingting_client.cli", "transcribe", str(tmp_path / "missing.wav"),
                          "--url", server.url], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "no such file" in run.stderr
