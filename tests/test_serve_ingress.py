"""The edge app under a proxy like Ray Serve's (issue 34.14): Serve's proxy is
a plain uvicorn with its defaults (16 MiB frames, no request-header timeout),
not EdgeServer's settings. The frame cap must hold in the app itself."""

from __future__ import annotations

import asyncio
import contextlib
import json

import uvicorn
import websockets

from lingting_server.edge.app import build_app
from lingting_testkit.inprocess import edge_server
from lingting_testkit.servers import free_port
from lingting_testkit.streams import events_until_closed


class _Proxy(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):      # the test process keeps its own signal handling
        yield


async def test_the_app_refuses_a_frame_over_max_frame_bytes_that_the_proxy_let_through():
    async with edge_server(max_frame_bytes=10000) as edge:
        port = free_port()
        # As ray/serve/_private/http_util.py starts its proxy: uvicorn's defaults for WebSockets.
        proxy = _Proxy(uvicorn.Config(build_app(edge.lingting), host="127.0.0.1", port=port, lifespan="off",
                                      access_log=False, log_config=None))
        serving = asyncio.get_running_loop().create_task(proxy.serve())
        while not proxy.started:
            await asyncio.sleep(0.01)
        try:
            async with websockets.connect(f"ws://127.0.0.1:{port}/v1/stream", max_size=None) as ws:
                await ws.send(json.dumps({"type": "start"}))
                await ws.send(b"\0" * 100000)               # 10x the cap, far under uvicorn's 16 MiB
                events = await events_until_closed(ws)
            assert (ws.close_code, ws.close_reason) == (1009, "message too big")
            assert events[-1]["code"] == "too_large" and "10000" in events[-1]["message"]
        finally:
            proxy.should_exit = True
            await serving
