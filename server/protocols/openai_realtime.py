"""OpenAI's Realtime API transcription sessions, as a codec
(codec.py's contract): its client events in, Lingting messages out; Lingting
events in, its server events out. Sans-I/O, and stateful (item ids, what
was already sent as deltas). The SDK's `client.beta.realtime.connect()`
speaks it, pointed at ws://HOST/v1/realtime.

In:  transcription_session.update {session: {input_audio_format pcm16 (24 kHz)
     | g711_ulaw | g711_alaw, input_audio_transcription {model, language,
     prompt}, turn_detection {type server_vad | semantic_vad,
     silence_duration_ms, threshold, eagerness} or null}},
     input_audio_buffer.append {audio: base64}, .commit, .clear.
Out: transcription_session.created / .updated, input_audio_buffer.speech_started
     / speech_stopped / committed / cleared,
     conversation.item.input_audio_transcription.delta / completed / failed,
     error. Every event carries an event_id; each utterance is one item.

The session starts at the first update, or at the first audio with the
defaults; after that, format, language and turn detection are fixed (a
prompt may still change: new hotwords)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from .codec import Frame, negotiate
from ..wire.errors import ErrorCode, ProtocolError, require
from ..text.hotwords import from_prompt, parse_hotwords
from .openai import check_model, iso_language, usage
from .messages import Audio, Clear, ClientMessage, Flush, Start, Update, bounded_int, load_json, parse_start
from ..wire import events
from ..wire.endpointing import EndpointConfig

SUBPROTOCOL = "realtime"              # what OpenAI's browser clients offer
HISTORY_NAME = "openai.realtime"      # what history records as the client's protocol
FORMATS = {"pcm16": (24000, "pcm_s16le"), "g711_ulaw": (8000, "mulaw"), "g711_alaw": (8000, "alaw")}
MANUAL_SILENCE_MS = 10000             # turn_detection null: commits end utterances (or this much silence)
EAGERNESS_SILENCE_MS = {"low": 1000, "medium": 600, "auto": 600, "high": 300}   # semantic_vad, as pauses
CLIENT_EVENTS = ("transcription_session.update", "input_audio_buffer.append", "input_audio_buffer.commit",
                 "input_audio_buffer.clear")


@dataclass(frozen=True)
class TurnDetection:
    type: str = "server_vad"
    silence_duration_ms: int = EndpointConfig.silence_ms
    threshold: float | None = None
    prefix_padding_ms: int = EndpointConfig.preroll_ms
    eagerness: str | None = None

    def wire(self) -> dict:
        out = {"type": self.type, "threshold": self.threshold if self.threshold is not None else 0.5,
               "prefix_padding_ms": self.prefix_padding_ms, "silence_duration_ms": self.silence_duration_ms}
        if self.eagerness:
            out["eagerness"] = self.eagerness
        return out


@dataclass(frozen=True)
class RealtimeSettings:
    input_audio_format: str = "pcm16"
    model: str = ""
    language: str | None = None
    prompt: str = ""
    turn_detection: TurnDetection | None = field(default_factory=TurnDetection)

    def fixed(self) -> tuple:
        """What a started session cannot change."""
        return self.input_audio_format, self.language, self.turn_detection

    def start(self) -> Start:
        rate, encoding = FORMATS[self.input_audio_format]
        endpointing = {"silence_ms": MANUAL_SILENCE_MS}
        turn = self.turn_detection
        if turn is not None:
            endpointing = {"silence_ms": turn.silence_duration_ms}
            if turn.threshold is not None:          # VAD threshold 0..1 -> webrtcvad strictness 0..3
                endpointing["vad_aggressiveness"] = min(3, int(turn.threshold * 4))
        return Start(parse_start({"type": "start", "sample_rate": rate, "encoding": encoding,
                                  "language": self.language or "auto", "hotwords": from_prompt(self.prompt),
                                  "endpointing": endpointing}))


def _turn_detection(value, current: TurnDetection | None) -> TurnDetection | None:
    if value is None:
        return None
    require(isinstance(value, dict), "session.turn_detection must be an object or null")
    kind = value.get("type", "server_vad")
    require(kind in ("server_vad", "semantic_vad"), "turn_detection.type must be server_vad or semantic_vad")
    turn = current or TurnDetection()
    turn = replace(turn, type=kind)
    if kind == "semantic_vad":
        eagerness = value.get("eagerness", "auto")
        require(eagerness in EAGERNESS_SILENCE_MS, "turn_detection.eagerness must be low, medium, high or auto")
        turn = replace(turn, eagerness=eagerness, silence_duration_ms=EAGERNESS_SILENCE_MS[eagerness])
    if "silence_duration_ms" in value:
        turn = replace(turn, silence_duration_ms=bounded_int(value["silence_duration_ms"],
                                                      "turn_detection.silence_duration_ms", 100, 10000))
    if "prefix_padding_ms" in value:     # accepted; the segmenter keeps its own pre-roll
        turn = replace(turn, prefix_padding_ms=bounded_int(value["prefix_padding_ms"], "turn_detection.prefix_padding_ms",
                                                    0, 10000))
    if value.get("threshold") is not None:
        threshold = value["threshold"]
        require(isinstance(threshold, (int, float)) and not isinstance(threshold, bool) and 0 <= threshold <= 1,
                "turn_detection.threshold must be a number from 0 to 1")
        turn = replace(turn, threshold=float(threshold))
    return turn


class RealtimeCodec:
    history_name = HISTORY_NAME
    api_key = None                          # the key comes in the handshake (a header, or the subprotocols)

    def __init__(self, session_id: str, model_names: tuple[str, ...], offered: Sequence[str] = ()):
        self.negotiated = negotiate(offered, (SUBPROTOCOL,))
        self.call: dict = {}
        self.session_id = session_id
        self.model_names = model_names
        self.settings = RealtimeSettings(model=model_names[0])
        self.started = False
        self._announce = False              # the start came from an update: answer it
        self._client_event_id: str | None = None
        self._events = 0
        self._sent: dict[int, str] = {}     # utterance -> transcript already sent as deltas
        self._last_item: str | None = None

    # ---- client -> Lingting ---------------------------------------------
    def greeting(self) -> list[str]:
        return [self._out("transcription_session.created", session=self._session())]

    def decode(self, frame: Frame) -> list[ClientMessage]:
        if isinstance(frame, bytes):
            raise ProtocolError(ErrorCode.BAD_MESSAGE, "send JSON text events; audio goes base64 in "
                                "input_audio_buffer.append")
        msg = load_json(frame)
        if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
            raise ProtocolError(ErrorCode.BAD_MESSAGE, "an event must be a JSON object with a 'type' string")
        event_id = msg.get("event_id")
        self._client_event_id = event_id if isinstance(event_id, str) else None
        kind = msg["type"]
        if kind == "transcription_session.update":
            return [self._update(msg.get("session"))]
        if kind == "input_audio_buffer.append":
            audio = msg.get("audio")
            require(isinstance(audio, str), "input_audio_buffer.append needs 'audio': base64 of the audio bytes")
            try:
                data = base64.b64decode(audio, validate=True)
            except (binascii.Error, ValueError):
                raise ProtocolError(ErrorCode.BAD_AUDIO, "input_audio_buffer.append: 'audio' is not base64") from None
            return self._started(Audio(data))
        if kind == "input_audio_buffer.commit":
            if not self.started:
                raise ProtocolError(ErrorCode.NO_SPEECH, "no audio to commit: the buffer is empty")
            return [Flush(require_speech=True)]
        if kind == "input_audio_buffer.clear":
            return self._started(Clear())
        if kind == "session.update":
            raise ProtocolError(ErrorCode.UNSUPPORTED, "this server runs transcription sessions: send "
                                "transcription_session.update")
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"unknown event type {kind!r}; known: {', '.join(CLIENT_EVENTS)}")

    def _started(self, message: ClientMessage) -> list[ClientMessage]:
        if self.started:
            return [message]
        self.started = True                 # audio before any update: OpenAI's defaults
        return [self.settings.start(), message]

    def _update(self, session) -> ClientMessage:
        require(isinstance(session, dict), "transcription_session.update needs a 'session' object")
        new = self.settings
        if "input_audio_format" in session:
            require(session["input_audio_format"] in FORMATS,
                    f"input_audio_format must be one of {', '.join(FORMATS)}")
            new = replace(new, input_audio_format=session["input_audio_format"])
        transcription = session.get("input_audio_transcription")
        if transcription is not None:
            require(isinstance(transcription, dict), "input_audio_transcription must be an object")
            if transcription.get("model") is not None:
                check_model(transcription["model"], self.model_names, "input_audio_transcription.model")
                new = replace(new, model=transcription["model"])
            if "language" in transcription:
                language = transcription["language"] or None
                require(language is None or isinstance(language, str), "input_audio_transcription.language must "
                        "be an ISO-639-1 code")
                new = replace(new, language=iso_language(language) if language else None)
            if "prompt" in transcription:
                require(isinstance(transcription["prompt"] or "", str), "input_audio_transcription.prompt must be "
                        "a string")
                new = replace(new, prompt=transcription["prompt"] or "")
        if "turn_detection" in session:
            new = replace(new, turn_detection=_turn_detection(session["turn_detection"], new.turn_detection))
        if not self.started:
            start = new.start()              # checked (language, prompt) before it is kept
            self.settings, self.started, self._announce = new, True, True
            return start
        if new.fixed() != self.settings.fixed():
            raise ProtocolError(ErrorCode.INVALID_FIELD, "input_audio_format, language and turn_detection are fixed "
                                "once the session has started: open a new connection to change them")
        self.settings = new
        return Update(hotwords=parse_hotwords(from_prompt(new.prompt)))

    # ---- Lingting -> client ----------------------------------------------
    def encode_all(self, event: events.Event) -> list[str]:
        if isinstance(event, events.Ready):
            announce, self._announce = self._announce, False
            return [self._updated()] if announce else []
        if isinstance(event, events.Updated):
            return [self._updated()]
        if isinstance(event, events.SpeechStarted):
            return [self._out("input_audio_buffer.speech_started", audio_start_ms=event.start_ms,
                              item_id=self._item(event.utterance))]
        if isinstance(event, events.SpeechEnded):
            return self._committed(event)
        if isinstance(event, events.Partial):
            return self._delta(event.utterance, event.stable_text)
        if isinstance(event, events.Final):
            return self._completed(event)
        if isinstance(event, events.Cleared):
            return [self._out("input_audio_buffer.cleared")]
        if isinstance(event, events.Error):
            kind = "server_error" if event.code in (ErrorCode.INTERNAL, ErrorCode.OVERLOADED) else \
                "invalid_request_error"
            return [self._out("error", error={"type": kind, "code": event.code, "message": event.message,
                                              "param": None, "event_id": self._client_event_id})]
        return []          # progress, alerts, stopped: nothing in OpenAI's vocabulary

    def _committed(self, event: events.SpeechEnded) -> list[str]:
        item = self._item(event.utterance)
        out = []
        if event.reason != "flush":       # the VAD ended it (a commit ends it too, but says only committed)
            out.append(self._out("input_audio_buffer.speech_stopped", audio_end_ms=event.end_ms, item_id=item))
        out.append(self._out("input_audio_buffer.committed", previous_item_id=self._last_item, item_id=item))
        self._last_item = item
        return out

    def _delta(self, utterance: int, text: str) -> list[str]:
        sent = self._sent.get(utterance, "")
        if len(text) <= len(sent) or not text.startswith(sent):
            return []
        self._sent[utterance] = text
        return [self._out("conversation.item.input_audio_transcription.delta", item_id=self._item(utterance),
                          content_index=0, delta=text[len(sent):])]

    def _completed(self, final: events.Final) -> list[str]:
        item = self._item(final.utterance)
        if final.error:
            self._sent.pop(final.utterance, None)
            return [self._out("conversation.item.input_audio_transcription.failed", item_id=item, content_index=0,
                              error={"type": "transcription_error", "code": ErrorCode.DECODE_FAILED,
                                     "message": final.error, "param": None})]
        # The deltas were the stable partial text; the rest of the final follows as one more delta
        # when it extends them (ITN may rewrite it: completed is the transcript to keep).
        out = self._delta(final.utterance, final.text)
        self._sent.pop(final.utterance, None)
        out.append(self._out("conversation.item.input_audio_transcription.completed", item_id=item, content_index=0,
                             transcript=final.text, usage=usage((final.end_ms - final.start_ms) / 1000)))
        return out

    # ---- shapes --------------------------------------------------------------
    def _item(self, utterance: int) -> str:
        return f"item_{self.session_id}_{utterance}"

    def _session(self) -> dict:
        s = self.settings
        return {"id": f"sess_{self.session_id}", "object": "realtime.transcription_session",
                "input_audio_format": s.input_audio_format,
                "input_audio_transcription": {"model": s.model, "language": s.language, "prompt": s.prompt},
                "turn_detection": s.turn_detection.wire() if s.turn_detection else None,
                "input_audio_noise_reduction": None, "include": [], "modalities": ["text"], "client_secret": None}

    def _updated(self) -> str:
        return self._out("transcription_session.updated", session=self._session())

    def _out(self, kind: str, **fields) -> str:
        self._events += 1
        return json.dumps({"type": kind, "event_id": f"event_{self.session_id}_{self._events}", **fields},
                          ensure_ascii=False)
