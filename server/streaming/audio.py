"""Wire audio -> 16 kHz mono float32, incrementally."""

from __future__ import annotations

import numpy as np
import soxr

from ..engines.base import MODEL_RATE


def samples_to_ms(samples: int) -> int:
    return samples * 1000 // MODEL_RATE


ENCODINGS = ("pcm_s16le", "pcm_f32le", "mulaw", "alaw")
SAMPLE_BYTES = {"pcm_s16le": 2, "pcm_f32le": 4, "mulaw": 1, "alaw": 1}


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


# Demuxers of real media containers. Never a playlist or a reference format
# (concat, hls, dash, image sequences...): those open other files or URLs named
# inside the upload.
MEDIA_DEMUXERS = ("wav", "w64", "mp3", "flac", "ogg", "matroska", "mov", "aac", "aiff", "caf", "amr", "au",
                  "asf", "avi", "wv", "flv", "mpeg", "mpegts")
FILE_FORMATS = "WAV, MP3, FLAC, Ogg/Opus, WebM/Matroska, MP4/M4A/MOV, AAC, AIFF, CAF, AMR, AU, WMA/ASF, AVI, WavPack, FLV, MPEG"


class FileAudio:
    """A media file in one of MEDIA_DEMUXERS (WAV, MP3, FLAC, Ogg, M4A, WebM,
    video...), decoded chunk by chunk to 16 kHz mono float32 so an hour of
    audio never sits in memory at once. Opening it reads the header only.
    Not thread-safe: one thread must open, read and close it."""

    def __init__(self, path: str, chunk_s: float = 30.0):
        import av
        try:
            self._container = av.open(str(path), metadata_errors="ignore",
                                      options={"format_whitelist": ",".join(MEDIA_DEMUXERS),
                                               "protocol_whitelist": "file"})
        except av.FFmpegError as exc:
            raise AudioFormatError(f"not an audio file FFmpeg can read ({exc.strerror}); accepted "
                                   f"formats: {FILE_FORMATS}") from None
        if not self._container.streams.audio:
            self._container.close()
            raise AudioFormatError("the file has no audio stream")
        self._stream = self._container.streams.audio[0]
        self._chunk = int(chunk_s * MODEL_RATE)
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=MODEL_RATE)
        self._frames = None
        self._done = False

    @property
    def duration_ms(self) -> int | None:
        """From the container's header; None when it does not say."""
        if self._stream.duration is not None and self._stream.time_base is not None:
            return int(self._stream.duration * self._stream.time_base * 1000)
        if self._container.duration is not None:
            return int(self._container.duration / 1000)   # av.time_base is microseconds
        return None

    def read(self) -> np.ndarray | None:
        """The next chunk (about chunk_s of audio), or None at the end."""
        import av
        if self._done:
            return None
        if self._frames is None:
            self._frames = self._container.decode(self._stream)
        parts, have = [], 0
        try:
            while have < self._chunk:
                frame = next(self._frames, None)
                resampled = self._resampler.resample(frame)   # None flushes the resampler
                for out in resampled:
                    samples = out.to_ndarray().reshape(-1)
                    parts.append(samples)
                    have += len(samples)
                if frame is None:
                    self._done = True
                    break
        except av.FFmpegError as exc:
            raise AudioFormatError(f"the file could not be decoded ({exc.strerror})") from None
        if not parts:
            return None
        return np.concatenate(parts).astype(np.float32, copy=False)

    def close(self) -> None:
        self._container.close()
