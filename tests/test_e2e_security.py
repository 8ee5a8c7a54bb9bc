"""An outside auditor's findings (issue 12), each against a real server over
real sockets: crashes on disconnect, tenants, DNS rebinding, playlist uploads,
keys in logs, a final lost to a dying worker, and the smaller ones."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import shutil
import signal
import urllib.error
import urllib.parse
import urllib.request

import pytest
import websockets

from lingting_client import LingtingClient, StreamOptions
from lingting_testkit.corpus import encode_audio
from lingting_testkit.servers import start_server, stop_server
from lingting_testkit.streams import events_until_closed, finals_text, wav_pcm

pytestmark = pytest.mark.e2e
AGENTS = "agents-" + "a" * 24      # tenant "agents"
OTHERS = "others-" + "o" * 24      # tenant "others"
ADMIN = "admin-" + "z" * 24        # sees every tenant
ALLOWED_HOST = "captions.example"
FRAME_ANCESTOR = "https://studio.example"


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    """whisper-tiny.en with three keys, DEBUG logs, a small upload budget and a short upload idle timeout;
    one model worker, so the worker test 6 kills is the one decoding the final."""
    keys = tmp_path_factory.mktemp("keys") / "keys.toml"
    keys.write_text(f'[[keys]]\nname = "agents"\nkey = "{AGENTS}"\n\n[[keys]]\nname = "others"\nkey = "{OTHERS}"\n\n'
                    f'[[keys]]\nname = "root"\nkey = "{ADMIN}"\nadmin = true\n')
    server = start_server("--model", "whisper-tiny.en", "--api-keys-file", str(keys), "--log-level", "DEBUG",
                          "--max-spool-gb", str(12 / 1024), "--upload-idle-timeout-s", "2",
                          "--allowed-host", ALLOWED_HOST, "--frame-ancestor", FRAME_ANCESTOR,
                          "--max-connections-per-ip", "100", "--model-workers", "1")
    yield server
    stop_server(server)


def request(server, path, key=None, method="GET", host=None, query_key=None):
    """(status, headers, body) of one plain HTTP request."""
    if query_key:
        path += ("&" if "?" in path else "?") + "api_key=" + query_key
    parts = urllib.parse.urlsplit(server.http)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    headers = {"Host": host} if host else {}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    conn.request(method, path, headers=headers)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, response.headers, body


def session_ids(server, key) -> set[str]:
    status, _, body = request(server, "/v1/history/sessions?limit=1000", key)
    assert status == 200
    return {s["id"] for s in json.loads(body)["sessions"]}


async def stream_as(server, key, pcm, **options) -> list[dict]:
    client = LingtingClient(server.url, api_key=key)
    return [e async for e in client.stream(pcm, StreamOptions(language="en", speed=0, **options))]


def health(server) -> dict:
    return json.loads(request(server, "/health")[2])


# ---- 1. a disconnect during an offline transcription ---------------------------

@pytest.fixture(scope="module")
def flac(shared_audio, tmp_path_factory):
    """About 3 MB of FLAC: the 116 s clip twice."""
    path = tmp_path_factory.mktemp("flac") / "long.flac"
    long = sorted((shared_audio / "long").glob("*.wav"), key=lambda p: p.stat().st_size)[-1]
    encode_audio([long, long], path, "flac")
    assert path.stat().st_size > 2_500_000
    return path


@pytest.mark.parametrize("leave_at", ["upload", "first_progress", "mid_file", "drop_mid_file"])
async def test_leaving_during_a_file_transcription_never_kills_the_server(keyed, flac, shared_audio, leave_at):
    data = flac.read_bytes()
    pid_before = keyed.process.pid
    ws = await websockets.connect(keyed.url, additional_headers={"Authorization": f"Bearer {AGENTS}"})
    await ws.send(json.dumps({"type": "start", "mode": "offline", "filename": "long.flac",
                              "file_bytes": len(data), "language": "en"}))
    assert json.loads(await ws.recv())["type"] == "ready"
    chunk = 256 * 1024
    sent = len(data) // 2 if leave_at == "upload" else len(data)
    for i in range(0, sent, chunk):
        await ws.send(data[i:min(i + chunk, sent)])
    if leave_at != "upload":
        await ws.send(json.dumps({"type": "stop"}))
        while True:
            event = json.loads(await asyncio.wait_for(ws.recv(), 120))
            if event["type"] == "progress" and event["stage"] == "transcribe" and (
                    leave_at == "first_progress" or (event["fraction"] or 0) > 0.1):
                break
    if leave_at.startswith("drop"):
        ws.transport.abort()
    else:
        await ws.close()
    await asyncio.sleep(1.0)      # the decode thread is still in FFmpeg when the stream ends
    assert keyed.process.poll() is None, f"server died (exit {keyed.process.returncode})"
    assert keyed.process.pid == pid_before
    events = await stream_as(keyed, AGENTS, wav_pcm(shared_audio / "en" / "jfk.wav"))
    assert "ask not what your country" in finals_text(events).lower()


# ---- 2. tenants -------------------------------------------------------------------

async def test_each_key_sees_only_its_own_sessions_and_admins_see_all(keyed, shared_audio):
    mine = await stream_as(keyed, AGENTS, wav_pcm(shared_audio / "en" / "jfk.wav"))
    theirs = await stream_as(keyed, OTHERS, wav_pcm(shared_audio / "en" / "ps_goforward.wav"))
    a, b = mine[0]["session_id"], theirs[0]["session_id"]
    assert a in session_ids(keyed, AGENTS) and b not in session_ids(keyed, AGENTS)
    assert b in session_ids(keyed, OTHERS) and a not in session_ids(keyed, OTHERS)
    assert {a, b} <= session_ids(keyed, ADMIN)
    status, _, body = request(keyed, "/v1/history/sessions", OTHERS)
    assert json.loads(body)["total"] == len(session_ids(keyed, OTHERS))
    # Another tenant's session does not exist for them: read, export, delete, search.
    for path in (f"/v1/history/sessions/{a}", f"/v1/history/sessions/{a}/export?format=txt"):
        assert request(keyed, path, OTHERS)[0] == 404
        assert request(keyed, path, AGENTS)[0] == 200
    assert request(keyed, f"/v1/history/sessions/{a}", OTHERS, method="DELETE")[0] == 404
    assert request(keyed, f"/v1/history/sessions/{a}", AGENTS)[0] == 200      # still there
    for query in ("country", "ask not what", "as"):                          # FTS and short LIKE paths
        found = json.loads(request(keyed, "/v1/history/search?q=" + urllib.parse.quote(query), OTHERS)[2])
        assert not [r for r in found["results"] if r["session_id"] == a], query
        found = json.loads(request(keyed, "/v1/history/search?q=" + urllib.parse.quote(query), AGENTS)[2])
        assert [r for r in found["results"] if r["session_id"] == a], query
    found = json.loads(request(keyed, "/v1/history/search?q=country", ADMIN)[2])
    assert [r for r in found["results"] if r["session_id"] == a]
    assert json.loads(request(keyed, f"/v1/history/sessions/{a}", AGENTS)[2])["owner"] == "agents"
    # The admin may delete anyone's.
    assert request(keyed, f"/v1/history/sessions/{b}", ADMIN, method="DELETE")[0] == 204
    assert request(keyed, f"/v1/history/sessions/{b}", OTHERS)[0] == 404


# ---- 3. DNS rebinding --------------------------------------------------------------

@pytest.mark.parametrize("host", ["attacker.example", "attacker.example:{port}", "127.0.0.1.attacker.example"])
async def test_a_keyless_server_answers_only_to_loopback_names(server, host):
    port = urllib.parse.urlsplit(server.http).port
    host = host.format(port=port)
    for path in ("/v1/history/sessions", "/health", "/"):
        status, _, body = request(server, path, host=host)
        assert status == 421 and json.loads(body)["error"] == "forbidden_host", (path, status)
        assert "--allowed-host" in json.loads(body)["message"]
    with pytest.raises(websockets.InvalidStatus) as info:   # the name resolves to us, as after rebinding
        await websockets.connect(f"ws://{host}/v1/stream", host="127.0.0.1", port=port)
    assert info.value.response.status_code == 421
    for good in (f"localhost:{port}", f"127.0.0.1:{port}", "localhost", f"LOCALHOST:{port}"):
        assert request(server, "/v1/history/sessions", host=good)[0] == 200, good
    async with websockets.connect(f"ws://localhost:{port}/v1/stream", host="127.0.0.1", port=port) as ws:
        await ws.send(json.dumps({"type": "start"}))
        assert json.loads(await ws.recv())["type"] == "ready"


def test_allowed_hosts_are_served_and_others_refused(keyed):
    assert request(keyed, "/health", host=ALLOWED_HOST)[0] == 200
    assert request(keyed, "/v1/history/sessions", AGENTS, host=f"{ALLOWED_HOST}:443")[0] == 200
    assert request(keyed, "/health", host="evil.example")[0] == 421


# ---- 4. uploads read only real media containers ----------------------------------------

async def test_a_playlist_upload_cannot_read_other_files(keyed, shared_audio, tmp_path):
    secret = tmp_path / "other" / "secret-call.wav"
    secret.parent.mkdir()
    shutil.copy(shared_audio / "en" / "jfk.wav", secret)
    for playlist in (f"ffconcat version 1.0\nfile {secret}\n",
                     f"#EXTM3U\n#EXT-X-TARGETDURATION:11\n#EXTINF:11,\nfile://{secret}\n#EXT-X-ENDLIST\n"):
        async with websockets.connect(keyed.url, additional_headers={"X-API-Key": AGENTS}) as ws:
            await ws.send(json.dumps({"type": "start", "mode": "offline", "filename": "x.wav"}))
            await ws.recv()
            await ws.send(playlist.encode())
            await ws.send(json.dumps({"type": "stop"}))
            events = await events_until_closed(ws)
        errors = [e for e in events if e["type"] == "error"]
        assert errors and errors[0]["code"] == "bad_audio" and "formats:" in errors[0]["message"], events
        assert not [e for e in events if e["type"] == "final"]


# ---- 5. keys never reach the log ----------------------------------------------------

async def test_keys_never_reach_the_log(keyed):
    assert request(keyed, "/v1/history/sessions/nope", query_key=AGENTS)[0] == 404
    assert request(keyed, "/v1/history/search?q=%00", query_key=OTHERS)[0] == 400
    async with websockets.connect(keyed.url, subprotocols=["lingting.v1.json", f"lingting.key.{ADMIN}"]) as ws:
        await ws.send(json.dumps({"type": "start"}))
        await ws.recv()
    async with websockets.connect(f"{keyed.url}?api_key={OTHERS}") as ws:     # the server logs this path
        await ws.send(json.dumps({"type": "start"}))
        await ws.recv()
    await asyncio.sleep(0.5)
    text = keyed.log_text()
    assert "api_key=[redacted]" in text and "lingting.key.[redacted]" in text   # logged at DEBUG, without the key
    for secret in (AGENTS, OTHERS, ADMIN, AGENTS[7:], OTHERS[7:], ADMIN[6:]):
        assert secret not in text


# ---- 6. a final survives the worker dying during its decode ----------------------------

async def test_a_final_being_decoded_when_the_worker_dies_still_arrives(keyed, shared_audio):
    pid = health(keyed)["worker_pid"]
    pcm = wav_pcm(shared_audio / "en" / "jfk.wav")
    events = []
    async with websockets.connect(keyed.url, additional_headers={"X-API-Key": AGENTS}) as ws:
        await ws.send(json.dumps({"type": "start", "language": "en", "partials": False}))
        events.append(json.loads(await ws.recv()))
        for i in range(0, len(pcm), 32000):
            await ws.send(pcm[i:i + 32000])
        await ws.send(json.dumps({"type": "stop"}))
        async for message in ws:
            events.append(json.loads(message))
            if events[-1]["type"] == "speech_ended" and pid:
                os.kill(pid, signal.SIGKILL)      # its final is in the worker (or next in line) now
                pid = None
    assert pid is None
    assert not [e for e in events if e["type"] == "error"], events
    finals = [e for e in events if e["type"] == "final"]
    assert finals and all(f["text"] and "error" not in f for f in finals)
    assert "ask not what your country" in finals_text(events).lower()
    assert health(keyed)["worker_restarts"] >= 1


# ---- 7. the smaller ones -------------------------------------------------------------

async def test_deeply_nested_json_is_a_bad_message(server):
    async with websockets.connect(server.url) as ws:
        await ws.send("[" * 100000)
        error = json.loads(await ws.recv())
        assert (error["code"], error["fatal"]) == ("bad_message", False)
        await ws.send(json.dumps({"type": "start"}))       # and the stream goes on
        assert json.loads(await ws.recv())["type"] == "ready"


def test_nul_in_a_search_is_a_client_error(server):
    status, _, body = request(server, "/v1/history/search?q=%00")
    assert status == 400 and json.loads(body)["error"] == "invalid_field"
    assert request(server, "/v1/history/search?q=a%00b")[0] == 400


async def test_the_frame_limit_applies_to_the_message_as_sent(server):
    limit = 1 << 20
    async with websockets.connect(server.url, compression="deflate") as ws:   # incompressible: it grows
        await ws.send(json.dumps({"type": "start", "mode": "offline"}))
        await ws.recv()
        await ws.send(os.urandom(limit))
        progress = json.loads(await asyncio.wait_for(ws.recv(), 30))
        assert progress["type"] == "progress" and progress["received_bytes"] == limit
        await ws.send(os.urandom(limit + 1))
        error = json.loads(await asyncio.wait_for(ws.recv(), 30))
        assert (error["code"], error["fatal"]) == ("too_large", True) and str(limit) in error["message"]
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 30)
    assert ws.close_code == 1009


def test_pages_carry_security_headers(server, keyed):
    status, headers, _ = request(server, "/")
    assert status == 200 and headers["X-Content-Type-Options"] == "nosniff"
    policy = headers["Content-Security-Policy"]
    assert "frame-ancestors 'self'" in policy and "default-src 'self'" in policy and "object-src 'none'" in policy
    assert request(server, "/health")[1]["X-Content-Type-Options"] == "nosniff"
    # The overlay may be embedded where the operator allows it.
    assert f"frame-ancestors {FRAME_ANCESTOR}" in request(keyed, "/?overlay=1")[1]["Content-Security-Policy"]


# ---- 8. the upload spool is bounded in space and time -------------------------------------

async def test_uploads_share_a_disk_budget(keyed):
    async with websockets.connect(keyed.url, additional_headers={"X-API-Key": AGENTS}) as ws:
        await ws.send(json.dumps({"type": "start", "mode": "offline"}))
        await ws.recv()
        try:
            for _ in range(16):                 # 16 MiB against a 12 MiB budget
                await ws.send(b"\0" * (1 << 20))
        except websockets.ConnectionClosed:
            pass
        events = await events_until_closed(ws)
    error = next(e for e in events if e["type"] == "error")
    assert (error["code"], error["fatal"]) == ("overloaded", True) and "upload space" in error["message"]
    assert ws.close_code == 1008
    # The space came back: the next upload fits.
    async with websockets.connect(keyed.url, additional_headers={"X-API-Key": AGENTS}) as ws:
        await ws.send(json.dumps({"type": "start", "mode": "offline"}))
        await ws.recv()
        for _ in range(8):
            await ws.send(b"\0" * (1 << 20))
        progress = [json.loads(await asyncio.wait_for(ws.recv(), 30)) for _ in range(8)]
        assert progress[-1]["received_bytes"] == 8 << 20


async def test_keepalives_do_not_hold_an_upload_open(keyed):
    async with websockets.connect(keyed.url, additional_headers={"X-API-Key": AGENTS}) as ws:
        await ws.send(json.dumps({"type": "start", "mode": "offline"}))
        await ws.recv()
        await ws.send(b"RIFF" + b"\0" * 1000)
        events = []
        with pytest.raises(websockets.ConnectionClosed):
            for _ in range(40):                  # 8 s of keepalives against a 2 s upload idle timeout
                await ws.send(json.dumps({"type": "keepalive"}))
                try:
                    events.append(json.loads(await asyncio.wait_for(ws.recv(), 0.2)))
                except asyncio.TimeoutError:
                    pass
            await ws.recv()
    error = next(e for e in events if e["type"] == "error")
    assert (error["code"], error["fatal"]) == ("idle_timeout", True) and "file data" in error["message"]
    assert ws.close_code == 1008


# ---- issue 34.1 and 34.12: sockets whose key comes in-stream, AudioSocket packets ----------
TWILIO_TOKEN = "twilio-auth-token-" + "t" * 14


@pytest.fixture(scope="module")
def phones(tmp_path_factory):
    """Keys, a Twilio auth token, an AudioSocket port; short deadlines so the tests are quick."""
    from lingting_testkit.servers import free_port
    audiosocket = free_port()
    server = start_server("--model", "whisper-tiny.en", "--model-workers", "1", "--auth-timeout-s", "2",
                          "--idle-timeout-s", "3", "--max-connections", "6", "--twilio-auth-token", TWILIO_TOKEN,
                          "--audiosocket-port", str(audiosocket), "--audiosocket-key", "agents",
                          env={"LINGTING_API_KEYS": f"agents:{AGENTS},others:{OTHERS}"})
    server.audiosocket_port = audiosocket
    yield server
    stop_server(server)


def twilio_signature(server, path="/v1/twilio") -> dict:
    """The header Twilio sends: its own library's signature of the wss:// URL it called."""
    from twilio.request_validator import RequestValidator
    host = urllib.parse.urlsplit(server.http).netloc
    return {"X-Twilio-Signature": RequestValidator(TWILIO_TOKEN).compute_signature(f"wss://{host}{path}", {})}


