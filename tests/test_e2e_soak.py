"""A short soak in CI (bench/soak.py runs longer): hundreds of connect /
stream / disconnect cycles, and the server's memory must not grow with them."""

from __future__ import annotations

import psutil
import pytest

from lingting_testkit.servers import start_server, stop_server
from lingting_testkit.soak import soak, speech

pytestmark = pytest.mark.e2e


async def test_memory_does_not_grow_per_connection(shared_audio):
    server = start_server("--history-db", "off")
    try:
        process = psutil.Process(server.process.pid)
        pcm = speech()
        warm = await soak(server.url, 60, 4, pcm)
        before = process.memory_info().rss
        result = await soak(server.url, 300, 4, pcm)
        grown = process.memory_info().rss - before
        print(f"server RSS {before / 2**20:.1f} MB, +{grown / 2**20:.2f} MB after 300 cycles")
        assert warm["failures"] == 0 and result["failures"] == 0
        assert grown < 10 * 2**20, f"server grew {grown / 2**20:.1f} MB over 300 connections"
        assert process.is_running() and not server.process.poll()
    finally:
        stop_server(server)
