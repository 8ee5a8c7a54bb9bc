"""API keys, origins, TLS, per-key and per-address limits, idle and speed
bounds, metrics and JSON logs, on a real server over real sockets."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
import urllib.error
import urllib.request

import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families

from lingting_testkit.servers import start_server, stop_server
from lingting_client import LingtingClient, LingtingError, StreamOptions
from lingting_testkit.streams import finals_text, wav_pcm

pytestmark = pytest.mark.e2e
AGENTS = "agents-" + "a" * 24      # up to 2 streams
TINY = "tiny-" + "t" * 24          # 6 s of audio a day


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    folder = tmp_path_factory.mktemp("tls")
    cert.private_key_and_cert_chain_pem.write_to_path(str(folder / "server.pem"))
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return folder / "server.pem", client


@pytest.fixture(scope="module")
def guarded(tls, tmp_path_factory):
    pem, _ = tls
    keys = tmp_path_factory.mktemp("keys") / "keys.toml"
    keys.write_text(f'[[keys]]\nname = "agents"\nkey = "{AGENTS}"\nmax_streams = 2\n\n'
                    f'[[keys]]\nname = "tiny"\nkey = "{TINY}"\naudio_minutes_per_day = 0.1\n')
    server = start_server("--api-keys-file", str(keys), "--tls-cert", str(pem), "--tls-key", str(pem),
                          "--allowed-origin", "https://app.example.com", "--max-connections-per-ip", "3",
                          "--idle-timeout-s", "2", "--log-format", "json", "--trusted-proxy", "127.0.0.1")
    yield server
    stop_server(server)


def http(server, path, context, key=None, origin=None):
    request = urllib.request.Request(server.http + path)
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    if origin:
        request.add_header("Origin", origin)
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def test_keys_and_tls(guarded, tls, shared_audio):
    _, context = tls
    assert guarded.url.startswith("wss://") and guarded.http.startswith("https://")
    assert http(guarded, "/health/ready", context)[0] == 200           # probes need no key
    assert http(guarded, "/v1/history/sessions", context)[0] == 401
    assert http(guarded, "/v1/history/sessions", context, key="wrong-" + "x" * 20)[0] == 401
    assert http(guarded, "/v1/history/sessions", context, key=AGENTS)[0] == 200
    with pytest.raises(LingtingError, match="HTTP 401 an API key is required"):
        async for _ in LingtingClient(guarded.url, ssl=context).stream(b"\0\0" * 1600):
            pass
    pcm = wav_pcm(shared_audio / "en" / "jfk.wav")
    events = [e async for e in LingtingClient(guarded.url, ssl=context, api_key=AGENTS).stream(
        pcm, StreamOptions(language="en", speed=0))]
    assert "ask not what your country" in finals_text(events).lower()
    # Browsers: the key as a subprotocol, and only allowed origins.
    protocols = ["lingting.v1.json", f"lingting.key.{AGENTS}"]
    async with websockets.connect(guarded.url, ssl=context, subprotocols=protocols,
                                  origin="https://app.example.com") as ws:
        assert ws.subprotocol == "lingting.v1.json"
        await ws.send(json.dumps({"type": "start"}))
        assert json.loads(await ws.recv())["type"] == "ready"
    with pytest.raises(websockets.InvalidStatus) as info:
        await websockets.connect(guarded.url, ssl=context, subprotocols=protocols, origin="https://evil.example")
    assert info.value.response.status_code == 403


async def test_per_key_and_per_address_limits(guarded, tls):
    _, context = tls
    auth = {"Authorization": f"Bearer {AGENTS}"}
    first = await websockets.connect(guarded.url, ssl=context, additional_headers=auth)
    second = await websockets.connect(guarded.url, ssl=context, additional_headers=auth)
    with pytest.raises(websockets.InvalidStatus) as info:          # the key allows 2 streams
        await websockets.connect(guarded.url, ssl=context, additional_headers=auth)
    assert info.value.response.status_code == 429 and b"key_limit" in info.value.response.body
    third = await websockets.connect(guarded.url, ssl=context, additional_headers={"X-API-Key": TINY})
    with pytest.raises(websockets.InvalidStatus) as info:          # the address allows 3
        await websockets.connect(guarded.url, ssl=context, additional_headers={"X-API-Key": TINY})
    assert info.value.response.status_code == 429 and info.value.response.headers["Retry-After"]
    assert b"ip_limit" in info.value.response.body
    # Behind a trusted proxy the limit counts the forwarded client address.
    proxied = await websockets.connect(guarded.url, ssl=context, additional_headers={
        "X-API-Key": TINY, "X-Forwarded-For": "203.0.113.7"})
    for ws in (first, second, third, proxied):
        await ws.close()
    await asyncio.sleep(0.5)
    ws = await websockets.connect(guarded.url, ssl=context, additional_headers=auth)   # room again
    await ws.close()


async def test_quota_ends_the_stream_but_keeps_its_final(guarded, tls, shared_audio):
    _, context = tls
    pcm = wav_pcm(shared_audio / "en" / "jfk.wav")                # 11 s against a 6 s quota
    events = []
    async with websockets.connect(guarded.url, ssl=context, additional_headers={"X-API-Key": TINY}) as ws:
        await ws.send(json.dumps({"type": "start", "language": "en"}))
        for i in range(0, len(pcm), 3200):
            try:
                await ws.send(pcm[i:i + 3200])
            except websockets.ConnectionClosed:
                break
        with pytest.raises(websockets.ConnectionClosed) as info:
            while True:
                events.append(json.loads(await asyncio.wait_for(ws.recv(), 60)))
    assert info.value.rcvd.code == 1008
    error = next(e for e in events if e["type"] == "error")
    assert (error["code"], error["fatal"]) == ("quota_exceeded", True)
    finals = [e for e in events if e["type"] == "final"]
    assert finals and "fellow americans" in " ".join(f["text"] for f in finals).lower()
    assert events[-1]["type"] == "stopped"
    with pytest.raises(websockets.InvalidStatus) as info:          # and no more today
        await websockets.connect(guarded.url, ssl=context, additional_headers={"X-API-Key": TINY})
    assert info.value.response.status_code == 429 and b"quota_exceeded" in info.value.response.body


async def test_idle_streams_are_closed(guarded, tls):
    _, context = tls
    async with websockets.connect(guarded.url, ssl=context, additional_headers={"X-API-Key": AGENTS}) as ws:
        await ws.send(json.dumps({"type": "start"}))
        assert json.loads(await ws.recv())["type"] == "ready"
        for _ in range(3):                       # keepalive holds it open past the 2 s limit
            await asyncio.sleep(1)
            await ws.send(json.dumps({"type": "keepalive"}))
        error = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert (error["code"], error["fatal"]) == ("idle_timeout", True)
        assert json.loads(await ws.recv())["type"] == "stopped"
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
    assert ws.close_code == 1008


def test_json_logs_name_the_session(guarded):
    records = [json.loads(line) for line in guarded.log if line.startswith("{")]
    assert records and len(records) == len([line for line in guarded.log if line.strip()])
    assert {"time", "level", "logger", "message"} <= records[0].keys()
    assert not [r for r in records if r["level"] == "ERROR"]
    assert any(r.get("session") and r["message"].startswith(f"session {r['session']}") for r in records)


async def test_live_audio_faster_than_real_time_is_held_back(server):
    pcm = b"\0\0" * 16000 * 50                     # 50 s of silence, sent as fast as possible
    started = time.monotonic()
    events = [e async for e in LingtingClient(server.url).stream(pcm, StreamOptions(speed=0))]
    elapsed = time.monotonic() - started
    assert events[-1]["type"] == "stopped" and events[-1]["audio_ms"] == 50000
    assert elapsed >= (50 - 30) / 4 * 0.9         # 30 s burst, then at most 4x real time


async def test_a_message_flood_is_slowed_not_fatal(server):
    async with websockets.connect(server.url) as ws:
        started = time.monotonic()
        await ws.send(json.dumps({"type": "start"}))
        for _ in range(1200):                       # 3 s worth at 400 messages a second
            await ws.send('{"type":"keepalive"}')
        await ws.send(json.dumps({"type": "stop"}))
        kinds = []
        async for message in ws:
            kinds.append(json.loads(message)["type"])
        assert kinds == ["ready", "stopped"]
        assert time.monotonic() - started >= 2.5


async def test_health_probes_and_metrics(server, shared_audio):
    pcm = wav_pcm(shared_audio / "en" / "jfk.wav")
    [e async for e in LingtingClient(server.url).stream(pcm, StreamOptions(language="en", speed=0))]
    with urllib.request.urlopen(server.http + "/health/live", timeout=10) as r:
        assert json.load(r) == {"status": "alive"}
    with urllib.request.urlopen(server.http + "/health/ready", timeout=10) as r:
        assert json.load(r) == {"status": "ready"}
    with urllib.request.urlopen(server.http + "/metrics", timeout=10) as r:
        text = r.read().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    assert samples[("lingting_connections_total", (("outcome", "accepted"),))] >= 1
    assert samples[("lingting_audio_seconds_total", (("mode", "stream"),))] >= 11
    assert samples[("lingting_finals_total", (("mode", "stream"),))] >= 1
    assert samples[("lingting_decode_seconds_count", (("kind", "final"),))] >= 1
    assert ("lingting_queue_depth", (("lane", "background"),)) in samples
    assert "lingting_final_latency_seconds" in families and "lingting_batch_size" in families
    assert "lingting_partials_dropped" in families and "lingting_errors" in families
