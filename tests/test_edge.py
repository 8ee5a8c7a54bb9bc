"""The edge in this process, on real sockets, with a recording engine instead
of a model: admission, close codes and reasons, shutdown, slow readers, the
HTTP file upload. Seconds, not minutes; the real model is in the e2e tests."""

from __future__ import annotations

import asyncio
import json

import httpx
import numpy as np
import pytest
import websockets

from lingting_server.services.access import ApiKey
from lingting_testkit.inprocess import RecordingEngine, edge_server
from lingting_testkit.streams import events_until_closed, wav_file
from lingting_testkit.synth import silence, to_s16, voice

KEY = "edge-" + "k" * 24
UTTERANCE = to_s16(np.concatenate([voice(0.8), silence(1.0)]))


async def send_audio(ws, pcm: bytes) -> None:
    for i in range(0, len(pcm), 3200):
        await ws.send(pcm[i:i + 3200])


async def test_a_stopped_stream_closes_normally_with_its_finals():
    async with edge_server(RecordingEngine("twenty five dollars")) as edge:
        async with websockets.connect(edge.ws + "/v1/stream") as ws:
            await ws.send(json.dumps({"type": "start", "language": "en", "hotwords": ["Lingting"]}))
            await send_audio(ws, UTTERANCE)
            await ws.send(json.dumps({"type": "stop"}))
            events = await events_until_closed(ws)
        assert (ws.close_code, ws.close_reason) == (1000, "stopped")
        finals = [e for e in events if e["type"] == "final"]
        assert [f["text"] for f in finals] == ["$25"] and finals[0]["raw_text"] == "twenty five dollars"
        assert events[-1]["type"] == "stopped"
        assert ("Lingting",) in {r.hotwords for r in edge.engine.requests}   # the engine was biased


async def test_idle_quota_and_protocol_closes_name_their_reason():
    keys = (ApiKey("tiny", KEY, audio_minutes_per_day=0.01),)    # 0.6 s of audio a day
    async with edge_server(keys=keys, idle_timeout_s=0.3) as edge:
        headers = {"X-API-Key": KEY}
        async with websockets.connect(edge.ws + "/v1/stream", additional_headers=headers) as ws:
            await ws.send(json.dumps({"type": "start"}))
            events = await events_until_closed(ws)          # sends nothing more: idle
        assert (ws.close_code, ws.close_reason) == (1008, "idle timeout")
        assert [e["type"] for e in events] == ["ready", "error", "stopped"]
        assert events[1]["code"] == "idle_timeout" and events[1]["fatal"]

        async with websockets.connect(edge.ws + "/v1/stream", additional_headers=headers) as ws:
            await ws.send(json.dumps({"type": "start", "language": "en"}))
            await send_audio(ws, UTTERANCE)                 # 1.8 s: past the quota
            events = await events_until_closed(ws)
        assert (ws.close_code, ws.close_reason) == (1008, "quota exceeded")
        kinds = [e["type"] for e in events]
        assert "quota_exceeded" in [e.get("code") for e in events] and kinds[-1] == "stopped"

    async with edge_server(max_frame_bytes=10000) as edge:
        async with websockets.connect(edge.ws + "/v1/stream") as ws:
            await ws.send(json.dumps({"type": "start", "mode": "offline", "file_bytes": 1 << 40}))
            events = await events_until_closed(ws)
        assert (ws.close_code, ws.close_reason) == (1008, "too_large")
        async with websockets.connect(edge.ws + "/v1/stream") as ws:
            await ws.send(json.dumps({"type": "start"}))
            await ws.send(b"\0" * 10500)                   # over the limit: told why
            events = await events_until_closed(ws)
        assert (ws.close_code, ws.close_reason) == (1009, "message too big")
        assert events[-1]["code"] == "too_large"
        async with websockets.connect(edge.ws + "/v1/stream") as ws:
            await ws.send(b"\0" * 100000)                  # far over: not even read
            await events_until_closed(ws)
        assert ws.close_code == 1009


