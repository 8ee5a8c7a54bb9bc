"""OpenAI's audio API, driven by the official `openai` SDK against the real
server with the real model and real speech: every response format, streamed
deltas, OpenAI-shaped errors, and a realtime transcription session."""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.request

import numpy as np
import openai
import pytest
import srt
import webvtt

from lingting_testkit.corpus import error_rate, load_manifest
from lingting_testkit.streams import mulaw_encode, resampled

pytestmark = pytest.mark.e2e

FILES = ("en/jfk.wav", "en/leopard_test.wav", "en/librispeech-1995-1837-0001.wav")


def clip(name: str):
    return next(c for c in load_manifest() if c.file == name)


def sdk(server) -> openai.AsyncOpenAI:
    """The SDK pointed at the server (used as `async with`: closed in the test's own loop)."""
    return openai.AsyncOpenAI(base_url=server.http + "/v1", api_key="no keys on this server",
                              websocket_base_url=server.url.rsplit("/v1/", 1)[0] + "/v1", max_retries=0, timeout=180)


def text_of(answer, fmt: str) -> str:
    if fmt == "text":
        return answer
    if fmt == "srt":
        return " ".join(cue.content for cue in srt.parse(answer))
    if fmt == "vtt":
        return " ".join(caption.text for caption in webvtt.from_string(answer))
    return answer.text


@pytest.mark.parametrize("fmt", ["json", "text", "srt", "vtt", "verbose_json"])
async def test_every_response_format_transcribes_real_speech(server, shared_audio, fmt):
    async with sdk(server) as client:
        clips = [clip(name) for name in FILES]
        extra = {"timestamp_granularities": ["word", "segment"]} if fmt == "verbose_json" else {}
        answers = []
        for c in clips:
            with open(c.path, "rb") as f:
                answers.append(await client.audio.transcriptions.create(
                    model="whisper-1", file=f, response_format=fmt, language="en", **extra))
        hypotheses = [text_of(a, fmt) for a in answers]
        rate = error_rate([c.transcript for c in clips], hypotheses, "en")
        print(f"{fmt}: WER {rate:.3f}")
        assert rate <= 0.10, hypotheses
        if fmt == "json":
            assert all(a.usage.type == "duration" and a.usage.seconds == pytest.approx(c.seconds, abs=0.1)
                       for a, c in zip(answers, clips))
        if fmt == "verbose_json":
            for a, c in zip(answers, clips):
                assert a.language == "english" and a.duration == pytest.approx(c.seconds, abs=0.1)
                assert a.segments and all(0 <= s.start < s.end <= c.seconds + 0.1 for s in a.segments)
                assert " ".join(s.text for s in a.segments) == a.text
                starts = [w.start for w in a.words]
                assert len(a.words) >= len(a.text.split()) - 2 and starts == sorted(starts)
                assert all(a.segments[0].start - 0.5 <= w.start <= w.end <= a.segments[-1].end + 1.5
                           for w in a.words)


async def test_a_streamed_transcription_sends_each_utterance_as_a_delta(server, shared_audio):
    async with sdk(server) as client:
        long = clip("long/en_sense_and_sensibility_5utt.wav")
        with open(long.path, "rb") as f:
            stream = await client.audio.transcriptions.create(model="gpt-4o-transcribe", file=f, stream=True,
                                                              language="en")
            events = [event async for event in stream]
        deltas = [e.delta for e in events if e.type == "transcript.text.delta"]
        done = events[-1]
        assert done.type == "transcript.text.done" and len(deltas) >= 2, events
        assert "".join(deltas) == done.text and done.usage.seconds == pytest.approx(long.seconds, abs=0.1)
        rate = error_rate([long.transcript], [done.text], "en")
        print(f"streamed {len(deltas)} deltas, WER {rate:.3f}")
        assert rate <= 0.10, done.text
        # The request is a session like any other: in the history, as a file, with its protocol.
        listing = json.load(urllib.request.urlopen(server.http + "/v1/history/sessions?limit=50", timeout=10))
        ours = [s for s in listing["sessions"] if s.get("filename") == long.path.name]
        assert ours, listing
        stored = json.load(urllib.request.urlopen(f"{server.http}/v1/history/sessions/{ours[0]['id']}", timeout=10))
        assert stored["kind"] == "file" and stored["client"]["subprotocol"] == "openai.http"
        assert stored["status"] == "stopped" and len(stored["utterances"]) == len(deltas)


