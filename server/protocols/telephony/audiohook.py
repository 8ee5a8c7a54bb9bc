"""Genesys Cloud AudioHook (protocol version 2): JSON text messages, each
{version, id, type, seq, position, parameters} (the client's also carry
serverseq, ours clientseq), and binary frames of audio in the media the
server chose.

    client: open, ping, paused, resumed, discarded, update, dtmf, error, close
    server: opened (the media chosen), pong, closed, disconnect

Each side numbers its messages 1, 2, 3...; a message out of sequence is a
protocol error, answered with disconnect (reason error) as the protocol
asks. Stereo PCMU carries the external (customer) and internal (agent)
channels interleaved; they become the session's two channels. `closed`
answers `close` once every final of the call is delivered. The API key
comes in the X-API-KEY header that the AudioHook integration sends."""

from __future__ import annotations

import json

from ..codec import call_ids
from ...wire.errors import ErrorCode, ProtocolError, require
from ..messages import Audio, Dtmf, KeepAlive, Start, Stop, load_json
from ...wire import events
from .options import call_config, call_options

HISTORY_NAME = "audiohook"
VERSION = "2"
FORMATS = {"PCMU": "mulaw", "L16": "pcm_s16le"}
LABELS = {"external": "customer", "internal": "agent"}
IGNORED = ("paused", "resumed", "discarded", "update", "error")     # nothing for recognition to do


class AudioHookCodec:
    negotiated = None
    history_name = HISTORY_NAME
    api_key = None                             # in the X-API-KEY header

    def __init__(self):
        self.call: dict = {}                   # sessionId, conversationId, participantId: for history
        self.session_id: str | None = None     # AudioHook's own, echoed in every message
        self.client_seq = 0
        self.server_seq = 0
        self.media: dict | None = None
        self.channels: list[str] = []
        self.closing = False                   # the client asked to close: `closed` follows the last final

    def greeting(self) -> list:
        return []

    def decode(self, frame: str | bytes) -> list:
        if isinstance(frame, bytes):
            if self.media is None:
                raise ProtocolError(ErrorCode.NOT_STARTED, "audio came before open")
            return [Audio(frame)]
        msg = load_json(frame)
        require(isinstance(msg, dict) and isinstance(msg.get("type"), str), "an AudioHook message needs a 'type'")
        seq = msg.get("seq")
        if seq != self.client_seq + 1:
            raise ProtocolError(ErrorCode.BAD_MESSAGE, f"message seq {seq!r} out of sequence: expected "
                                f"{self.client_seq + 1}", fatal=True)
        self.client_seq = seq
        kind = msg["type"]
        if kind == "open":
            try:
                return [self._open(msg)]
            except ProtocolError as exc:      # a session that cannot open is over: Genesys hears `disconnect`
                raise ProtocolError(exc.code, exc.message, fatal=True) from None
        if self.session_id is None:
            raise ProtocolError(ErrorCode.NOT_STARTED, f"{kind} came before open", fatal=True)
        if kind == "ping":
            return [KeepAlive(reply=True)]
        if kind == "close":
            self.closing = True
            return [Stop(reason="hangup")]
        if kind == "dtmf":
            params = msg.get("parameters")
            digit = params.get("digit") if isinstance(params, dict) else None
            require(isinstance(digit, str), "dtmf.parameters.digit is missing")
            return [Dtmf(digit, self.channels.index("external") if "external" in self.channels else None)]
        if kind in IGNORED:
            return []
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"unknown AudioHook message type {kind!r}")

    def _open(self, msg: dict) -> Start:
        require(self.session_id is None, "the session is open already")
        require(msg.get("version") == VERSION, f"AudioHook version {VERSION} is spoken here")
        require(isinstance(msg.get("id"), str), "open needs the session id")
        self.session_id = msg["id"]
        params = msg.get("parameters") or {}
        require(isinstance(params, dict), "open.parameters must be an object")
        participant = params.get("participant")
        # The participant's id only: its ani and dnis are phone numbers, which history keeps nowhere else.
        self.call = call_ids(sessionId=self.session_id, conversationId=params.get("conversationId"),
                             participantId=participant.get("id") if isinstance(participant, dict) else None)
        offered = params.get("media") or []
        require(isinstance(offered, list), "open.parameters.media must be a list")
        usable = [m for m in offered if isinstance(m, dict) and m.get("type") == "audio"
                  and isinstance(m.get("format"), str) and m["format"] in FORMATS
                  and isinstance(m.get("channels"), list) and m["channels"]
                  and all(isinstance(c, str) and c in LABELS for c in m["channels"])]
        if not usable:
            raise ProtocolError(ErrorCode.UNSUPPORTED, "no offered media is usable: audio PCMU or L16, channels "
                                "external and/or internal", fatal=True)
        self.media = max(usable, key=lambda m: len(m["channels"]))     # both parties when offered
        self.channels = list(self.media["channels"])
        options = {**call_options(params.get("customConfig"), "customConfig"),
                   **call_options(params.get("inputVariables"), "inputVariables")}
        if "language" in params and "language" not in options:
            options.update(call_options({"language": params["language"]}, "language"))
        options.setdefault("channel_labels", [LABELS[c] for c in self.channels])
        return Start(call_config({"sample_rate": self.media.get("rate", 8000),
                                  "encoding": FORMATS[self.media["format"]], "channels": len(self.channels),
                                  **options}, "AudioHook open"))

    # ---- events -> server messages -------------------------------------------
    def _message(self, kind: str, parameters: dict) -> str:
        self.server_seq += 1
        return json.dumps({"version": VERSION, "type": kind, "seq": self.server_seq, "clientseq": self.client_seq,
                           "id": self.session_id, "parameters": parameters})

    def encode_all(self, event: events.Event) -> list:
        if self.session_id is None:
            return []
        if isinstance(event, events.Ready):
            return [self._message("opened", {"startPaused": False, "media": [self.media]})]
        if isinstance(event, events.Pong):
            return [self._message("pong", {})]
        if isinstance(event, events.Stopped):
            if self.closing:
                return [self._message("closed", {})]
            return [self._message("disconnect", {"reason": "completed"})]
        if isinstance(event, events.Error) and event.fatal:
            return [self._message("disconnect", {"reason": "error", "info": f"{event.code}: {event.message}"})]
        return []