async def test_refusals_come_before_the_upgrade_with_retry_after():
    async with edge_server(max_connections=1) as edge:
        async with websockets.connect(edge.ws + "/v1/stream") as first:
            with pytest.raises(websockets.InvalidStatus) as info:
                await websockets.connect(edge.ws + "/v1/stream")
            assert info.value.response.status_code == 503
            assert info.value.response.headers["Retry-After"] == "5"
            assert json.loads(info.value.response.body)["error"] == "overloaded"
            await first.send(json.dumps({"type": "start"}))
            assert json.loads(await first.recv())["type"] == "ready"
        with pytest.raises(websockets.InvalidStatus) as info:
            await websockets.connect(edge.ws + "/v2/stream")
        assert info.value.response.status_code == 404
        for path in ("/v1/stream", "/funasr"):     # another site's page may not use this server
            with pytest.raises(websockets.InvalidStatus) as info:
                await websockets.connect(edge.ws + path, origin="https://evil.example")
            assert info.value.response.status_code == 403
        async with httpx.AsyncClient(base_url=edge.http) as http:
            assert (await http.get("/v1/stream")).status_code == 426
            response = await http.delete("/health")
            assert response.status_code == 405 and response.json()["error"] == "method_not_allowed"
            assert (await http.get("/nowhere")).json()["error"] == "not_found"
            foreign = await http.get("/v1/history/sessions", headers={"Origin": "https://evil.example"})
            assert foreign.status_code == 403 and foreign.json()["error"] == "forbidden_origin"
            assert (await http.get("/health", headers={"Host": "evil.example"})).status_code == 421


async def test_shutdown_delivers_the_open_utterance_then_goes_away():
    async with edge_server(RecordingEngine(delay_s=0.2)) as edge:
        async with websockets.connect(edge.ws + "/v1/stream") as ws:
            await ws.send(json.dumps({"type": "start", "language": "en", "partials": False}))
            await send_audio(ws, to_s16(voice(1.0)))        # mid-utterance
            await asyncio.sleep(0.2)
            shutting = asyncio.create_task(edge.server.shutdown(grace_s=10))
            events = await events_until_closed(ws)
            await shutting
        assert (ws.close_code, ws.close_reason) == (1001, "server shutting down")
        (final,) = [e for e in events if e["type"] == "final"]
        assert final["reason"] == "shutdown" and final["text"] == "hello world"
        assert events[-1]["type"] == "stopped"


async def test_a_draining_edge_refuses_new_streams_while_open_ones_go_on_to_their_end():
    async with edge_server() as edge:
        async with websockets.connect(edge.ws + "/v1/stream") as ws, httpx.AsyncClient(base_url=edge.http) as http:
            await ws.send(json.dumps({"type": "start", "language": "en", "partials": False}))
            assert json.loads(await ws.recv())["type"] == "ready"
            draining = asyncio.create_task(edge.server.shutdown(grace_s=5, drain_s=30))
            await asyncio.sleep(0.2)
            health = await http.get("/health")
            assert health.status_code == 503 and health.json()["status"] == "draining"
            with pytest.raises(websockets.InvalidStatus) as info:      # a load balancer sends it elsewhere
                await websockets.connect(edge.ws + "/v1/stream")
            assert info.value.response.status_code == 503 and info.value.response.headers["Retry-After"]
            for _ in range(2):                                     # the open stream goes on as before
                await send_audio(ws, UTTERANCE)
            await ws.send(json.dumps({"type": "stop"}))
            events = await events_until_closed(ws)
            assert [e["reason"] for e in events if e["type"] == "final"] == ["silence", "silence"]   # not shutdown
            assert events[-1]["type"] == "stopped" and ws.close_code == 1000
            await asyncio.wait_for(draining, 10)                   # the drain ends with its last stream


async def test_a_reader_slower_than_its_events_is_closed():
    # One frame holding many utterances queues their events at once: more than the outbox holds.
    many = to_s16(np.concatenate([np.concatenate([voice(0.7), silence(0.8)]) for _ in range(8)]))
    async with edge_server(send_queue=4, max_frame_bytes=1 << 20) as edge:
        async with websockets.connect(edge.ws + "/v1/stream") as ws:
            await ws.send(json.dumps({"type": "start", "language": "en", "partials": False}))
            await ws.send(many)
            await events_until_closed(ws)
        assert (ws.close_code, ws.close_reason) == (1008, "client too slow")
        for _ in range(100):
            if not edge.lingting.streams:
                break
            await asyncio.sleep(0.02)
        assert not edge.lingting.streams