async def test_errors_come_in_openais_shape(server, tmp_path, shared_audio):
    async with sdk(server) as client:
        not_audio = tmp_path / "notes.wav"
        not_audio.write_text("these are meeting notes, not audio\n" * 50)
        with pytest.raises(openai.BadRequestError) as bad:
            await client.audio.transcriptions.create(model="whisper-1", file=not_audio)
        assert (bad.value.status_code, bad.value.code, bad.value.type, bad.value.param) == (
            400, "bad_audio", "invalid_request_error", "file") and "FFmpeg" in bad.value.message
        with open(clip(FILES[1]).path, "rb") as f, pytest.raises(openai.NotFoundError) as missing:
            await client.audio.transcriptions.create(model="whisper-large-v9", file=f)
        assert missing.value.code == "model_not_found" and missing.value.param == "model"
        with open(clip(FILES[1]).path, "rb") as f, pytest.raises(openai.BadRequestError) as language:
            await client.audio.transcriptions.create(model="whisper-1", file=f, language="xx")
        assert language.value.code == "unsupported" and language.value.param == "language"
        models = [m.id async for m in client.models.list()]
        assert models[0] == "whisper-base" and "whisper-1" in models
        assert (await client.models.retrieve("whisper-1")).owned_by == "lingting"


async def receive_until(connection, done, timeout=120) -> list:
    events = []
    while not done(events):
        events.append(await asyncio.wait_for(connection.recv(), timeout))
    return events


async def test_a_realtime_session_transcribes_real_speech(server, shared_audio):
    """The SDK's realtime client, sending exactly OpenAI's documented events:
    pcm16 at 24 kHz; server VAD ends the first utterance, a commit the second."""
    async with sdk(server) as client:
        first, second = clip(FILES[0]), clip(FILES[1])
        async with client.beta.realtime.connect(model="gpt-4o-transcribe") as connection:
            created = await connection.recv()
            assert created.type == "transcription_session.created"
            await connection.send({"type": "transcription_session.update", "session": {
                "input_audio_format": "pcm16",
                "input_audio_transcription": {"model": "gpt-4o-transcribe", "language": "en", "prompt": ""},
                "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}}})
            updated = await connection.recv()
            assert updated.type == "transcription_session.updated"
            assert updated.session.turn_detection.silence_duration_ms == 500

            async def append(samples: np.ndarray) -> None:
                pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
                for i in range(0, len(pcm), 4800):            # 100 ms of 24 kHz pcm16 per event
                    await connection.input_audio_buffer.append(audio=base64.b64encode(pcm[i:i + 4800]).decode())

            await append(np.concatenate([resampled(first.path, 24000), np.zeros(24000, np.float32)]))
            await append(resampled(second.path, 24000))
            await connection.input_audio_buffer.commit()
            events = await receive_until(connection, all_transcribed)
        kinds = [e.type for e in events]
        assert "error" not in kinds, [e for e in events if e.type == "error"]
        committed = [e for e in events if e.type == "input_audio_buffer.committed"]
        completed = [e for e in events if e.type == "conversation.item.input_audio_transcription.completed"]
        assert [e.item_id for e in completed] == [e.item_id for e in committed]      # in order, one each
        assert [e.previous_item_id for e in committed] == [None, *(e.item_id for e in committed[:-1])]
        # The VAD ended every item but the last, which the commit ended.
        assert kinds.count("input_audio_buffer.speech_started") == len(committed) >= 2
        assert kinds.count("input_audio_buffer.speech_stopped") == len(committed) - 1
        deltas = [e for e in events if e.type == "conversation.item.input_audio_transcription.delta"]
        assert {d.item_id for d in deltas} == {e.item_id for e in completed}     # live text for every item
        said = " ".join(e.transcript for e in completed)
        rate = error_rate([f"{first.transcript} {second.transcript}"], [said], "en")
        print(f"realtime: {len(completed)} items, {len(deltas)} deltas, WER {rate:.3f}")
        assert rate <= 0.10, said


def all_transcribed(seen) -> bool:
    """The commit's item (the last committed, not ended by the VAD) and every one before it are transcribed."""
    committed = [e.item_id for e in seen if e.type == "input_audio_buffer.committed"]
    stopped = {e.item_id for e in seen if e.type == "input_audio_buffer.speech_stopped"}
    completed = {e.item_id for e in seen if e.type == "conversation.item.input_audio_transcription.completed"}
    return bool(committed) and committed[-1] not in stopped and set(committed) <= completed


async def test_a_realtime_session_takes_telephone_audio(server, shared_audio):
    async with sdk(server) as client:
        call = clip("en/cheetah_test_en.wav")
        async with client.beta.realtime.connect(model="whisper-1") as connection:
            await connection.recv()
            await connection.send({"type": "transcription_session.update",
                                   "session": {"input_audio_format": "g711_ulaw", "turn_detection": None}})
            await connection.recv()
            ulaw = mulaw_encode(resampled(call.path, 8000))
            for i in range(0, len(ulaw), 1600):
                await connection.input_audio_buffer.append(audio=base64.b64encode(ulaw[i:i + 1600]).decode())
            await connection.input_audio_buffer.commit()
            events = await receive_until(connection, lambda seen: seen and seen[-1].type.endswith(
                "input_audio_transcription.completed"))
        assert error_rate([call.transcript], [events[-1].transcript], "en") <= 0.15, events[-1].transcript
        assert "input_audio_buffer.speech_stopped" not in [e.type for e in events]    # no turn detection: the commit