def twilio_url(server) -> str:
    return server.url.replace("/v1/stream", "/v1/twilio")


async def closed_within(ws, seconds: float, keepalive: str | None = None) -> float:
    """Seconds until the server closes ws (sending keepalive every 0.5 s meanwhile); fails past `seconds`."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        while loop.time() - started < seconds:
            if keepalive:
                await ws.send(keepalive)
            try:
                await asyncio.wait_for(ws.recv(), 0.5)
            except asyncio.TimeoutError:
                pass
    except websockets.ConnectionClosed:
        return loop.time() - started
    raise AssertionError(f"still open after {seconds} s")


async def test_a_twilio_handshake_needs_twilios_signature(phones):
    with pytest.raises(websockets.InvalidStatus) as info:
        async with websockets.connect(twilio_url(phones)):
            pass
    assert info.value.response.status_code == 403
    assert b"X-Twilio-Signature" in info.value.response.body
    with pytest.raises(websockets.InvalidStatus):
        async with websockets.connect(twilio_url(phones), additional_headers={"X-Twilio-Signature": "AAAA"}):
            pass
    async with websockets.connect(twilio_url(phones), additional_headers=twilio_signature(phones)) as ws:
        await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))


async def test_keyless_twilio_sockets_cannot_take_the_servers_streams(phones):
    connected = json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})
    signed = twilio_signature(phones)
    waiting = [await websockets.connect(twilio_url(phones), additional_headers=signed) for _ in range(4)]
    # They wait in their own pool: no stream slot is taken, and a fifth from this address is refused.
    assert health(phones)["streams"] == 0 and health(phones)["unauthenticated"] == 4
    with pytest.raises(websockets.InvalidStatus) as info:
        await websockets.connect(twilio_url(phones), additional_headers=signed)
    assert info.value.response.status_code == 429
    assert b"--max-unauthenticated-per-ip" in info.value.response.body
    # A keyed stream is admitted meanwhile.
    async with websockets.connect(phones.url, additional_headers={"Authorization": f"Bearer {AGENTS}"}) as ws:
        await ws.send(json.dumps({"type": "start", "language": "en"}))
        assert json.loads(await ws.recv())["type"] == "ready"
    # Keep-alives do not extend the deadline to present the key: each is closed after --auth-timeout-s (2 s).
    times = await asyncio.gather(*(closed_within(ws, 6, keepalive=connected) for ws in waiting))
    assert max(times) < 4, times
    assert all(ws.close_code == 1008 for ws in waiting)
    assert health(phones)["unauthenticated"] == 0


async def test_an_unauthenticated_socket_has_a_small_frame_and_message_budget(phones):
    signed = twilio_signature(phones)
    # A 1 MB keep-alive (cheap on the wire with deflate) is refused at once, before it is parsed.
    async with websockets.connect(twilio_url(phones), additional_headers=signed) as ws:
        await ws.send(json.dumps({"event": "connected", "padding": "x" * (1 << 20)}))
        await closed_within(ws, 1)
        assert ws.close_code == 1009
    # Nine messages without a key: closed at the ninth.
    async with websockets.connect(twilio_url(phones), additional_headers=signed) as ws:
        for _ in range(9):
            await ws.send(json.dumps({"event": "connected"}))
        await closed_within(ws, 1)
        assert ws.close_code == 1008


async def test_a_twilio_call_with_its_key_becomes_a_stream_of_its_tenant(phones):
    async with websockets.connect(twilio_url(phones), additional_headers=twilio_signature(phones)) as ws:
        await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await ws.send(json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": "MZ9", "start": {
            "streamSid": "MZ9", "callSid": "CA9", "tracks": ["inbound"], "customParameters": {"api_key": OTHERS},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}))
        for _ in range(50):
            if health(phones)["streams"] == 1:
                break
            await asyncio.sleep(0.1)
        assert health(phones) | {} and health(phones)["streams"] == 1 and health(phones)["unauthenticated"] == 0
        # Past the key's deadline it stays: the deadline was for the key only.
        await asyncio.sleep(2.5)
        await ws.send(json.dumps({"event": "media", "media": {"track": "inbound", "payload": "////"}}))
        await ws.send(json.dumps({"event": "stop", "stop": {}}))
        await closed_within(ws, 10)
        assert ws.close_code == 1000


async def test_an_audiosocket_packet_trickled_a_byte_at_a_time_is_idle(phones):
    import struct
    import uuid
    reader, writer = await asyncio.open_connection("127.0.0.1", phones.audiosocket_port)
    writer.write(struct.pack(">BH", 0x01, 16) + uuid.uuid4().bytes)
    writer.write(struct.pack(">BH", 0x10, 65535))       # a packet claiming 64 KiB...
    started = asyncio.get_running_loop().time()
    try:
        while asyncio.get_running_loop().time() - started < 10:
            writer.write(b"\x00")                        # ...sent a byte a second
            await writer.drain()
            try:
                if await asyncio.wait_for(reader.read(16), 1.0) == b"" or reader.at_eof():
                    break
            except asyncio.TimeoutError:
                pass
    except (ConnectionError, OSError):
        pass
    elapsed = asyncio.get_running_loop().time() - started
    writer.close()
    assert elapsed < 6, f"the call stayed open {elapsed:.1f} s against an idle timeout of 3 s"
