"""Caption outputs: a stream's finals posted to YouTube Live, a Zoom meeting
or OBS as they come, each output in order on its own task, so a slow or
failing output never holds up recognition or another output. A caption that
cannot be delivered after a few tries is reported to the speaker as a
non-fatal `error` (output_failed) and the next one goes on.

    YouTube Live (HTTP captions): POST url&seq=N, text/plain, a UTC time line
        YYYY-MM-DDTHH:MM:SS.mmm, then the text (line breaks as <br>)
    Zoom (caption API token): POST url&seq=N&lang=L, text/plain, the text;
        seq resumes after GET .../closedcaption/seq (the last one Zoom took)
    OBS (obs-websocket 5): Hello / Identify (with its challenge-response
        authentication) / Identified, then a SendStreamCaption request each

seq grows by one per new caption, never on a retry."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import time
import uuid
from datetime import datetime, timezone
from urllib.parse import urlsplit, urlunsplit

import httpx
import websockets

from ..wire.errors import ErrorCode, ProtocolError
from ..protocols.outputs import CaptionTarget
from ..wire import events
from ..wire.audio import MODEL_RATE
from ..streaming.session import Session
from . import outbound
from .sinks import Sink

log = logging.getLogger("lingting.captions")
TRIES = 3
RETRY_S = (0.5, 1.0, 2.0)
QUEUE = 64                 # captions waiting for one output; past it the oldest goes (it is stale by then)
OBS_RPC_VERSION = 1
OBS_QUEUE = 4               # messages from OBS received and not yet read


class DeliveryFailed(Exception):
    pass


def caption_text(final: events.Final) -> str:
    return f"{final.speaker}: {final.text}" if final.speaker else final.text


def youtube_time(at: float) -> str:
    moment = datetime.fromtimestamp(at, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def with_query(url: str, **params) -> str:
    parts = urlsplit(url)
    extra = "&".join(f"{k}={v}" for k, v in params.items())
    return urlunsplit(parts._replace(query=f"{parts.query}&{extra}" if parts.query else extra))


class Output:
    """One target: a queue of (text, spoken_at) and the task that sends them."""
    kind = ""

    def __init__(self, target: CaptionTarget, http: httpx.AsyncClient, allow_private: bool, report, metrics):
        self.target = target
        self.http = http
        self.allow_private = allow_private
        self.report = report
        self.metrics = metrics
        self.queue: asyncio.Queue = asyncio.Queue()
        self.sent = 0
        self.task = asyncio.get_running_loop().create_task(self._run())

    def put(self, text: str, spoken_at: float) -> None:
        if self.queue.qsize() >= QUEUE:
            self.queue.get_nowait()
        self.queue.put_nowait((text, spoken_at))

    async def _run(self) -> None:
        while (item := await self.queue.get()) is not None:
            text, spoken_at = item
            try:
                await self._with_retries(text, spoken_at)
                self.sent += 1
                self._count("sent")
            except DeliveryFailed as exc:
                self._count("failed")
                self.report(ProtocolError(ErrorCode.OUTPUT_FAILED, f"{self.kind} captions: {exc}"))
            except outbound.TargetRefused as exc:
                self._count("refused")
                self.report(ProtocolError(ErrorCode.OUTPUT_REFUSED, f"{self.kind} captions: {exc}; this output "
                                                                    "is off for the stream"))
                return
        await self.stop()

    async def _with_retries(self, text: str, spoken_at: float) -> None:
        for attempt in range(TRIES):
            try:
                await self.send(text, spoken_at)
                return
            except DeliveryFailed as exc:
                if attempt == TRIES - 1:
                    raise
                log.info("%s captions: %s; retrying", self.kind, exc)
                await asyncio.sleep(RETRY_S[attempt])

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.captions.labels(self.kind, outcome).inc()

    async def send(self, text: str, spoken_at: float) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        pass

    async def _post(self, url: str, body: str) -> None:
        try:
            response = await outbound.request(self.http, "POST", url, self.allow_private, content=body.encode(),
                                              headers={"Content-Type": "text/plain; charset=utf-8"})
        except httpx.HTTPError as exc:
            raise DeliveryFailed(f"{type(exc).__name__} {exc}".strip()) from None
        if not 200 <= response.status_code < 300:
            raise DeliveryFailed(f"HTTP {response.status_code}: {response.text[:200]}")


class YouTubeOutput(Output):
    kind = "youtube"

    def __init__(self, *args):
        super().__init__(*args)
        self.seq = 1

    async def send(self, text: str, spoken_at: float) -> None:
        await self._post(with_query(self.target.url, seq=self.seq),
                         f"{youtube_time(spoken_at)}\n{text.replace(chr(10), '<br>')}\n")
        self.seq += 1


class ZoomOutput(Output):
    kind = "zoom"

    def __init__(self, *args):
        super().__init__(*args)
        self.seq: int | None = None

    def seq_url(self) -> str:
        parts = urlsplit(self.target.url)
        return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/seq"))

    async def _resume(self) -> int:
        """The seq after the last one Zoom took (a restarted captioner goes on from there)."""
        try:
            response = await outbound.request(self.http, "GET", self.seq_url(), self.allow_private)
            if response.status_code == 200 and response.text.strip().isdigit():
                return int(response.text.strip()) + 1
        except httpx.HTTPError:
            pass
        return 1

    async def send(self, text: str, spoken_at: float) -> None:
        if self.seq is None:
            self.seq = await self._resume()
        await self._post(with_query(self.target.url, seq=self.seq, lang=self.target.lang), text + "\n")
        self.seq += 1


def obs_authentication(password: str, salt: str, challenge: str) -> str:
    """obs-websocket 5: base64(sha256(base64(sha256(password + salt)) + challenge))."""
    secret = base64.b64encode(hashlib.sha256((password + salt).encode()).digest()).decode()
    return base64.b64encode(hashlib.sha256((secret + challenge).encode()).digest()).decode()


class ObsOutput(Output):
    kind = "obs"

    def __init__(self, *args):
        super().__init__(*args)
        self.ws = None

    async def _connect(self):
        target = await outbound.resolve(self.target.url, self.allow_private)
        # To the checked address; TLS still checks the URL's host name.
        # obs-websocket's messages are small: a receiver's larger ones close the connection (1009), and
        # few wait unread, so what it sends costs little memory whatever it sends.
        ws = await websockets.connect(self.target.url, host=target.address, port=target.port, proxy=None,
                                      subprotocols=["obswebsocket.json"], open_timeout=outbound.TIMEOUT_S,
                                      max_size=outbound.MAX_ANSWER_BYTES, max_queue=OBS_QUEUE)
        hello = json.loads(await asyncio.wait_for(ws.recv(), outbound.TIMEOUT_S))
        if hello.get("op") != 0:
            raise DeliveryFailed(f"expected Hello (op 0), got op {hello.get('op')}")
        identify = {"rpcVersion": OBS_RPC_VERSION, "eventSubscriptions": 0}
        auth = hello.get("d", {}).get("authentication")
        if auth:
            if not self.target.password:
                raise DeliveryFailed("OBS asks for a password; give captions[].password")
            identify["authentication"] = obs_authentication(self.target.password, auth["salt"], auth["challenge"])
        await ws.send(json.dumps({"op": 1, "d": identify}))
        identified = json.loads(await asyncio.wait_for(ws.recv(), outbound.TIMEOUT_S))
        if identified.get("op") != 2:
            raise DeliveryFailed(f"not identified by OBS (op {identified.get('op')})")
        return ws

    async def send(self, text: str, spoken_at: float) -> None:
        try:
            if self.ws is None:
                self.ws = await self._connect()
            request_id = uuid.uuid4().hex
            await self.ws.send(json.dumps({"op": 6, "d": {"requestType": "SendStreamCaption",
                                                          "requestId": request_id,
                                                          "requestData": {"captionText": text}}}))
            deadline = time.monotonic() + outbound.TIMEOUT_S
            while True:   # events may come first; the answer names our request
                reply = json.loads(await asyncio.wait_for(self.ws.recv(), max(0.1, deadline - time.monotonic())))
                if reply.get("op") == 7 and reply.get("d", {}).get("requestId") == request_id:
                    break
        except (OSError, asyncio.TimeoutError, websockets.WebSocketException, ValueError) as exc:
            await self.stop()
            raise DeliveryFailed(f"{type(exc).__name__} {exc}".strip()) from None
        except DeliveryFailed:
            await self.stop()
            raise
        status = reply["d"].get("requestStatus", {})
        if not status.get("result"):
            raise DeliveryFailed(f"OBS refused SendStreamCaption: code {status.get('code')} "
                                 f"{status.get('comment', '')}".strip())

    async def stop(self) -> None:
        if self.ws is not None:
            ws, self.ws = self.ws, None
            try:
                await ws.close()
            except Exception:
                pass


OUTPUTS = {"youtube": YouTubeOutput, "zoom": ZoomOutput, "obs": ObsOutput}


class CaptionOutputs(Sink):
    """A live stream's caption outputs (its start's `captions`), started with it;
    each final goes to every one. report(ProtocolError) tells the speaker of a
    delivery problem."""

    def __init__(self, session: Session, allow_private: bool, report, metrics=None):
        self.session = session
        self.allow_private = allow_private
        self.report = report
        self.metrics = metrics
        self.http: httpx.AsyncClient | None = None
        self.outputs: list[Output] = []

    def opened(self, ready: events.Ready) -> None:
        config = self.session.config
        if config.captions and config.mode == "stream":
            self.http = outbound.client()
            self.outputs = [OUTPUTS[t.type](t, self.http, self.allow_private, self.report, self.metrics)
                            for t in config.captions]

    async def observe(self, event: events.Event) -> None:
        if self.outputs and isinstance(event, events.Final) and event.text:
            spoken_at = self._spoken_at(event)
            for output in self.outputs:
                output.put(caption_text(event), spoken_at)

    def _spoken_at(self, event: events.Final) -> float:
        """The wall-clock time an utterance began: now, less the audio heard since its start."""
        return time.time() - max(0, self.session.audio_samples * 1000 // MODEL_RATE - event.start_ms) / 1000

    async def closed(self, outcome: str | None, grace_s: float = 10.0) -> None:
        """The last captions go out (bounded), then the connections close."""
        if self.http is None:
            return
        for output in self.outputs:
            output.queue.put_nowait(None)
        tasks = [o.task for o in self.outputs]
        done, pending = await asyncio.wait(tasks, timeout=grace_s) if tasks else (set(), set())
        for task in pending:
            task.cancel()
        for output in self.outputs:
            await output.stop()
        await self.http.aclose()
