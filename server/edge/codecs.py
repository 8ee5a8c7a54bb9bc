"""What speaks on which WebSocket path: the one table the stream routes
read. Each path has its codec, built from the handshake (the subprotocols
offered, the query) for one session, and says how its API key arrives: in
the handshake (header, query or subprotocol), or inside the stream
(codec.api_key, for a platform that cannot send headers)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from starlette.requests import HTTPConnection

from lingting_models.catalog import list_models

from ..services.access import AccessDenied
from ..protocols.codec import Codec
from ..wire.errors import ProtocolError
from ..protocols.funasr import PATHS as FUNASR_PATHS, FunasrCodec
from ..protocols.openai import check_model, model_names
from ..protocols.openai_realtime import RealtimeCodec
from ..protocols.telephony.audio_fork import AudioForkCodec
from ..protocols.telephony.audiohook import AudioHookCodec
from ..protocols.telephony.twilio import TwilioCodec
from ..protocols.v1 import V1Codec

STREAM_PATH = "/v1/stream"
REALTIME_PATH = "/v1/realtime"
PHONE_PATHS = {"twilio": "/v1/twilio", "audiohook": "/v1/audiohook", "audio_fork": "/v1/audio-fork"}


@dataclass(frozen=True)
class Endpoint:
    codec: Callable[[HTTPConnection, str], Codec]   # (the handshake, the session id) -> the connection's codec
    key_in_stream: bool = False                     # the key may come inside the stream, not in the handshake


def offered(conn: HTTPConnection) -> list[str]:
    return conn.scope.get("subprotocols") or []


def served_models(lingting) -> tuple[str, ...]:
    return _names(lingting.model_info["model"])


@functools.cache
def _names(loaded: str) -> tuple[str, ...]:
    # The catalog is read once, not on every request.
    aliases = next((tuple(m.get("aliases", ())) for m in list_models() if m["name"] == loaded), ())
    return model_names(loaded, aliases)


def _realtime(conn: HTTPConnection, session_id: str) -> RealtimeCodec:
    names = served_models(conn.app.state.lingting)
    requested = conn.query_params.get("model")
    if requested is not None:
        try:
            check_model(requested, names)
        except ProtocolError as exc:
            raise AccessDenied(404, exc.code, exc.message) from None
    return RealtimeCodec(session_id, names, offered(conn))


_FUNASR = Endpoint(lambda conn, session_id: FunasrCodec(offered(conn)))
ENDPOINTS: dict[str, Endpoint] = {
    STREAM_PATH: Endpoint(lambda conn, session_id: V1Codec(offered(conn))),
    **{path: _FUNASR for path in FUNASR_PATHS},
    REALTIME_PATH: Endpoint(_realtime),
    # Twilio's <Stream> URL takes no query string and sends no key header: the key is a <Parameter>.
    PHONE_PATHS["twilio"]: Endpoint(lambda conn, session_id: TwilioCodec(), key_in_stream=True),
    PHONE_PATHS["audiohook"]: Endpoint(lambda conn, session_id: AudioHookCodec()),
    PHONE_PATHS["audio_fork"]: Endpoint(lambda conn, session_id: AudioForkCodec(dict(conn.query_params),
                                                                                 offered(conn))),
}
