"""Issue 34, findings 5 and 9: every body the server parses is bounded (a form's
fields, a JSON body), a form's file goes through the upload limits of
/v1/files, and what users name cannot reshape an export. Unit and in-process
edge tests first, then the audit's reproductions against a real server (e2e)."""

from __future__ import annotations

import asyncio
import http.client
import json
import time
import urllib.parse
import urllib.request

import httpx
import pytest
import srt
import webvtt

from lingting_server.text.export import render
from lingting_testkit.inprocess import edge_server
from lingting_testkit.servers import start_server, stop_server

SESSION = "s1"


def stored(names: dict | None = None, text: str = "fine") -> dict:
    return {"id": SESSION, "speaker_names": names or {}, "utterances": [
        {"idx": 0, "start_ms": 0, "end_ms": 900, "text": text, "speaker": "S1"},
        {"idx": 1, "start_ms": 1000, "end_ms": 1900, "text": "and you", "speaker": "S2"}]}


# ---- exports: a name or a text is one line of one cue ------------------------------------------------
@pytest.mark.parametrize("name, text", [
    ("Ann\n\n00:00:05.000 --> 00:00:09.000\ninjected", "fine"),
    ("Ann", "fine\r\n\r\n2\n00:00:05,000 --> 00:00:09,000\ninjected"),
    ("Ann\u2028WEBVTT", "a --> b <c.x>&amp;"),
])
def test_a_name_or_text_never_adds_a_cue_a_line_or_a_header(name, text):
    session = stored({"S1": name}, text)
    assert len(list(srt.parse(render(session, "srt")))) == 2
    vtt = render(session, "vtt")
    cues = webvtt.from_string(vtt)
    assert len(cues) == 2 and vtt.count("-->") == 2 and vtt.startswith("WEBVTT\n\n")
    assert "injected" not in cues[1].text
    txt = render(session, "txt")
    assert txt.count("\n") == 2 and txt.endswith("S2: and you\n")
    assert json.loads(render(session, "json"))["speaker_names"]["S1"] == name     # JSON escapes it itself


def test_vtt_cue_text_is_escaped_as_webvtt_asks():
    vtt = render(stored(text="a --> b <i>x</i> & y"), "vtt")
    assert "S1: a --&gt; b &lt;i&gt;x&lt;/i&gt; &amp; y" in vtt and vtt.count("-->") == 2


# ---- the history PATCH: a bounded body, bounded names -------------------------------------------------
async def raw_patch(edge, headers: str, body: bytes = b"") -> tuple[int, dict]:
    reader, writer = await asyncio.open_connection("127.0.0.1", edge.server.port)
    writer.write(f"PATCH /v1/history/sessions/{SESSION} HTTP/1.1\r\nHost: 127.0.0.1:{edge.server.port}\r\n"
                 f"Content-Type: application/json\r\n{headers}\r\n".encode() + body)
    await writer.drain()
    head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).decode().split("\r\n")
    length = next(int(h.split(":")[1]) for h in head if h.lower().startswith("content-length:"))
    answer = json.loads(await reader.readexactly(length))
    writer.close()
    return int(head[0].split()[1]), answer


def history_edge(tmp_path, **limits):
    return edge_server(history_path=str(tmp_path / "h.sqlite3"), **limits)


def add_session(edge) -> None:
    store = edge.lingting.history.store
    store.open_session(SESSION, "file")
    for u in stored()["utterances"]:
        store.add_utterance(SESSION, {"utterance": u["idx"], **u})


async def test_a_json_body_is_refused_past_its_limit_before_it_is_read(tmp_path):
    async with history_edge(tmp_path) as edge:
        add_session(edge)
        status, answer = await raw_patch(edge, "Content-Length: 200000000\r\n")    # nothing of it sent
        assert status == 413 and answer["error"] == "too_large" and "--max-body-kb" in answer["message"]
        chunk = b"%x\r\n%s\r\n" % (1 << 16, b" " * (1 << 16))
        status, answer = await raw_patch(edge, "Transfer-Encoding: chunked\r\n", chunk * 4)   # no length: counted
        assert status == 413 and answer["error"] == "too_large"


