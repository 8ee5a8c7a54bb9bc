"""OpenAI's audio API in its own words, sans-I/O: which model names we
answer to, its error shape, and a file's finals rendered as
/v1/audio/transcriptions answers them (json, text, srt, vtt, verbose_json,
and the streamed transcript.text.* events). The edge (edge/openai_api.py)
does the HTTP; the realtime WebSocket codec is openai_realtime.py."""

from __future__ import annotations

import math
import zlib

from ..text import export
from ..wire.errors import ErrorCode, ProtocolError
from ..wire import events
from ..wire.words import IS_CJK

# OpenAI's transcription models: a tool configured for them gets the model this server runs.
OPENAI_MODELS = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe")
RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
MEDIA_TYPES = {"json": "application/json", "verbose_json": "application/json",
               "text": "text/plain; charset=utf-8", "srt": export.FORMATS["srt"], "vtt": export.FORMATS["vtt"]}
LANGUAGE_NAMES = {"en": "english", "zh": "chinese", "ja": "japanese"}   # verbose_json names languages in full


def model_names(loaded: str, aliases: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Every name a request may give for the model this server runs."""
    return (loaded, *(a for a in aliases if a != loaded), *OPENAI_MODELS)


def check_model(requested: str | None, names: tuple[str, ...], param: str = "model") -> None:
    if requested is None or requested == "":
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"'{param}' is required: use one of {', '.join(names)}")
    if requested not in names:
        raise ProtocolError(ErrorCode.MODEL_NOT_FOUND, f"the model {requested!r} does not exist here: this server "
                            f"runs {names[0]} (also answering to {', '.join(names[1:])})")


def iso_language(value: str) -> str:
    """OpenAI takes ISO-639-1 codes; a region is dropped (en-US -> en)."""
    return value.strip().lower().split("-")[0]


# ---- errors ---------------------------------------------------------------
def error_type(status: int) -> str:
    if status == 401:
        return "authentication_error"
    if status == 429:
        return "rate_limit_error"
    return "server_error" if status >= 500 else "invalid_request_error"


def error_body(status: int, code: str, message: str, param: str | None = None) -> dict:
    """{"error": {...}} as OpenAI answers; a wrong or missing key is its invalid_api_key."""
    if status == 401:
        code = "invalid_api_key"
    return {"error": {"message": message, "type": error_type(status), "param": param, "code": code}}


# ---- a file's transcription -------------------------------------------------
def join_texts(texts: list[str]) -> str:
    """Utterances as one transcript: a space between words, none between CJK characters."""
    out = ""
    for text in (t.strip() for t in texts):
        if not text:
            continue
        if out and not (IS_CJK.match(text[0]) and IS_CJK.match(out[-1])):
            out += " "
        out += text
    return out


def usage(seconds: float) -> dict:
    return {"type": "duration", "seconds": round(seconds, 3)}


def _compression_ratio(text: str) -> float:
    # As Whisper measures it: a looping transcript compresses well.
    data = text.encode("utf-8")
    return round(len(data) / len(zlib.compress(data)), 3) if data else 0.0


def _avg_logprob(final: events.Final) -> float:
    # From the words' probabilities when they were asked for; 0.0 (certain) otherwise.
    probs = [w.probability for w in final.words or () if w.probability > 0]
    return round(sum(math.log(p) for p in probs) / len(probs), 4) if probs else 0.0


def _segment(n: int, final: events.Final, temperature: float) -> dict:
    return {"id": n, "seek": final.start_ms // 10, "start": final.start_ms / 1000, "end": final.end_ms / 1000,
            "text": final.text, "tokens": [], "temperature": temperature, "avg_logprob": _avg_logprob(final),
            "compression_ratio": _compression_ratio(final.text), "no_speech_prob": 0.0}


def language_of(finals: list[events.Final], requested: str) -> str:
    if requested != "auto":
        return requested
    heard = [f.language for f in finals if f.language and f.text]
    return max(set(heard), key=heard.count) if heard else "en"


def render(finals: list[events.Final], fmt: str, *, duration_s: float, language: str, temperature: float = 0.0,
           words: bool = False) -> str | dict:
    """The finals (in utterance order) as response_format `fmt` answers them."""
    said = [f for f in finals if f.text.strip()]
    text = join_texts([f.text for f in said])
    if fmt == "json":
        return {"text": text, "usage": usage(duration_s)}
    if fmt == "text":
        return text + "\n"
    if fmt in ("srt", "vtt"):
        return export.render({"utterances": [{"start_ms": f.start_ms, "end_ms": f.end_ms, "text": f.text}
                                             for f in said]}, fmt)
    body = {"task": "transcribe", "language": LANGUAGE_NAMES.get(language, language), "duration": round(duration_s, 3),
            "text": text, "segments": [_segment(n, f, temperature) for n, f in enumerate(said)],
            "usage": usage(duration_s)}
    if words:
        body["words"] = [{"word": w.word.strip(), "start": w.start_ms / 1000, "end": w.end_ms / 1000}
                         for f in said for w in f.words or ()]
    return body


class StreamedTranscript:
    """stream=true: each final as a `transcript.text.delta` (the text it adds,
    separator included), then `transcript.text.done` with the whole."""

    def __init__(self):
        self.text = ""

    def delta(self, final: events.Final) -> dict | None:
        joined = join_texts([self.text, final.text])
        if joined == self.text:
            return None
        delta, self.text = joined[len(self.text):], joined
        return {"type": "transcript.text.delta", "delta": delta, "logprobs": None}

    def done(self, duration_s: float) -> dict:
        return {"type": "transcript.text.done", "text": self.text, "logprobs": None, "usage": usage(duration_s)}
