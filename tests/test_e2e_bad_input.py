"""Hostile and broken clients get clear errors; the server keeps serving everyone else."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import urllib.request

import pytest
import websockets

from lingting_client import StreamOptions
from lingting_testkit.streams import check_event_grammar, finals_text, stream_events, wav_pcm

pytestmark = pytest.mark.e2e
START = json.dumps({"type": "start", "language": "en"})


async def next_event(ws, kind=None, timeout=60):
    while True:
        event = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if kind is None or event["type"] == kind:
            return event


async def still_serves(server, shared_audio):
    """A normal stream right after the abuse gets the right words."""
    pcm = wav_pcm(shared_audio / "en" / "ps_goforward.wav")
    events = await stream_events(server.url, pcm, StreamOptions(language="en", speed=0))
    check_event_grammar(events)
    assert "forward" in finals_text(events).lower()
    with urllib.request.urlopen(server.http + "/health", timeout=10) as r:
        assert r.status == 200 and json.load(r)["status"] == "ok"


async def test_garbage_json_and_unknown_types_are_errors_not_deaths(server, shared_audio):
    async with websockets.connect(server.url) as ws:
        await ws.send("{this is not json")
        e = await next_event(ws)
        assert (e["type"], e["code"], e["fatal"]) == ("error", "bad_message", False)
        await ws.send(json.dumps({"type": "sing"}))
        e = await next_event(ws)
        assert e["code"] == "bad_message" and "sing" in e["message"]
        await ws.send(json.dumps(["start"]))
        assert (await next_event(ws))["code"] == "bad_message"
        await ws.send(START)          # the stream is still usable
        assert (await next_event(ws))["type"] == "ready"
        await ws.send(START)
        assert (await next_event(ws))["code"] == "already_started"
    await still_serves(server, shared_audio)


async def test_audio_before_start(server):
    async with websockets.connect(server.url) as ws:
        await ws.send(b"\x00\x00" * 160)
        e = await next_event(ws)
        assert e["code"] == "not_started" and "start" in e["message"]


async def test_odd_byte_count_frame_is_dropped_with_an_error(server, shared_audio):
    pcm = wav_pcm(shared_audio / "en" / "ps_goforward.wav")
    async with websockets.connect(server.url) as ws:
        await ws.send(START)
        await next_event(ws, "ready")
        await ws.send(pcm[:3201])
        e = await next_event(ws, "error")
        assert e["code"] == "bad_audio" and "3201 bytes" in e["message"] and not e["fatal"]
        for i in range(0, len(pcm), 3200):
            await ws.send(pcm[i:i + 3200])
        await ws.send(json.dumps({"type": "stop"}))
        texts = []
        while (e := await next_event(ws))["type"] != "stopped":
            if e["type"] == "final":
                texts.append(e["text"])
        assert "forward" in " ".join(texts).lower()


async def test_wrong_sample_rates_are_refused(server):
    async with websockets.connect(server.url) as ws:
        for bad in (96000, 4000, 0):
            await ws.send(json.dumps({"type": "start", "sample_rate": bad}))
            e = await next_event(ws)
            assert e["code"] == "unsupported" and str(bad) in e["message"]
        await ws.send(json.dumps({"type": "start", "sample_rate": 22050}))
        assert (await next_event(ws))["type"] == "ready"


async def test_ten_megabyte_frame_closes_only_that_stream(server, shared_audio):
    async with websockets.connect(server.url) as ws:
        await ws.send(START)
        await next_event(ws, "ready")
        await ws.send(b"\x00" * (10 * 1024 * 1024))
        with pytest.raises(websockets.ConnectionClosed) as info:
            await next_event(ws, timeout=30)
    assert info.value.rcvd.code == 1009          # message too big
    await still_serves(server, shared_audio)


async def test_error_flood_closes_the_stream(server):
    async with websockets.connect(server.url) as ws:
        with pytest.raises(websockets.ConnectionClosed) as info:
            for _ in range(100):
                await ws.send("nope")
            while True:
                await next_event(ws, timeout=30)
    assert info.value.rcvd.code == 1008


async def test_disconnect_mid_utterance(server, shared_audio):
    pcm = wav_pcm(shared_audio / "en" / "jfk.wav")
    for _ in range(3):
        ws = await websockets.connect(server.url)
        await ws.send(START)
        await next_event(ws, "ready")
        for i in range(0, 16000 * 2 * 3, 3200):
            await ws.send(pcm[i:i + 3200])
        await next_event(ws, "speech_started")
        ws.transport.abort()                      # no close handshake: the cable is pulled
    await still_serves(server, shared_audio)


async def test_fifty_connections_at_once(server, shared_audio):
    async def one():
        try:
            ws = await websockets.connect(server.url, open_timeout=30)
        except websockets.InvalidStatus as exc:
            assert exc.response.status_code == 503
            assert exc.response.headers.get("Retry-After")
            return "refused", None
        await ws.send(START)
        try:
            e = await next_event(ws)
        except websockets.ConnectionClosed as exc:
            return "closed", exc
        if e["type"] == "error":
            assert e["code"] == "overloaded" and e["fatal"]
            return "overloaded", ws
        assert e["type"] == "ready"
        return "ready", ws

    # Start from an idle server: streams of earlier tests may still be closing.
    for _ in range(100):
        with urllib.request.urlopen(server.http + "/health", timeout=10) as r:
            if json.load(r)["streams"] == 0:
                break
        await asyncio.sleep(0.1)
    outcomes = await asyncio.gather(*(one() for _ in range(50)))
    kinds = [k for k, _ in outcomes]
    print({k: kinds.count(k) for k in set(kinds)})
    assert kinds.count("ready") == 40                   # the fixture's --max-connections
    assert kinds.count("refused") + kinds.count("overloaded") == 10
    for _, ws in outcomes:
        if ws is not None and not isinstance(ws, Exception):
            await ws.close()
    await asyncio.sleep(0.5)
    await still_serves(server, shared_audio)


async def test_sigterm_finishes_open_utterances(shared_audio):
    """A server told to stop sends the final of the utterance being spoken, then goes away."""
    import signal

    from lingting_testkit.servers import start_server, stop_server
    server = start_server()
    try:
        pcm = wav_pcm(shared_audio / "en" / "jfk.wav")
        async with websockets.connect(server.url) as ws:
            await ws.send(START)
            ready = await next_event(ws, "ready")
            for i in range(0, 16000 * 2 * 4, 3200):            # "And so my fellow Americans", no stop
                await ws.send(pcm[i:i + 3200])
            await next_event(ws, "speech_started")
            server.process.send_signal(signal.SIGTERM)
            events = []
            with pytest.raises(websockets.ConnectionClosed) as info:
                while True:
                    events.append(await next_event(ws, timeout=60))
        assert info.value.rcvd.code == 1001
        finals = [e for e in events if e["type"] == "final"]
        assert finals and finals[-1]["reason"] == "shutdown"
        assert "fellow americans" in " ".join(f["text"] for f in finals).lower()
        assert events[-1]["type"] == "stopped"
        assert server.process.wait(30) == 0
        assert "stopped" in server.log_text()
        # ...and stored it, with the session marked as ended by the shutdown.
        db = sqlite3.connect(server.history_db)
        assert db.execute("SELECT status FROM sessions WHERE id=?", (ready["session_id"],)).fetchone() == ("shutdown",)
        texts = [r[0] for r in db.execute("SELECT text FROM utterances ORDER BY idx")]
        assert texts == [f["text"] for f in finals]
    finally:
        stop_server(server)