async def test_speaker_names_are_bounded(tmp_path):
    async with history_edge(tmp_path, max_body_kb=256) as edge, httpx.AsyncClient(base_url=edge.http) as client:
        add_session(edge)

        async def patch(names) -> httpx.Response:
            return await client.patch(f"/v1/history/sessions/{SESSION}", json={"speaker_names": names})

        for names in ({"S1": "Ann\nWEBVTT"}, {"S1": "Ann\x00"}, {"S1\r": "Ann"}, {"S1": "x" * 81}):
            answer = await patch(names)
            assert answer.status_code == 400 and "control characters" in answer.json()["message"], names
        answer = await patch({f"S{n}": "someone" for n in range(3, 10_001)})
        assert answer.status_code == 400 and "up to 100 labels" in answer.json()["message"]
        answer = await patch({"S1": "Ann", "S3": "someone"})
        assert answer.status_code == 400 and "no speaker 'S3'" in answer.json()["message"]   # not one of this session
        answer = await patch({"S1": "Dr. Chen", "S2": "Bob"})
        assert answer.status_code == 200 and answer.json()["speaker_names"] == {"S1": "Dr. Chen", "S2": "Bob"}
        assert (await patch({"S2": ""})).json()["speaker_names"] == {"S1": "Dr. Chen"}   # a name still goes


# ---- against a real server (the audit's reproductions) ------------------------------------------------
FORM_HEAD = (b'--b\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n'
             b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n')


@pytest.fixture(scope="module")
def limited():
    server = start_server("--model", "whisper-tiny.en", "--max-connections", "2", "--max-spool-gb", "0.05",
                          "--upload-idle-timeout-s", "2", "--model-workers", "1")
    yield server
    stop_server(server)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def health(server) -> dict:
    with urllib.request.urlopen(server.http + "/health", timeout=10) as r:
        return json.load(r)


@pytest.mark.e2e
async def test_stalled_openai_uploads_are_counted_budgeted_and_timed_out(limited):
    port = urllib.parse.urlsplit(limited.http).port
    total = len(FORM_HEAD) + (20 << 20) + 8

    async def upload():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: "
                     f"multipart/form-data; boundary=b\r\nContent-Length: {total}\r\n\r\n".encode() + FORM_HEAD)
        try:
            writer.write(b"\0" * (20 << 20))           # the server stops reading at its budget
            await asyncio.wait_for(writer.drain(), 1)
        except (asyncio.TimeoutError, ConnectionError):
            pass
        return reader, writer

    started = time.monotonic()
    uploads = [await upload() for _ in range(6)]
    assert health(limited)["streams"] <= 2
    statuses = []
    for reader, writer in uploads:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 15)
            statuses.append(int(head.split()[1]))
        except ConnectionResetError:       # refused before its body was read: the answer may be lost with it
            statuses.append(503)
        writer.close()
    assert time.monotonic() - started < 15                # not the 45 s of the audit
    assert sorted(statuses) == [408, 408, 503, 503, 503, 503], statuses
    assert health(limited)["streams"] == 0


@pytest.mark.e2e
def test_a_huge_json_body_is_refused_before_it_is_read(limited):
    before = rss_mb(limited.process.pid)
    parts = urllib.parse.urlsplit(limited.http)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.putrequest("PATCH", "/v1/history/sessions/nothing")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(200 << 20))
    conn.endheaders()
    try:
        for _ in range(20):
            conn.send(b" " * (1 << 20))
    except (BrokenPipeError, ConnectionResetError):
        pass
    response = conn.getresponse()
    assert response.status == 413 and b"--max-body-kb" in response.read()
    conn.close()
    assert rss_mb(limited.process.pid) - before < 50