async def test_a_file_posted_over_http_streams_its_transcription_and_is_kept(tmp_path):
    async with edge_server(history_path=str(tmp_path / "h.sqlite3"), max_file_mb=1) as edge:
        async with httpx.AsyncClient(base_url=edge.http, timeout=30) as http:
            body = wav_file(to_s16(np.concatenate([silence(0.3), voice(0.8), silence(1.0), voice(0.6)])))
            async with http.stream("POST", "/v1/files", params={"filename": "call.wav", "language": "en"},
                                   content=body) as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("application/x-ndjson")
                lines = [json.loads(line) async for line in response.aiter_lines() if line]
            kinds = [e["type"] for e in lines]
            assert kinds[0] == "ready" and kinds[-1] == "stopped" and kinds.count("final") == 2
            assert lines[-2]["stage"] == "transcribe" and lines[-2]["fraction"] == 1.0
            stored = (await http.get(f"/v1/history/sessions/{lines[0]['session_id']}")).json()
            assert stored["kind"] == "file" and stored["filename"] == "call.wav" and len(stored["utterances"]) == 2
            assert stored["client"]["subprotocol"] == "http.ndjson" and stored["status"] == "stopped"

            too_big = await http.post("/v1/files", content=b"x" * (2 << 20))
            assert too_big.status_code == 413 and too_big.json()["error"] == "too_large"
            not_media = await http.post("/v1/files", content=b"this is not a media file" * 100)
            assert not_media.status_code == 200           # refused once FFmpeg has looked at it
            last = json.loads(not_media.text.strip().splitlines()[-1])
            assert last["type"] == "error" and last["code"] == "bad_audio" and last["fatal"]
            bad = await http.post("/v1/files", params={"language": "xx"}, content=body)
            assert bad.status_code == 400 and bad.json()["error"] == "unsupported"


async def test_a_file_posted_with_a_key_belongs_to_that_tenant(tmp_path):
    keys = (ApiKey("agents", KEY), ApiKey("others", "others-" + "o" * 24), ApiKey("root", "root-" + "r" * 24, admin=True))
    async with edge_server(keys=keys, history_path=str(tmp_path / "h.sqlite3")) as edge:
        async with httpx.AsyncClient(base_url=edge.http, timeout=30) as http:
            body = wav_file(to_s16(np.concatenate([voice(0.8), silence(1.0)])))
            assert (await http.post("/v1/files", content=body)).status_code == 401        # no key, no file
            posted = await http.post("/v1/files", content=body, headers={"X-API-Key": KEY})
            session_id = json.loads(posted.text.splitlines()[0])["session_id"]

            def ids(response):
                return {s["id"] for s in response.json()["sessions"]}
            assert ids(await http.get("/v1/history/sessions", headers={"X-API-Key": KEY})) == {session_id}
            assert ids(await http.get("/v1/history/sessions", headers={"X-API-Key": keys[1].secret})) == set()
            assert (await http.get(f"/v1/history/sessions/{session_id}",
                                   headers={"X-API-Key": keys[1].secret})).status_code == 404
            assert session_id in ids(await http.get("/v1/history/sessions", headers={"X-API-Key": keys[2].secret}))


async def test_a_large_file_posted_over_http_is_not_closed_for_its_own_progress_events():
    """Nobody reads a POST's answer until its body is in: upload progress (one event a MiB)
    must not fill the stream's queues and close it as a slow reader (it did past ~320 MiB)."""
    async with edge_server(send_queue=4, max_file_mb=100) as edge:
        async with httpx.AsyncClient(base_url=edge.http, timeout=60) as http:
            posted = await http.post("/v1/files", content=b"this is not a media file" * (3 << 20))   # 72 MiB
        last = json.loads(posted.text.strip().splitlines()[-1])
        assert (last["type"], last["code"]) == ("error", "bad_audio"), last     # FFmpeg's verdict, not too_slow
