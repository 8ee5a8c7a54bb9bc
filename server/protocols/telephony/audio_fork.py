"""FreeSWITCH mod_audio_fork (drachtio), subprotocol audio.drachtio.org:

    uuid_audio_fork <uuid> start <wss-url> <mono|mixed|stereo> <8k|16k> [<metadata>]

FreeSWITCH opens the WebSocket, sends the metadata (any JSON) as the first
text frame when one was given, then binary L16 at the chosen rate: one
channel, or two interleaved (stereo: caller left, callee right). The rate
and the channel count are not in the stream itself, so they come from the
URL's query or the metadata (sample_rate 8000 | 16000, channels 1 | 2, or
mix_type stereo), with the session options (language, hotwords, redact...).
Text frames sent back reach the dialplan as mod_audio_fork::json events:
every event goes back as protocol v1 JSON. A later text frame (send_text)
with hotwords or watch updates them."""

from __future__ import annotations

import json
from collections.abc import Sequence

from ...text.alerts import parse_watch
from ..codec import call_ids, negotiate
from ...wire.errors import ErrorCode, ProtocolError, require
from ...text.hotwords import parse_hotwords
from ..messages import Audio, Start, Update, load_json
from ...wire import events
from .options import call_config, call_options

SUBPROTOCOL = "audio.drachtio.org"
HISTORY_NAME = "audio_fork"
RATES = {"8k": 8000, "16k": 16000}
LABELS = ("caller", "callee")


def _whole_number(value) -> int | None:
    """A platform's number, sent as a number or a string ("8000"); None if it is neither."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _format(params: dict) -> dict:
    """sample_rate and channels from the query or metadata (8000 and mono unless said)."""
    out = {}
    rate = params.get("sample_rate", params.get("sampleRate"))
    if rate is not None:
        rate = RATES.get(rate, rate) if isinstance(rate, str) else rate
        if (out_rate := _whole_number(rate)) is None:
            raise ProtocolError(ErrorCode.UNSUPPORTED, f"sample_rate {rate!r}: use 8000 or 16000", fatal=True)
        out["sample_rate"] = out_rate
    mix = params.get("mix_type", params.get("mixType"))
    channels = params.get("channels", 2 if mix == "stereo" else None)
    if channels is not None:
        if (out_channels := _whole_number(channels)) is None:
            raise ProtocolError(ErrorCode.BAD_MESSAGE, f"channels {channels!r}: use 1 or 2", fatal=True)
        out["channels"] = out_channels
    return out


class AudioForkCodec:
    history_name = HISTORY_NAME
    api_key = None                      # in the URL's ?api_key=

    def __init__(self, query: dict[str, str], offered: Sequence[str] = ()):
        self.negotiated = negotiate(offered, (SUBPROTOCOL,))
        self.query = query
        self.call: dict = {}            # uuid, callId from the query or the metadata: for history
        self.started = False
        self.metadata: dict = {}

    def greeting(self) -> list:
        return []

    def decode(self, frame: str | bytes) -> list:
        if isinstance(frame, bytes):
            if not self.started:        # no metadata was given: the URL says it all
                return [self._start({}), Audio(frame)]
            return [Audio(frame)]
        msg = load_json(frame)
        require(isinstance(msg, dict), "mod_audio_fork text frames must be JSON objects")
        if not self.started:
            self.metadata = msg
            return [self._start(msg)]
        if "hotwords" in msg or "watch" in msg:    # uuid_audio_fork <uuid> send_text {...}
            options = call_options(msg, "send_text")
            return [Update(hotwords=parse_hotwords(options["hotwords"]) if "hotwords" in options else None,
                           watch=parse_watch(options["watch"]) if "watch" in options else None)]
        return []

    def _start(self, metadata: dict) -> Start:
        self.started = True
        fields = {"sample_rate": 8000, "channels": 1}
        for params in (self.query, metadata):
            fields.update(_format(params))
            fields.update(call_options(params, "mod_audio_fork"))
            self.call.update(call_ids(uuid=params.get("uuid"), callId=params.get("callId")))
        if fields["channels"] == 2:
            fields.setdefault("channel_labels", list(LABELS))
        return Start(call_config({"encoding": "pcm_s16le", **fields}, "mod_audio_fork"))

    def encode_all(self, event: events.Event) -> list:
        return [json.dumps(event.to_wire(), ensure_ascii=False, separators=(",", ":"))]
