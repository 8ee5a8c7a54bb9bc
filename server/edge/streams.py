"""The WebSocket endpoints: protocol v1 on /v1/stream, FunASR's protocol on /
and /funasr. Admission before the upgrade (refusals are HTTP responses with
a status and Retry-After), then frames are read into the stream's runner:
size limit, flood throttle, live audio held to speed, idle timeouts."""

from __future__ import annotations

import asyncio
import time

from asyncio_throttle import Throttler
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..services.access import AccessDenied
from ..protocols.codec import Codec
from ..wire.errors import ErrorCode, ProtocolError
from ..protocols.funasr import PATHS as FUNASR_PATHS
from ..protocols.messages import Start
from ..settings import LimitSettings
from ..wire.audio import MODEL_RATE
from ..streaming.commands import POLICY, TOO_BIG
from ..wire.events import Event
from ..streaming.session import End, State
from .codecs import ENDPOINTS, STREAM_PATH, Endpoint, offered
from .responses import denied
from .runner import Gone, StreamRunner


def message_bytes(message: str | bytes) -> int:
    return len(message) if isinstance(message, bytes) else len(message.encode("utf-8", "surrogatepass"))


def client_details(conn: HTTPConnection, ip: str | None, subprotocol: str | None) -> dict:
    """Who connected, as history keeps it."""
    return {"address": ip, "user_agent": conn.headers.get("User-Agent"), "origin": conn.headers.get("Origin"),
            "subprotocol": subprotocol}


class WebSocketTransport:
    def __init__(self, websocket: WebSocket, codec: Codec):
        self.websocket = websocket
        self.codec = codec

    async def send(self, event: Event) -> None:
        for frame in self.codec.encode_all(event):
            try:
                if isinstance(frame, str):
                    await self.websocket.send_text(frame)
                else:
                    await self.websocket.send_bytes(frame)
            except (WebSocketDisconnect, RuntimeError, OSError):
                raise Gone from None

    async def close(self, code: int, reason: str) -> None:
        try:
            await self.websocket.close(code, reason)
        except (WebSocketDisconnect, RuntimeError, OSError):
            raise Gone from None


async def v1_stream(websocket: WebSocket) -> None:
    await serve(websocket, ENDPOINTS[STREAM_PATH])


async def funasr_stream(websocket: WebSocket) -> None:
    await serve(websocket, ENDPOINTS[FUNASR_PATHS[0]])     # every FunASR path is the same endpoint


async def serve(websocket: WebSocket, endpoint: Endpoint) -> None:
    """One WebSocket stream, with the endpoint's codec (or AccessDenied from
    building it): it reads frames into messages and writes events as frames,
    and may greet the client first. A key that comes in the stream
    (endpoint.key_in_stream, codec.api_key) is read when its start comes."""
    lingting = websocket.app.state.lingting
    session = lingting.new_session()
    try:
        key, ip = lingting.admit(websocket, endpoint.key_in_stream)
        codec = endpoint.codec(websocket, session.id)
    except AccessDenied as exc:
        lingting.metrics.connections.labels(exc.code).inc()
        await websocket.send_denial_response(denied(exc))
        return
    runner = StreamRunner(lingting.stream_services, session, WebSocketTransport(websocket, codec), key,
                          client_details(websocket, ip, codec.history_name))
    needs_key = lingting.owes_key(key)
    if needs_key:
        runner.key_due = time.monotonic() + lingting.settings.limits.auth_timeout_s
    lingting.opened(runner, unauthenticated=needs_key)
    runner.log.debug("session %s: WebSocket %s?%s from %s, subprotocols offered %s", session.id, websocket.url.path,
                     websocket.url.query, ip, offered(websocket))
    left = True
    try:
        await websocket.accept(codec.negotiated)
        if await _greeted(websocket, codec):
            if lingting.shutting_down:      # the signal came during the handshake
                runner.end(End.SHUTDOWN)
            left = await read_frames(runner, lambda: _frame(websocket), decoder(codec, runner, needs_key),
                                     lingting.settings.limits)
    finally:
        await runner.finish(left)
        lingting.closed(runner)


def decoder(codec: Codec, runner: StreamRunner, needs_key: bool = False):
    """The codec's decode, and what the edge learns from it: the call's ids
    for history, the key of a stream that brings it in its start."""
    def decode(frame):
        nonlocal needs_key
        messages = codec.decode(frame)
        if needs_key and any(isinstance(m, Start) for m in messages):
            runner.authenticate(codec.api_key)
            needs_key = False
        if codec.call and "call" not in runner.recorder.client:
            runner.recorder.client["call"] = codec.call
        return messages
    return decode


