"""Protocol v1's codec: lingting.v1.json (control as JSON text frames,
audio as binary frames) or lingting.v1.msgpack (every message a msgpack
map), as the client offered; JSON when it offered neither."""

from __future__ import annotations

import json
from collections.abc import Sequence

import msgpack

from .codec import Frame, negotiate
from ..wire.errors import ErrorCode, ProtocolError
from .messages import SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK, SUBPROTOCOLS, Audio, ClientMessage, load_json, parse_message
from ..wire.events import Event


class V1Codec:
    """Frames <-> messages for one subprotocol."""
    api_key = None          # v1 clients present their key in the handshake

    def __init__(self, offered: Sequence[str] = ()):
        self.negotiated = negotiate(offered, SUBPROTOCOLS)
        self.msgpack = self.negotiated == SUBPROTOCOL_MSGPACK
        self.history_name = self.negotiated or SUBPROTOCOL_JSON
        self.call: dict = {}

    def greeting(self) -> list[Frame]:
        return []          # the server speaks after start

    def decode(self, frame: Frame) -> list[ClientMessage]:
        if self.msgpack:
            if isinstance(frame, str):
                raise ProtocolError(ErrorCode.BAD_MESSAGE, "lingting.v1.msgpack takes binary frames only")
            try:
                msg = msgpack.unpackb(frame, raw=False, strict_map_key=True)
            except Exception as exc:
                raise ProtocolError(ErrorCode.BAD_MESSAGE, f"frame is not valid msgpack: {exc}") from None
            return [parse_message(msg)]
        if isinstance(frame, bytes):
            return [Audio(frame)]
        msg = load_json(frame)
        if isinstance(msg, dict) and msg.get("type") == "audio":
            raise ProtocolError(ErrorCode.BAD_MESSAGE, "in lingting.v1.json audio goes in binary frames")
        return [parse_message(msg)]

    def encode_all(self, event: Event) -> list[Frame]:
        return [self.encode(event.to_wire())]

    def encode(self, wire: dict) -> Frame:
        if self.msgpack:
            return msgpack.packb(wire, use_bin_type=True)
        return json.dumps(wire, ensure_ascii=False, separators=(",", ":"))
