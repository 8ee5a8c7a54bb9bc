"""Wire audio -> 16 kHz mono float32, incrementally."""

from __future__ import annotations

import numpy as np
import soxr

from ..wire.audio import ENCODINGS, MODEL_RATE, SAMPLE_BYTES


def _mulaw_table() -> np.ndarray:
    # ITU-T G.711 mu-law expansion of all 256 codes.
    codes = ~np.arange(256, dtype=np.uint8)
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = ((mantissa.astype(np.int32) << 3) + 0x84) << exponent
    pcm = np.where(sign != 0, 0x84 - magnitude, magnitude - 0x84)
    return (pcm / 32768.0).astype(np.float32)


def _alaw_table() -> np.ndarray:
    # ITU-T G.711 A-law expansion of all 256 codes (even bits inverted on the wire).
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    exponent = (codes >> 4) & 0x07
    mantissa = (codes & 0x0F) << 4
    magnitude = np.where(exponent == 0, mantissa + 8, (mantissa + 0x108) << np.maximum(exponent - 1, 0))
    pcm = np.where(codes & 0x80, magnitude, -magnitude)
    return (pcm / 32768.0).astype(np.float32)


_G711 = {"mulaw": _mulaw_table(), "alaw": _alaw_table()}


class AudioFormatError(ValueError):
    """A frame that cannot be decoded in the session's declared format."""


class AudioDecoder:
    """Decodes wire frames of one encoding/rate into 16 kHz float32 samples.

    Resampling is stateful (soxr stream) so frame boundaries leave no clicks."""

    def __init__(self, encoding: str, sample_rate: int):
        if encoding not in ENCODINGS:
            raise AudioFormatError(f"unknown encoding {encoding!r}; one of {', '.join(ENCODINGS)}")
        self.encoding = encoding
        self.sample_rate = sample_rate
        self.sample_bytes = SAMPLE_BYTES[encoding]
        self._resampler = (
            None if sample_rate == MODEL_RATE
            else soxr.ResampleStream(sample_rate, MODEL_RATE, 1, dtype="float32", quality="HQ")
        )

    def decode(self, frame: bytes) -> np.ndarray:
        if len(frame) % self.sample_bytes:
            raise AudioFormatError(
                f"audio frame of {len(frame)} bytes is not a whole number of "
                f"{self.sample_bytes}-byte {self.encoding} samples; frame dropped"
            )
        if self.encoding == "pcm_s16le":
            samples = np.frombuffer(frame, dtype="<i2").astype(np.float32) / 32768.0
        elif self.encoding == "pcm_f32le":
            samples = np.frombuffer(frame, dtype="<f4").astype(np.float32)
            if not np.all(np.isfinite(samples)):
                raise AudioFormatError("pcm_f32le frame holds NaN or infinite samples; frame dropped")
            samples = np.clip(samples, -1.0, 1.0)
        else:
            samples = _G711[self.encoding][np.frombuffer(frame, dtype=np.uint8)]
        if self._resampler is not None:
            samples = self._resampler.resample_chunk(samples)
        return samples

    def flush(self) -> np.ndarray:
        """Samples still held by the resampler at the end of the stream."""
        if self._resampler is None:
            return np.zeros(0, np.float32)
        return self._resampler.resample_chunk(np.zeros(0, np.float32), last=True)