async def _greeted(websocket: WebSocket, codec: Codec) -> bool:
    """What the codec says before the client does (OpenAI's session.created); False: gone."""
    try:
        for frame in codec.greeting():
            await websocket.send_text(frame)
    except (WebSocketDisconnect, RuntimeError, OSError):
        return False
    return True


async def _frame(websocket: WebSocket) -> str | bytes | None:
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        return None
    return message["text"] if message.get("text") is not None else message.get("bytes") or b""


async def read_frames(runner: StreamRunner, receive, decode, limits: LimitSettings) -> bool:
    """Frames (receive(): the next one, None once the client is gone) into the
    session until it closes; True when the client left first."""
    throttle = Throttler(limits.max_messages_per_s, 1.0)
    speed = SpeedLimit(limits)
    before_key = 0              # messages read while the stream still owes its key
    while not runner.closing:
        owes_key = runner.key_due is not None
        try:
            frame = await asyncio.wait_for(receive(), key_timeout(runner) if owes_key else idle_timeout(runner, limits))
        except asyncio.TimeoutError:
            if owes_key:
                runner.abort(no_key_error(limits), POLICY, "no API key")
            else:
                runner.end(End.IDLE, idle_error(runner, limits))
            continue
        if frame is None:
            return True
        size = message_bytes(frame)
        max_bytes = limits.unauthenticated_frame_bytes if owes_key else limits.max_frame_bytes
        if size > max_bytes:
            runner.abort(ProtocolError(ErrorCode.TOO_LARGE, f"a message of {size} bytes is over this server's "
                                       f"limit of {max_bytes}" + (" before the stream presents its API key"
                                                                  if owes_key else ""), fatal=True),
                         TOO_BIG, "message too big")
            continue
        if owes_key:
            before_key += 1
            if before_key > limits.unauthenticated_messages:
                runner.abort(no_key_error(limits), POLICY, "no API key")
                continue
        async with throttle:        # a flood is read at this pace, not faster
            runner.receive_frame(decode, frame)
        await speed.hold(runner)
    return False


def key_timeout(runner: StreamRunner) -> float:
    """Until its key is shown, a stream has a fixed deadline: messages (a
    platform's keep-alives included) do not move it."""
    return max(0.0, runner.key_due - time.monotonic())


def no_key_error(limits: LimitSettings) -> ProtocolError:
    return ProtocolError(ErrorCode.UNAUTHORIZED, f"no API key within {limits.auth_timeout_s:g} s or "
                         f"{limits.unauthenticated_messages} messages: Twilio sends it in its start event, as "
                         '<Parameter name="api_key" value="KEY"/>', fatal=True)


def uploading(runner: StreamRunner) -> bool:
    return runner.session.offline and runner.session.state is State.STREAMING


def idle_timeout(runner: StreamRunner, limits: LimitSettings) -> float | None:
    """Idle only counts while the client owes us input; an upload must keep
    sending file data (keepalives do not hold its disk space)."""
    if not runner.session.taking_input:
        return None
    if uploading(runner):
        return max(0.0, runner.file.active_at + limits.upload_idle_timeout_s - time.monotonic())
    return limits.idle_timeout_s


def idle_error(runner: StreamRunner, limits: LimitSettings) -> ProtocolError:
    message = (f"no file data for {limits.upload_idle_timeout_s:.0f} s: upload abandoned" if uploading(runner) else
               f"no message for {limits.idle_timeout_s:.0f} s: closing (send keepalive to hold an idle stream open)")
    return ProtocolError(ErrorCode.IDLE_TIMEOUT, message, fatal=True)


class SpeedLimit:
    """Live audio may come at most max_audio_speed x real time after a burst;
    past that, reading pauses (TCP back-pressure reaches the client). Whole
    files at full speed are what offline mode is for."""

    def __init__(self, limits: LimitSettings):
        self.limits = limits
        self.first_audio_at: float | None = None

    async def hold(self, runner: StreamRunner) -> None:
        session = runner.session
        if session.mode != "stream" or not session.audio_samples:
            return
        now = time.monotonic()
        if self.first_audio_at is None:
            self.first_audio_at = now
        audio_s = session.audio_samples / MODEL_RATE
        due = self.first_audio_at + (audio_s - self.limits.audio_burst_s) / self.limits.max_audio_speed
        if due > now:
            await asyncio.sleep(due - now)
