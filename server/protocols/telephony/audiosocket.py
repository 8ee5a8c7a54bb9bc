"""Asterisk AudioSocket over TCP: packets of a 1-byte type, a 2-byte
big-endian payload length, and the payload.

    0x00 hangup    0x01 the call's UUID (16 bytes, first)    0x03 DTMF (1 ASCII byte)
    0x10 audio: signed 16-bit little-endian mono PCM at 8 kHz
    0x11-0x16 the same at 12, 16, 24, 32, 44.1, 48 kHz (newer Asterisk; 0x17, 0x18:
         96 and 192 kHz, refused: more than speech needs)
    0xff error (1 byte: 1 hangup, 2 frame forwarding, 4 memory)

Dialplan: AudioSocket(<uuid>,<host>:<port>). The session starts at the first
audio packet, whose type says the rate; its options are the server's
--audiosocket-options. AudioSocket carries no text back: the transcript goes
to history (and whatever watches it). Bytes arrive as a TCP stream, so the
codec keeps what is short of a whole packet."""

from __future__ import annotations

import struct
import uuid

from ...wire.errors import ErrorCode, ProtocolError
from ..messages import Audio, Dtmf, Start, Stop
from ...wire import events
from .options import call_config

HISTORY_NAME = "audiosocket"
HANGUP, UUID, DTMF, ERROR = 0x00, 0x01, 0x03, 0xFF
AUDIO_RATES = {0x10: 8000, 0x11: 12000, 0x12: 16000, 0x13: 24000, 0x14: 32000, 0x15: 44100, 0x16: 48000}
TOO_FAST = {0x17: 96000, 0x18: 192000}
HEADER = struct.Struct(">BH")
HANGUP_PACKET = HEADER.pack(HANGUP, 0)
MAX_EARLY_DTMF = 32       # keys pressed before the first audio, held until its rate is known


class AudioSocketCodec:
    negotiated = None                   # TCP: no handshake
    history_name = HISTORY_NAME
    api_key = None                      # AudioSocket carries no key: --audiosocket-key names the tenant

    def __init__(self, options: dict):
        self.options = options          # start fields for every call
        self.call_id: str | None = None
        self.rate: int | None = None
        self._buffer = bytearray()
        self._early: list = []          # DTMF before the first audio: the rate, and so the start, is not known yet

    @property
    def call(self) -> dict:
        """The call's id, for history (empty until the UUID packet)."""
        return {"uuid": self.call_id} if self.call_id else {}

    def greeting(self) -> list:
        return []

    def decode(self, data: bytes) -> list:
        """Whole packets among the bytes so far -> messages."""
        self._buffer += data
        out = []
        while len(self._buffer) >= HEADER.size:
            kind, length = HEADER.unpack_from(self._buffer)
            if len(self._buffer) < HEADER.size + length:
                break
            payload = bytes(self._buffer[HEADER.size:HEADER.size + length])
            del self._buffer[:HEADER.size + length]
            out += self._packet(kind, payload)
        return out

    def _packet(self, kind: int, payload: bytes) -> list:
        if kind == UUID:
            if len(payload) != 16:
                raise ProtocolError(ErrorCode.BAD_MESSAGE, f"the UUID packet holds {len(payload)} bytes, not 16",
                                    fatal=True)
            self.call_id = str(uuid.UUID(bytes=payload))
            return []
        if self.call_id is None:
            raise ProtocolError(ErrorCode.NOT_STARTED, "AudioSocket sends the call's UUID first", fatal=True)
        if kind in AUDIO_RATES:
            rate = AUDIO_RATES[kind]
            if self.rate is None:
                return self._start(rate) + [Audio(payload)]
            if rate != self.rate:
                raise ProtocolError(ErrorCode.BAD_AUDIO, f"audio at {rate} Hz after {self.rate} Hz in one call",
                                    fatal=True)
            return [Audio(payload)]
        if kind in TOO_FAST:
            raise ProtocolError(ErrorCode.UNSUPPORTED, f"audio at {TOO_FAST[kind]} Hz is not taken: set the "
                                "AudioSocket rate to 48 kHz or less (8 kHz is what speech needs)", fatal=True)
        if kind == DTMF:
            if not payload:
                return []
            key = Dtmf(payload[:1].decode("ascii", "replace"))
            if self.rate is None:
                if len(self._early) < MAX_EARLY_DTMF:
                    self._early.append(key)
                return []
            return [key]
        if kind == HANGUP:
            return self._ended("hangup")
        if kind == ERROR:
            code = payload[0] if payload else 0
            return self._ended("hangup" if code == 1 else "error")
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"unknown AudioSocket packet type 0x{kind:02x}")

    def _start(self, rate: int) -> list:
        """The first audio says the call's rate: its session starts, with the keys pressed before it."""
        self.rate = rate
        start = Start(call_config({"sample_rate": rate, "encoding": "pcm_s16le", **self.options}, "AudioSocket"))
        early, self._early = self._early, []
        return [start, *early]

    def _ended(self, reason: str) -> list:
        """A call that ends before its first audio still gets its session (and its keys)."""
        return [*(self._start(8000) if self.rate is None else []), Stop(reason=reason)]

    def encode_all(self, event: events.Event) -> list:
        return []
