"""Twilio Media Streams (TwiML <Start><Stream> or <Connect><Stream>), as
Twilio's "WebSocket messages" page defines them: JSON text frames with an
`event` of connected, start, media, dtmf, mark or stop.

    start  {streamSid, start: {callSid, tracks, customParameters,
            mediaFormat {encoding audio/x-mulaw, sampleRate 8000, channels 1}}}
    media  {media: {track inbound|outbound, chunk, timestamp, payload base64}}

Each track is a channel of the session (inbound: the caller, outbound: what
the call plays or the other party says), labelled by its track name unless
customParameters say `channel_labels`. Twilio's URL takes no query string:
the API key and session options come as <Parameter> elements, i.e. in
start.customParameters (api_key, language, hotwords, watch, redact...).
Twilio reads nothing but media/mark/clear back, so no event is sent to it."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from ..codec import call_ids
from ...wire.errors import ErrorCode, ProtocolError, require
from ..messages import Audio, Dtmf, Mark, Start, Stop, load_json
from ...wire import events
from .options import KEY_FIELD, call_config, call_options, no_binary

HISTORY_NAME = "twilio"
ENCODINGS = {"audio/x-mulaw": "mulaw"}
SIGNATURE_HEADER = "X-Twilio-Signature"


def signature(auth_token: str, url: str) -> str:
    """Twilio's request signature: base64(HMAC-SHA1(auth token, the URL it
    called + its POST parameters sorted by name)); a WebSocket handshake has none."""
    return base64.b64encode(hmac.new(auth_token.encode(), url.encode(), hashlib.sha1).digest()).decode()


def signed_by_twilio(auth_token: str, host: str, path: str, presented: str | None) -> bool:
    """Media Streams connect only over wss://; the host is as the Host header
    says (a TLS proxy in front keeps it), with and without :443 as Twilio's
    own validators try it."""
    if not presented:
        return False
    bare = host.removesuffix(":443")
    candidates = {f"wss://{bare}{path}", f"wss://{bare}:443{path}"}
    return any(hmac.compare_digest(signature(auth_token, url), presented) for url in candidates)


class TwilioCodec:
    negotiated = None
    history_name = HISTORY_NAME

    def __init__(self):
        self.tracks: list[str] = []
        self.api_key: str | None = None      # from customParameters, for the edge to check
        self.call: dict = {}                 # streamSid, callSid: what history keeps of the call

    def greeting(self) -> list:
        return []

    def decode(self, frame: str | bytes) -> list:
        if isinstance(frame, bytes):
            raise no_binary("Twilio Media Streams")
        msg = load_json(frame)
        require(isinstance(msg, dict) and isinstance(msg.get("event"), str), "a Twilio message needs an 'event'")
        if not isinstance(msg.get(msg["event"], {}), dict):
            raise ProtocolError(ErrorCode.INVALID_FIELD, f"a Twilio {msg['event']} event's {msg['event']!r} must "
                                "be an object")
        event = msg["event"]
        if event == "connected":
            return []
        if event == "start":
            return [self._start(msg)]
        if event == "media":
            media = msg.get("media")
            require(isinstance(media, dict) and isinstance(media.get("payload"), str), "media.payload is missing")
            try:
                data = base64.b64decode(media["payload"], validate=True)
            except (binascii.Error, ValueError):
                raise ProtocolError(ErrorCode.BAD_AUDIO, "media.payload is not base64") from None
            return [Audio(data, self._channel(media.get("track", "inbound")))]
        if event == "dtmf":
            dtmf = msg.get("dtmf")
            require(isinstance(dtmf, dict) and isinstance(dtmf.get("digit"), str), "dtmf.digit is missing")
            return [Dtmf(dtmf["digit"], self._channel(dtmf.get("track", "inbound_track")))]
        if event == "mark":
            mark = msg.get("mark")
            require(isinstance(mark, dict) and isinstance(mark.get("name"), str), "mark.name is missing")
            return [Mark(mark["name"])]
        if event == "stop":
            return [Stop(reason="hangup")]
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"unknown Twilio event {event!r}")

    def _start(self, msg: dict) -> Start:
        start = msg.get("start")
        require(isinstance(start, dict), "start.start is missing")
        media = start.get("mediaFormat") or {}
        if not isinstance(media, dict):
            raise ProtocolError(ErrorCode.INVALID_FIELD, "start.mediaFormat must be an object", fatal=True)
        encoding = ENCODINGS.get(media["encoding"]) if isinstance(media.get("encoding"), str) else None
        if encoding is None:
            raise ProtocolError(ErrorCode.UNSUPPORTED, f"Twilio mediaFormat {media.get('encoding')!r} is not "
                                "supported: audio/x-mulaw", fatal=True)
        tracks = start.get("tracks") or ["inbound"]
        require(isinstance(tracks, list) and tracks and all(t in ("inbound", "outbound") for t in tracks)
                and len(set(tracks)) == len(tracks), "start.tracks must list inbound and/or outbound")
        self.tracks = tracks
        params = start.get("customParameters") or {}
        if not isinstance(params, dict):
            raise ProtocolError(ErrorCode.INVALID_FIELD, "start.customParameters must be an object", fatal=True)
        key = params.get(KEY_FIELD)
        self.api_key = key if isinstance(key, str) else None
        self.call = call_ids(streamSid=msg.get("streamSid") or start.get("streamSid"), callSid=start.get("callSid"))
        options = call_options(params, "Twilio customParameters")
        options.setdefault("channel_labels", list(tracks))
        return Start(call_config({"sample_rate": media.get("sampleRate", 8000), "encoding": encoding,
                                  "channels": len(tracks), **options}, "Twilio start"))

    def _channel(self, track) -> int:
        if not isinstance(track, str):
            raise ProtocolError(ErrorCode.INVALID_FIELD, f"track must be a string, not {type(track).__name__}")
        name = track.removesuffix("_track")
        if name not in self.tracks:
            raise ProtocolError(ErrorCode.BAD_MESSAGE, f"track {track!r} is not one of this stream's "
                                f"({', '.join(self.tracks) or 'no start yet'})")
        return self.tracks.index(name)

    def encode_all(self, event: events.Event) -> list:
        return []
