"""FunASR's WebSocket protocol, so its clients (funasr_wss_client.py, the
HTML5 client) work unchanged against Lingting, whatever model runs.

A codec (codec.py's contract): FunASR frames in, Lingting messages out;
Lingting events in, FunASR replies out. Sans-I/O, and stateful, because
FunASR's online text comes as increments.

In: a JSON config ({"mode": "2pass", "chunk_size": [5, 10, 5], "chunk_interval":
10, "wav_name": "x", "wav_format": "pcm", "audio_fs": 16000, "is_speaking": true,
"hotwords": "{\\"阿里巴巴\\": 20}", "itn": true}), then PCM16 frames (or a whole file
when wav_format is not pcm), then {"is_speaking": false}.
Out: {"mode": "2pass-online" | "2pass-offline" | "online" | "offline", "text",
"wav_name", "is_final", "timestamp", "stamp_sents"}."""

from __future__ import annotations

import json
from collections.abc import Sequence

from .codec import Frame, negotiate
from ..wire.audio import MODEL_RATE
from ..wire.errors import ErrorCode, ProtocolError
from ..text.hotwords import from_funasr
from .messages import Audio, ClientMessage, KeepAlive, Start, Stop, load_json, parse_start
from ..wire import events

SUBPROTOCOL = "binary"          # what FunASR's clients offer
PATHS = ("/", "/funasr")
MODES = ("online", "offline", "2pass")


class FunasrCodec:
    history_name = SUBPROTOCOL       # recorded whether or not the client offered it
    api_key = None                   # FunASR clients present their key in the handshake

    def __init__(self, offered: Sequence[str] = ()):
        self.negotiated = negotiate(offered, (SUBPROTOCOL,))
        self.call: dict = {}
        self.mode = "2pass"
        self.wav_name = "microphone"
        self.started = False
        self.ended = False           # the client said is_speaking: false
        self._sent: dict[int, str] = {}   # utterance -> online text already sent
        self._held: list[events.Final] = []        # finals after the end, until the last is known

    def greeting(self) -> list[str]:
        return []          # FunASR's server speaks after the config

    # ---- client -> Lingting ---------------------------------------------
    def decode(self, frame: Frame) -> list[ClientMessage]:
        if isinstance(frame, bytes):
            return [Audio(frame)]
        msg = load_json(frame)
        if not isinstance(msg, dict):
            raise ProtocolError(ErrorCode.BAD_MESSAGE, "a FunASR message must be a JSON object")
        if msg.get("is_speaking") is False:
            if not self.started:
                raise ProtocolError(ErrorCode.NOT_STARTED, "send the JSON config before is_speaking: false")
            self.ended = True
            return [Stop()]
        if self.started:
            return [KeepAlive()]      # FunASR clients may repeat the config; nothing changes mid-stream
        self.started = True
        return [Start(self._config(msg))]

    def _config(self, msg: dict):
        mode = msg.get("mode", "2pass")
        if mode not in MODES:
            raise ProtocolError(ErrorCode.INVALID_FIELD, f"mode must be one of {', '.join(MODES)}")
        self.mode = mode
        self.wav_name = str(msg.get("wav_name", "microphone"))[:255]
        itn = msg.get("itn", True)
        start = {"type": "start", "language": "auto", "itn": itn if isinstance(itn, bool) else True,
                 "hotwords": from_funasr(msg.get("hotwords") or msg.get("hotword"))}
        if msg.get("wav_format", "pcm") not in ("pcm", "PCM", None):
            # A whole file (wav, mp3...): Lingting's offline mode decodes the container.
            start.update(mode="offline", filename=self.wav_name)
        else:
            rate = msg.get("audio_fs", MODEL_RATE)
            start.update(sample_rate=rate, encoding="pcm_s16le", partials=mode != "offline")
        return parse_start(start)

    # ---- Lingting events -> FunASR replies ------------------------------
    def encode_all(self, event: events.Event) -> list[str]:
        if isinstance(event, events.Partial) and self.mode != "offline":
            return self._online(event.utterance, event.text, event.stable_text)
        if isinstance(event, events.Final):
            if self.ended:   # only the very last reply may say is_final: hold these until `stopped`
                self._held.append(event)
                return []
            return self._final(event, is_final=False)
        if isinstance(event, events.Stopped):
            held, self._held = self._held, []
            replies = [r for n, e in enumerate(held) for r in self._final(e, is_final=n == len(held) - 1)]
            # An end with nothing said is still acknowledged.
            return replies or [self._reply(self._pass("offline"), "", is_final=True)]
        if isinstance(event, events.Error):
            return [json.dumps({"wav_name": self.wav_name, "error": event.code, "message": event.message,
                                "is_final": event.fatal}, ensure_ascii=False)]
        return []

    def _pass(self, which: str) -> str:
        return f"2pass-{which}" if self.mode == "2pass" else self.mode

    def _online(self, utterance: int, text: str, stable: str) -> list[str]:
        """FunASR's online text comes in increments that are never taken back
        (the 2pass-offline reply corrects them). Send what the hypothesis adds
        to what was sent; when the decoder rewords what was sent, wait until
        the stable part of the hypothesis grows past it."""
        sent = self._sent.get(utterance, "")
        grown = next((t for t in (text, stable) if t.startswith(sent) and len(t) > len(sent)), None)
        if grown is None:
            return []
        self._sent[utterance] = grown
        return [self._reply(self._pass("online"), grown[len(sent):], is_final=False)]

    def _final(self, event: events.Final, is_final: bool) -> list[str]:
        text = event.text or ""
        sent = self._sent.pop(event.utterance, "")
        if self.mode == "online":   # no second pass: finish the increments
            rest = text[len(sent):] if text.startswith(sent) else text
            return [self._reply("online", rest, is_final)] if rest or is_final else []
        if not text and not is_final:
            return []
        stamps = [[w.start_ms, w.end_ms] for w in event.words or ()]
        return [self._reply(self._pass("offline"), text, is_final, timestamp=json.dumps(stamps), stamp_sents=[{
            "text_seg": text, "punc": "", "start": event.start_ms, "end": event.end_ms, "ts_list": stamps}])]

    def _reply(self, mode: str, text: str, is_final: bool, **extra) -> str:
        reply = {"mode": mode, "text": text, "wav_name": self.wav_name, "is_final": is_final, **extra}
        if is_final:
            reply["is_end"] = True
        return json.dumps(reply, ensure_ascii=False)
