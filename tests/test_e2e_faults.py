"""The model worker crashes or hangs mid-stream: the streams get error events,
the worker is replaced, and recognition goes on."""

from __future__ import annotations

import json
import os
import signal
import urllib.request

import pytest

from lingting_testkit.servers import start_server, stop_server
from lingting_client import StreamOptions
from lingting_testkit.streams import finals_text, stream_events, wav_pcm

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def fragile():
    server = start_server("--decode-timeout-s", "8", "--model-workers", "1")   # the one worker is the one at fault
    yield server
    stop_server(server)


def health(server) -> dict:
    with urllib.request.urlopen(server.http + "/health", timeout=10) as r:
        return json.load(r)


@pytest.mark.parametrize("fault, why", [(signal.SIGKILL, "died"), (signal.SIGSTOP, "hung")])
async def test_worker_fault_gives_errors_then_recovers(fragile, shared_audio, fault, why):
    before = health(fragile)
    os.kill(before["worker_pid"], fault)
    pcm = wav_pcm(shared_audio / "en" / "jfk.wav")
    events = await stream_events(fragile.url, pcm, StreamOptions(language="en", speed=1.5))
    errors = [e for e in events if e["type"] == "error"]
    assert errors and all(e["code"] == "decode_failed" and not e["fatal"] for e in errors)
    assert why in errors[0]["message"] and "restarted" in errors[0]["message"]
    assert events[-1]["type"] == "stopped"          # the stream itself carried on
    after = health(fragile)
    assert after["worker_pid"] != before["worker_pid"] and after["worker_restarts"] == before["worker_restarts"] + 1
    assert f"model worker {before['worker_pid']}" in fragile.log_text()
    # The new worker recognizes speech as well as the old one.
    events = await stream_events(fragile.url, pcm, StreamOptions(language="en", speed=0))
    assert "ask not what your country" in finals_text(events).lower()
    assert not [e for e in events if e["type"] == "error"]
