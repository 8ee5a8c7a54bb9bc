"""OpenAI's API at the edge, in-process with a recording engine: keys and
tenants, form errors, limits, the realtime handshake, history."""

from __future__ import annotations

import base64
import json

import httpx
import numpy as np
import openai
import pytest
import websockets

from lingting_server.access import ApiKey
from lingting_testkit.inprocess import edge_server
from lingting_testkit.streams import wav_file
from lingting_testkit.synth import silence, to_s16, voice

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
