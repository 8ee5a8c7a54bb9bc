"""Any common audio file -> 16 kHz mono 16-bit PCM, through PyAV (FFmpeg)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

RATE = 16000


def decode_file(path: str | Path, rate: int = RATE) -> bytes:
    """Whole file as pcm_s16le mono at `rate`."""
    import av

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise ValueError(f"cannot open {path}: {exc}") from None
    with container:
        if not container.streams.audio:
            raise ValueError(f"{path} has no audio stream")
        resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        chunks = []
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    pcm = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
    return pcm.astype("<i2").tobytes()


def pcm_chunks(pcm: bytes, chunk_ms: int = 100, rate: int = RATE, sample_bytes: int = 2) -> Iterator[bytes]:
    step = rate * chunk_ms // 1000 * sample_bytes
    for i in range(0, len(pcm), step):
        yield pcm[i:i + step]
