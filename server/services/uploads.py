"""Offline uploads on disk: each in a private directory of its own, all of
them under one disk budget, and read back by a thread that owns the decoder."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..streaming.audio import AudioFormatError
from ..wire.audio import MODEL_RATE



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


class SpoolFull(Exception):
    """The uploads waiting on disk would pass the server's budget."""


class SpoolBudget:
    """Bytes all uploads may hold on disk together (--max-spool-gb)."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.used = 0

    def take(self, n: int) -> None:
        if self.used + n > self.max_bytes:
            raise SpoolFull(f"this server's upload space ({self.max_bytes / 2**30:g} GiB for all uploads "
                            "waiting to be transcribed, --max-spool-gb) is full; retry later")
        self.used += n

    def give_back(self, n: int) -> None:
        self.used -= n


class Upload:
    """One uploaded file, spooled into a directory only this process can read
    (mkdtemp: mode 0700); discard() removes both and returns the space."""

    def __init__(self, root: str | None, budget: SpoolBudget):
        if root:
            os.makedirs(root, exist_ok=True)
        self.directory = tempfile.mkdtemp(prefix="lingting-upload-", dir=root)
        self.path = os.path.join(self.directory, "upload")
        self._file = open(self.path, "xb")
        self._budget = budget
        self.size = 0

    def write(self, data: bytes) -> None:
        self._budget.take(len(data))
        self.size += len(data)
        self._file.write(data)

    def complete(self) -> None:
        self._file.close()

    def discard(self) -> None:
        self._file.close()
        shutil.rmtree(self.directory, ignore_errors=True)
        self._budget.give_back(self.size)
        self.size = 0


class FileReader:
    """A FileAudio opened, read and closed on one thread of its own. FFmpeg
    crashes when a container is closed while another thread decodes it, so
    close() queues behind a read still running (after the stream went away)
    instead of racing it."""

    def __init__(self, path: str):
        self._path = path
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="lingting-file")
        self._audio: FileAudio | None = None

    async def open(self) -> int | None:
        """Opens the file; its duration in ms when the header says."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._open)

    async def read(self) -> np.ndarray | None:
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._audio.read)

    def close(self) -> None:
        self._thread.submit(self._close)
        self._thread.shutdown(wait=False)

    def _open(self) -> int | None:
        self._audio = FileAudio(self._path)
        return self._audio.duration_ms

    def _close(self) -> None:
        if self._audio is not None:
            self._audio.close()
            self._audio = None
