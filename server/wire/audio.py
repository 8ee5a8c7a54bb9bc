"""Audio as streams carry it: the encodings a client may send, and the one rate
every engine takes (streams' clocks count samples at it)."""

from __future__ import annotations

MODEL_RATE = 16000    # what every engine takes (mono float32); streams' clocks count samples at this rate


def samples_to_ms(samples: int) -> int:
    return samples * 1000 // MODEL_RATE


ENCODINGS = ("pcm_s16le", "pcm_f32le", "mulaw", "alaw")
SAMPLE_BYTES = {"pcm_s16le": 2, "pcm_f32le": 4, "mulaw": 1, "alaw": 1}
