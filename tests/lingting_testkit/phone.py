"""Real speech as phone platforms send it: 8 kHz G.711 mu-law or L16, in the
platforms' packet sizes, one leg or two interleaved."""

from __future__ import annotations

import numpy as np

from .streams import mulaw_encode, resampled

FRAME_MS = 20          # what Twilio, AudioHook and Asterisk send per packet


def leg(path, rate: int = 8000, lead_s: float = 0.0, tail_s: float = 1.5) -> np.ndarray:
    """A clip at the phone's rate, with silence before (when the other side talks first) and after."""
    speech = resampled(path, rate)
    return np.concatenate([np.zeros(int(lead_s * rate), np.float32), speech,
                           np.zeros(int(tail_s * rate), np.float32)])


def pad_to(*legs: np.ndarray) -> list[np.ndarray]:
    n = max(len(x) for x in legs)
    return [np.pad(x, (0, n - len(x))) for x in legs]


def s16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


def interleaved(*legs: np.ndarray) -> np.ndarray:
    return np.stack(pad_to(*legs), axis=1).reshape(-1)


def packets(data: bytes, rate: int, bytes_per_sample: int, channels: int = 1) -> list[bytes]:
    size = rate * FRAME_MS // 1000 * bytes_per_sample * channels
    return [data[i:i + size] for i in range(0, len(data), size)]


def mulaw_packets(samples: np.ndarray, rate: int = 8000, channels: int = 1) -> list[bytes]:
    return packets(mulaw_encode(samples), rate, 1, channels)
