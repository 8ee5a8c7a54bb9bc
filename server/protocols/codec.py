"""The contract every wire protocol keeps: v1 (v1_codec.py), FunASR's,
OpenAI's realtime, and the phone platforms' (telephony/). A codec is
sans-I/O and belongs to one connection: the platform's frames in, protocol
messages out; the session's events in, the platform's frames out. The edge
reads nothing else of it."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .messages import ClientMessage
from ..wire.events import Event

Frame = str | bytes             # a WebSocket text or binary frame (AudioSocket: bytes off its TCP stream)
MAX_CALL_ID_CHARS = 128         # a platform's call ids are short; history keeps no more of one


@runtime_checkable
class Codec(Protocol):
    negotiated: str | None      # the WebSocket subprotocol to accept (None: accept without one)
    history_name: str           # the client's protocol as history records it
    api_key: str | None         # the key, for a platform that sends it inside the stream (Twilio)
    call: dict                  # the platform's ids of the call, for history ({} until known, or none)

    def greeting(self) -> list[Frame]:
        """What the server says before the client does (OpenAI's session.created)."""

    def decode(self, frame: Frame) -> list[ClientMessage]:
        """One frame -> its messages (none, or several: an implicit start, then audio); ProtocolError."""

    def encode_all(self, event: Event) -> list[Frame]:
        """One event -> the frames that carry it (none when the platform has no word for it)."""


def negotiate(offered, supported) -> str | None:
    """The first of ours the client offered, or None."""
    return next((name for name in supported if name in offered), None)


def call_ids(**ids) -> dict:
    """The ids a platform gave (strings only, bounded), for history."""
    return {name: value[:MAX_CALL_ID_CHARS] for name, value in ids.items() if isinstance(value, str) and value}
