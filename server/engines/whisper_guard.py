"""Second chances for a Whisper final: guard.py trims what looks wrong, these
decode again where another decode can do better than trimming."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from ..wire.audio import MODEL_RATE
from ..wire.recognition import DecodeRequest, DecodeResult
from ..wire.words import join_units
from .guard import looks_hallucinated

log = logging.getLogger("lingting.whisper")

REST_MIN_MS = 2500          # a final whose words end this long before its audio: the rest is decoded too
REST_MAX_NO_SPEECH = 0.6    # ...and kept unless Whisper thinks it holds no speech
REST_MIN_WORDS = 5          # ...or it is a short phrase: what a crowd's noise after a speech gives ("I don't know.")
MAX_REST_DECODES = 2

# The engine's decode of a group in a window ("fit" or "full"), without the guards.
Decode = Callable[[list[DecodeRequest], str], list[DecodeResult]]


def second_chances(request: DecodeRequest, result: DecodeResult, decode: Decode, window: str) -> DecodeResult:
    """A final that looped or has words no audio backs is decoded once more,
    alone, in Whisper's own 30 s window: the silence padding a short window
    (or a longer batch partner) is what it hallucinates on. What still
    looks wrong is trimmed by decode_by_kind; partials are only trimmed."""
    if request.kind != "final":
        return result
    audio_ms = len(request.audio) * 1000 // MODEL_RATE
    if result.extra.get("loop_cut") or looks_hallucinated(result, audio_ms):
        retry = decode([request], "full")[0]
        log.info("a final looked hallucinated (%d words); decoded again in a full window: %d words%s",
                 len(result.text.split()), len(retry.text.split()),
                 ", still trimmed" if looks_hallucinated(retry, audio_ms) else "")
        result = replace(retry, extra={**retry.extra, "redecoded": True})
    return _with_the_rest(request, result, audio_ms, decode, window)


def _with_the_rest(request: DecodeRequest, result: DecodeResult, audio_ms: int, decode: Decode,
                   window: str) -> DecodeResult:
    """Whisper sometimes ends its text at the first sentence of a long final
    (16 s of two speakers gave the first 5 s: the rest was lost). Where the
    words stop well before the audio does, the audio after the last word is
    decoded on its own and what it holds is appended."""
    for _ in range(MAX_REST_DECODES):
        if not result.words or audio_ms - result.words[-1].end_ms < REST_MIN_MS:
            return result
        heard_ms = result.words[-1].end_ms
        rest = decode(
            [replace(request, audio=request.audio[heard_ms * MODEL_RATE // 1000:], hotwords=request.hotwords)],
            window)[0]
        spoken = [w for w in rest.words or () if any(c.isalnum() for c in w.word)]
        if (len(spoken) < REST_MIN_WORDS or rest.no_speech_prob > REST_MAX_NO_SPEECH
                or looks_hallucinated(rest, audio_ms - heard_ms)):
            return result
        log.info("a final's words ended %d ms before its audio: the rest held %d more words (no speech %.2f, "
                 "log prob %.2f)", audio_ms - heard_ms, len(spoken), rest.no_speech_prob, rest.avg_logprob)
        words = [*result.words, *(replace(w, start_ms=w.start_ms + heard_ms, end_ms=w.end_ms + heard_ms)
                                  for w in rest.words)]
        result = replace(result, text=join_units([result.text.strip(), rest.text.strip()]), words=words,
                         extra={**result.extra, "rest_decoded": True})
    return result
