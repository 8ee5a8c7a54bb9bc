"""OpenAI's API at the edge, in-process with a recording engine: keys and
tenants, form errors, limits, the realtime handshake, history."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import tempfile

import httpx
import numpy as np
import openai
import pytest
import websockets

from lingting_server.services.access import ApiKey
from lingting_testkit.inprocess import edge_server
from lingting_testkit.streams import wav_file
from lingting_testkit.synth import silence, to_s16, voice
from lingting_testkit.waiting import until

AGENTS = ApiKey("agents", "agents-" + "a" * 24)
OTHERS = ApiKey("others", "others-" + "o" * 24)
SPEECH = wav_file(to_s16(np.concatenate([silence(0.3), voice(0.8), silence(1.0)])))


def sdk(edge, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=edge.http + "/v1", websocket_base_url=edge.ws + "/v1", api_key=key,
                              max_retries=0, timeout=30)


async def test_keys_tenants_and_history(tmp_path):
    async with edge_server(keys=(AGENTS, OTHERS), history_path=str(tmp_path / "h.sqlite3")) as edge:
        async with sdk(edge, "wrong-" + "w" * 24) as stranger:
            with pytest.raises(openai.AuthenticationError) as refused:
                await stranger.audio.transcriptions.create(model="whisper-1", file=("a.wav", SPEECH))
            assert refused.value.code == "invalid_api_key" and refused.value.status_code == 401
            with pytest.raises(openai.AuthenticationError):
                await stranger.models.list()
        async with sdk(edge, AGENTS.secret) as agents:
            answer = await agents.audio.transcriptions.create(model="whisper-1", file=("call.wav", SPEECH))
            assert answer.text == "hello world"
            async with agents.beta.realtime.connect(model="whisper-1") as connection:
                assert (await connection.recv()).type == "transcription_session.created"
                pcm = to_s16(np.concatenate([voice(1.2), silence(2.0)]))     # read as 24 kHz: 0.8 s, 1.33 s
                await connection.input_audio_buffer.append(audio=base64.b64encode(pcm).decode())
                while (event := await connection.recv()).type != "conversation.item.input_audio_transcription.completed":
                    assert event.type != "error", event
                assert event.transcript == "hello world"
        async with httpx.AsyncClient(base_url=edge.http, timeout=30) as http:
            def sessions(key):
                return http.get("/v1/history/sessions", headers={"Authorization": f"Bearer {key.secret}"})
            mine = (await sessions(AGENTS)).json()["sessions"]
            assert sorted(s["kind"] for s in mine) == ["file", "stream"]
            assert (await sessions(OTHERS)).json()["sessions"] == []
            for s in mine:
                stored = (await http.get(f"/v1/history/sessions/{s['id']}", headers={"X-API-Key": AGENTS.secret})).json()
                assert stored["client"]["subprotocol"] == {"file": "openai.http", "stream": "openai.realtime"}[s["kind"]]
                assert [u["text"] for u in stored["utterances"]] == ["hello world"]


async def test_form_errors_are_named_with_their_field():
    async with edge_server(max_file_mb=1) as edge, httpx.AsyncClient(base_url=edge.http + "/v1", timeout=30) as http:
        async def post(**kwargs):
            response = await http.post("/audio/transcriptions", **kwargs)
            return response.status_code, response.json()["error"]

        status, error = await post(files={"audio": ("a.wav", SPEECH)}, data={"model": "whisper-1"})
        assert (status, error["param"], error["type"]) == (400, "file", "invalid_request_error")
        status, error = await post(files={"file": ("a.wav", SPEECH)})
        assert (status, error["param"], error["code"]) == (400, "model", "invalid_field")
        for field, value in (("response_format", "docx"), ("temperature", "hot"), ("stream", "maybe"),
                             ("timestamp_granularities[]", "syllable")):
            status, error = await post(files={"file": ("a.wav", SPEECH)}, data={"model": "whisper-1", field: value})
            assert status == 400 and error["param"] == field.rstrip("[]"), (field, error)
        status, error = await post(content=SPEECH, headers={"Content-Type": "audio/wav"})
        assert status == 400 and "multipart" in error["message"]
        status, error = await post(files={"file": ("big.wav", b"\0" * (3 << 20))}, data={"model": "whisper-1"})
        assert (status, error["code"]) == (413, "too_large")
        status, error = await post(content=b"--x\r\nnot a form", headers={"Content-Type": "multipart/form-data"})
        assert status == 400 and "multipart" in error["message"]
        assert not edge.lingting.streams
        # The fields may come after the file (curl -F file=@... -F model=...).
        body = (b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n' + SPEECH +
                b'\r\n--b\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n'
                b'--b\r\nContent-Disposition: form-data; name="response_format"\r\n\r\ntext\r\n--b--\r\n')
        late = await http.post("/audio/transcriptions", content=body,
                               headers={"Content-Type": "multipart/form-data; boundary=b"})
        assert late.status_code == 200 and late.text == "hello world\n"


async def test_realtime_refusals_and_protocol_errors():
    async with edge_server() as edge:
        with pytest.raises(websockets.InvalidStatus) as unknown:
            await websockets.connect(edge.ws + "/v1/realtime?model=whisper-9")
        assert unknown.value.response.status_code == 404
        async with websockets.connect(edge.ws + "/v1/realtime?model=whisper-1", subprotocols=["realtime"]) as ws:
            assert ws.subprotocol == "realtime"
            assert json.loads(await ws.recv())["type"] == "transcription_session.created"
            await ws.send(json.dumps({"type": "input_audio_buffer.commit", "event_id": "mine"}))
            error = json.loads(await ws.recv())
            assert error["type"] == "error" and error["error"]["code"] == "no_speech"
            assert error["error"]["event_id"] == "mine"
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": "%%%"}))
            assert json.loads(await ws.recv())["error"]["code"] == "bad_audio"
            await ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
            assert json.loads(await ws.recv())["type"] == "input_audio_buffer.cleared"


# ---- a form upload goes through the same limits as /v1/files (issue 34.5) ------------------------
LONG_SPEECH = wav_file(to_s16(np.concatenate([silence(0.3), voice(0.8), silence(70.0)])))      # ~2.3 MB
FORM_HEAD = (b'--b\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n'
             b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
             b'Content-Type: audio/wav\r\n\r\n')
FORM_TAIL = b"\r\n--b--\r\n"


async def open_form(edge, sent: bytes, total: int):
    """A transcription request whose body stops after `sent` (of `total` bytes): the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", edge.server.port)
    writer.write(f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: 127.0.0.1:{edge.server.port}\r\n"
                 f"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {total}\r\n\r\n".encode() + sent)
    await writer.drain()
    return reader, writer


