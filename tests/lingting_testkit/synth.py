"""Small synthetic signals for unit tests (real speech is for end-to-end tests)."""

import numpy as np

RATE = 16000


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(RATE * seconds), np.float32)


def voice(seconds: float, f0: float = 140.0) -> np.ndarray:
    """A vowel-like harmonic tone with syllable-rate amplitude movement: webrtcvad calls it speech."""
    t = np.arange(int(RATE * seconds)) / RATE
    wave = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 12))
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)
    return (0.3 * wave / np.max(np.abs(wave)) * envelope).astype(np.float32)


def to_s16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
