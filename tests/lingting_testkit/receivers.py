"""Local stand-ins for the services Lingting sends to, each following its
platform's documented request format and refusing malformed requests:

- a webhook receiver that checks X-Lingting-Signature (HMAC-SHA256 over
  "t.body", within 5 minutes) and records each delivery by its Idempotency-Key;
- YouTube Live's HTTP caption ingestion: POST ?...&seq=N, text/plain, body
  "YYYY-MM-DDTHH:MM:SS.mmm" line(s) each followed by caption text;
- Zoom's caption API token URL: POST /closedcaption?id&ns&expire&signature&seq&lang,
  text/plain; GET /closedcaption/seq answers the last seq taken;
- obs-websocket 5: Hello with an authentication challenge, Identify checked,
  SendStreamCaption requests answered.

It can go down and come back on the same port (the webhook outage test)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass, field

import uvicorn
import websockets
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from .servers import free_port

YOUTUBE_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}")


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):      # the test process keeps its own signal handling
        yield


@dataclass
class Received:
    webhooks: list = field(default_factory=list)        # (idempotency key, headers, body dict)
    bad_signatures: int = 0
    youtube: list = field(default_factory=list)         # (seq, timestamp, text)
    zoom: list = field(default_factory=list)            # (seq, lang, text)
    refused: list = field(default_factory=list)         # (service, why)
    arrivals: list = field(default_factory=list)        # (service, time.monotonic()) of each accepted request


class Receivers:
    """The HTTP services on one port."""

    def __init__(self, webhook_secret: str, zoom_last_seq: int = 0):
        self.secret = webhook_secret
        self.zoom_last_seq = zoom_last_seq
        self.got = Received()
        self.port = free_port()
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task | None = None
        self.app = Starlette(routes=[Route("/hook", self.hook, methods=["POST"]),
                                     Route("/youtube/closedcaption", self.youtube, methods=["POST"]),
                                     Route("/closedcaption", self.zoom, methods=["POST"]),
                                     Route("/closedcaption/seq", self.zoom_seq, methods=["GET"])])

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def up(self) -> None:
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_config=None, lifespan="off")
        self._server = _Server(config)
        self._task = asyncio.get_running_loop().create_task(self._server.serve())
        while not self._server.started:
            await asyncio.sleep(0.01)

    async def down(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            await self._task
            self._server = None

    def _refuse(self, service: str, why: str, status: int = 400) -> Response:
        self.got.refused.append((service, why))
        return PlainTextResponse(why, status)

    async def hook(self, request: Request) -> Response:
        body = await request.body()
        header = request.headers.get("X-Lingting-Signature", "")
        fields = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
        expected = hmac.new(self.secret.encode(), f"{fields.get('t', '')}.".encode() + body, hashlib.sha256).hexdigest()
        if not (fields.get("t", "").isdigit() and abs(time.time() - int(fields["t"])) < 300
                and hmac.compare_digest(expected, fields.get("v1", ""))):
            self.got.bad_signatures += 1
            return self._refuse("webhook", "bad signature", 401)
        key = request.headers.get("Idempotency-Key")
        if not key or request.headers.get("Content-Type") != "application/json":
            return self._refuse("webhook", "no idempotency key or not JSON")
        self.got.webhooks.append((key, dict(request.headers), json.loads(body)))
        self.got.arrivals.append(("webhook", time.monotonic()))
        return Response(status_code=204)

    async def youtube(self, request: Request) -> Response:
        seq = request.query_params.get("seq", "")
        if not request.headers.get("Content-Type", "").startswith("text/plain"):
            return self._refuse("youtube", "content type must be text/plain")
        if not seq.isdigit() or "cid" not in request.query_params:
            return self._refuse("youtube", "cid and a numeric seq are required")
        lines = (await request.body()).decode().rstrip("\n").split("\n")
        if len(lines) < 2 or len(lines) % 2 or not all(YOUTUBE_TIME.fullmatch(t) for t in lines[0::2]) \
                or not all(text.strip() for text in lines[1::2]):
            return self._refuse("youtube", f"body must be timestamp/text line pairs: {lines!r}")
        for stamp, text in zip(lines[0::2], lines[1::2]):
            self.got.youtube.append((int(seq), stamp, text))
        self.got.arrivals.append(("youtube", time.monotonic()))
        return PlainTextResponse(lines[0] + "\n")

    def _zoom_signed(self, request: Request) -> bool:
        return all(request.query_params.get(k) for k in ("id", "ns", "expire", "signature"))

    async def zoom(self, request: Request) -> Response:
        seq, lang = request.query_params.get("seq", ""), request.query_params.get("lang", "")
        if not self._zoom_signed(request) or not seq.isdigit():
            return self._refuse("zoom", "missing seq, id, ns, expire or signature", 401)
        if not request.headers.get("Content-Type", "").startswith("text/plain") or not re.fullmatch(
                r"[a-z]{2}-[A-Z]{2}", lang):
            return self._refuse("zoom", "text/plain and lang=xx-XX required")
        text = (await request.body()).decode()
        if not text.strip():
            return self._refuse("zoom", "empty caption")
        self.zoom_last_seq = int(seq)
        self.got.zoom.append((int(seq), lang, text.rstrip("\n")))
        return PlainTextResponse("")

    async def zoom_seq(self, request: Request) -> Response:
        if not self._zoom_signed(request):
            return self._refuse("zoom", "unsigned seq request", 401)
        return PlainTextResponse(str(self.zoom_last_seq))


class ObsServer:
    """obs-websocket 5 with a password."""

    def __init__(self, password: str):
        self.password = password
        self.captions: list[str] = []
        self.failed_identifies = 0
        self.port = free_port()
        self._server = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await websockets.serve(self._session, "127.0.0.1", self.port,
                                              subprotocols=["obswebsocket.json"])

    async def stop(self) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def _session(self, ws) -> None:
        salt, challenge = base64.b64encode(b"salt-123").decode(), base64.b64encode(b"challenge-456").decode()
        await ws.send(json.dumps({"op": 0, "d": {"obsWebSocketVersion": "5.5.0", "rpcVersion": 1,
                                                 "authentication": {"challenge": challenge, "salt": salt}}}))
        identify = json.loads(await ws.recv())
        secret = base64.b64encode(hashlib.sha256((self.password + salt).encode()).digest()).decode()
        expected = base64.b64encode(hashlib.sha256((secret + challenge).encode()).digest()).decode()
        if identify.get("op") != 1 or identify["d"].get("rpcVersion") != 1 or \
                identify["d"].get("authentication") != expected:
            self.failed_identifies += 1
            await ws.close(4009, "Authentication failed")
            return
        await ws.send(json.dumps({"op": 2, "d": {"negotiatedRpcVersion": 1}}))
        async for message in ws:
            request = json.loads(message)
            d = request.get("d", {})
            ok = request.get("op") == 6 and d.get("requestType") == "SendStreamCaption" and \
                isinstance(d.get("requestData", {}).get("captionText"), str)
            if ok:
                self.captions.append(d["requestData"]["captionText"])
            await ws.send(json.dumps({"op": 7, "d": {"requestType": d.get("requestType"),
                                                     "requestId": d.get("requestId"),
                                                     "requestStatus": {"result": ok, "code": 100 if ok else 400}}}))