async def read_response(reader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    length = next(int(line.split(":")[1]) for line in lines if line.lower().startswith("content-length:"))
    return int(lines[0].split()[1]), await reader.readexactly(length)


async def test_a_stalled_form_upload_is_a_stream_spooled_once_and_timed_out(tmp_path, monkeypatch):
    elsewhere = tmp_path / "tmp"           # where a second copy (a form parser's temp file) would land
    elsewhere.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(elsewhere))
    total = len(FORM_HEAD) + len(LONG_SPEECH) + len(FORM_TAIL)
    async with edge_server(max_connections=2, upload_idle_timeout_s=1, spool_dir=str(tmp_path / "spool")) as edge:
        stalled = [await open_form(edge, FORM_HEAD + LONG_SPEECH[:1 << 20], total) for _ in range(2)]
        await until(lambda: edge.lingting.spool.used >= 2 << 20)   # both files' bytes, in the budget
        assert len(edge.lingting.streams) == 2 and os.listdir(elsewhere) == []
        async with httpx.AsyncClient(base_url=edge.http + "/v1", timeout=30) as http:
            third = await http.post("/audio/transcriptions", files={"file": ("a.wav", SPEECH)},
                                    data={"model": "whisper-1"})
        assert third.status_code == 503 and third.json()["error"]["code"] == "overloaded"
        for reader, writer in stalled:
            status, body = await asyncio.wait_for(read_response(reader), 10)
            error = json.loads(body)["error"]
            assert status == 408 and error["code"] == "idle_timeout" and "upload-idle-timeout" in error["message"]
            writer.close()
        await until(lambda: not edge.lingting.streams and edge.lingting.spool.used == 0)


async def test_a_form_upload_takes_its_space_from_the_spool_budget(tmp_path):
    total = len(FORM_HEAD) + len(LONG_SPEECH) + len(FORM_TAIL)
    async with edge_server(max_spool_gb=3 / 1024, spool_dir=str(tmp_path / "spool")) as edge:
        reader, writer = await open_form(edge, FORM_HEAD + LONG_SPEECH[:2 << 20], total)
        await until(lambda: edge.lingting.spool.used >= 2 << 20)
        async with httpx.AsyncClient(base_url=edge.http + "/v1", timeout=30) as http:
            refused = await http.post("/audio/transcriptions", files={"file": ("b.wav", LONG_SPEECH)},
                                      data={"model": "whisper-1"})
        error = refused.json()["error"]
        assert refused.status_code == 503 and error["code"] == "overloaded" and "upload space" in error["message"]
        writer.write(LONG_SPEECH[2 << 20:] + FORM_TAIL)         # the first goes on, and is transcribed
        status, body = await asyncio.wait_for(read_response(reader), 30)
        assert status == 200 and json.loads(body)["text"] == "hello world"
        writer.close()
        await until(lambda: edge.lingting.spool.used == 0)
