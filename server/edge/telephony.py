"""Phone platforms at the edge: Twilio Media Streams on /v1/twilio, Genesys
AudioHook on /v1/audiohook, FreeSWITCH mod_audio_fork on /v1/audio-fork
(WebSockets, through streams.serve like every stream), and Asterisk
AudioSocket on its own TCP port. The codecs in server/telephony/ do the
protocols; a call is an ordinary session (admission, tenant, limits,
history)."""

from __future__ import annotations

import asyncio
import json
import logging

from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from ..services.access import AccessDenied
from ..wire.errors import ErrorCode, ProtocolError
from ..settings import SettingsError, TelephonySettings
from ..wire.events import Event
from ..protocols.telephony.audiosocket import HANGUP_PACKET, HEADER, AudioSocketCodec
from ..protocols.telephony.options import call_config
from ..protocols.telephony.twilio import SIGNATURE_HEADER, signed_by_twilio
from .codecs import ENDPOINTS, PHONE_PATHS as PATHS
from .responses import error, upgrade_required
from .runner import Gone, StreamRunner
from .streams import decoder, read_frames, serve

log = logging.getLogger("lingting.server")


async def twilio_stream(websocket: WebSocket) -> None:
    lingting = websocket.app.state.lingting
    token = lingting.settings.telephony.twilio_auth_token
    if token and not signed_by_twilio(token, websocket.headers.get("host", ""), websocket.url.path,
                                      websocket.headers.get(SIGNATURE_HEADER)):
        lingting.metrics.connections.labels(ErrorCode.BAD_SIGNATURE).inc()
        await websocket.send_denial_response(error(403, ErrorCode.BAD_SIGNATURE, f"{SIGNATURE_HEADER} does not sign "
                                                   "this URL with --twilio-auth-token: only Twilio may connect here"))
        return
    await serve(websocket, ENDPOINTS[PATHS["twilio"]])


async def audiohook_stream(websocket: WebSocket) -> None:
    await serve(websocket, ENDPOINTS[PATHS["audiohook"]])


async def audio_fork_stream(websocket: WebSocket) -> None:
    await serve(websocket, ENDPOINTS[PATHS["audio_fork"]])


routes = [
    WebSocketRoute(PATHS["twilio"], twilio_stream),
    WebSocketRoute(PATHS["audiohook"], audiohook_stream),
    WebSocketRoute(PATHS["audio_fork"], audio_fork_stream),
    *(Route(path, upgrade_required) for path in PATHS.values()),
]


# ---- Asterisk AudioSocket ------------------------------------------------------
def audiosocket_setup(settings: TelephonySettings, access) -> tuple[dict, object]:
    """--audiosocket-options and --audiosocket-key, checked at startup: the
    start options of every call (checked as a start message would be) and the
    key whose tenant owns the calls (AudioSocket carries no key of its own)."""
    try:
        options = json.loads(settings.audiosocket_options)
    except ValueError as exc:
        raise SettingsError(f"--audiosocket-options is not JSON: {exc}") from None
    if not isinstance(options, dict):
        raise SettingsError("--audiosocket-options must be a JSON object of start options")
    try:
        call_config({"sample_rate": 8000, "encoding": "pcm_s16le", **options}, "--audiosocket-options")
    except ProtocolError as exc:
        raise SettingsError(exc.message) from None
    if settings.audiosocket_key is None and access.open:
        return options, None
    names = {k.name: k for k in access.keys}
    if settings.audiosocket_key not in names:
        raise SettingsError("--audiosocket-key must name one of the configured API keys: AudioSocket calls carry "
                            "no key, so they need a tenant to belong to")
    return options, names[settings.audiosocket_key]


class AudioSocketTransport:
    """AudioSocket carries audio only: events are not sent back; closing hangs up."""

    def __init__(self, writer: asyncio.StreamWriter):
        self.writer = writer

    async def send(self, event: Event) -> None:
        if self.writer.is_closing():
            raise Gone

    async def close(self, code: int, reason: str) -> None:
        try:
            if not self.writer.is_closing():
                self.writer.write(HANGUP_PACKET)
                await self.writer.drain()
            self.writer.close()
        except OSError:
            raise Gone from None


class AudioSocketServer:
    def __init__(self, lingting):
        self.lingting = lingting
        self.settings = lingting.settings.telephony
        self.options, self.key = audiosocket_setup(self.settings, lingting.access)
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._call, self.settings.audiosocket_host,
                                                 self.settings.audiosocket_port)

    @property
    def port(self) -> int:
        return self.server.sockets[0].getsockname()[1]

    def close(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _call(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        lingting = self.lingting
        peer = writer.get_extra_info("peername")
        ip = peer[0] if peer else None
        try:
            lingting.check_limits(ip, self.key)
        except AccessDenied as exc:
            log.warning("AudioSocket call from %s refused: %s", ip, exc.message)
            writer.write(HANGUP_PACKET)
            writer.close()
            return
        session = lingting.new_session()
        codec = AudioSocketCodec(self.options)
        client = {"address": ip, "user_agent": None, "origin": None, "subprotocol": codec.history_name}
        runner = StreamRunner(lingting.stream_services, session, AudioSocketTransport(writer), self.key, client)
        lingting.opened(runner)
        left = True

        async def receive() -> bytes | None:
            """One whole packet: the idle timeout counts packets, so a header
            followed by a byte now and then does not hold the call open."""
            try:
                header = await reader.readexactly(HEADER.size)
                return header + await reader.readexactly(HEADER.unpack(header)[1])
            except asyncio.IncompleteReadError:
                return None
        try:
            left = await read_frames(runner, receive, decoder(codec, runner), lingting.settings.limits)
        except OSError:
            left = True
        finally:
            await runner.finish(left)
            lingting.closed(runner)
            writer.close()
