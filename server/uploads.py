"""Offline uploads on disk: each in a private directory of its own, all of
them under one disk budget, and read back by a thread that owns the decoder."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .streaming.audio import FileAudio


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
