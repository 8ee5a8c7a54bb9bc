"""Offline, at the edge: the uploaded file's bytes kept on disk (Store), then
read back and fed to the session as audio (Transcribe), a bounded number of
its utterances waiting for the model at a time."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Protocol

from ..wire.errors import ErrorCode, ProtocolError
from ..settings import LimitSettings
from ..streaming.audio import AudioFormatError
from ..streaming.commands import Output
from ..streaming.session import Session, State
from ..services.uploads import FileReader, SpoolBudget, SpoolFull, Upload

log = logging.getLogger("lingting.server")


class FeedHost(Protocol):
    """What the feed needs of its stream (the runner)."""
    session: Session

    @property
    def closing(self) -> bool: ...          # a Close is queued: nothing more is taken

    def apply(self, out: Output) -> None: ...

    def reject(self, error: ProtocolError) -> None: ...


class FileFeed:
    def __init__(self, host: FeedHost, limits: LimitSettings, spool: SpoolBudget):
        self.host = host
        self.limits = limits
        self.spool = spool
        self.upload: Upload | None = None
        self.kept = 0                           # bytes on disk the session has not taken yet
        self.active_at = time.monotonic()       # the last file data (or the start)
        self.decoded = asyncio.Event()          # a decode finished: feeding may go on
        self._task: asyncio.Task | None = None

    def store(self, data: bytes) -> None:
        """The session took these bytes of the file: onto disk, under the spool budget."""
        if self.kept:            # on disk already: the edge kept them before the start
            self.kept -= len(data)
            return
        self._write(data)

    def keep(self, data: bytes) -> None:
        """Bytes of the file that come before the session can start (a form's
        file, whose fields may follow it): spooled now, under the same budget,
        and told to the session later (kept_chunks) without a second copy."""
        if not self.host.closing and self._write(data):
            self.kept += len(data)

    async def kept_chunks(self, size: int) -> AsyncIterator[bytes]:
        """The kept bytes read back, for the session to take (its size limit, its progress)."""
        if self.upload is None:
            return
        self.upload.complete()
        with open(self.upload.path, "rb") as file:
            while chunk := await asyncio.to_thread(file.read, size):
                yield chunk

    def _write(self, data: bytes) -> bool:
        if self.upload is None:
            self.upload = Upload(self.limits.spool_dir, self.spool)
        try:
            self.upload.write(data)
        except SpoolFull as exc:
            self.host.reject(ProtocolError(ErrorCode.OVERLOADED, str(exc), fatal=True))
            return False
        self.active_at = time.monotonic()
        return True

    def decode_done(self) -> None:
        """One of the session's decodes finished: feeding may go on."""
        self.decoded.set()

    def transcribe(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._read())

    def stop(self) -> None:
        """The stream closes: stop reading (unless this is the reader closing it)."""
        if self._task and self._task is not asyncio.current_task():
            self._task.cancel()

    def discard(self) -> None:
        self.stop()
        if self.upload is not None:
            self.upload.discard()

    async def _read(self) -> None:
        host, session = self.host, self.host.session
        self.upload.complete()
        audio = FileReader(self.upload.path)
        try:
            host.apply(session.file_opened(await audio.open()))
            while (chunk := await audio.read()) is not None:
                host.apply(session.file_audio(chunk))
                while session.finals_pending >= self.limits.file_finals_in_flight:
                    self.decoded.clear()
                    await self.decoded.wait()
                if session.state is State.CLOSED:
                    return
            host.apply(session.file_ended())
        except AudioFormatError as exc:
            host.reject(ProtocolError(ErrorCode.BAD_AUDIO, str(exc), fatal=True))
        except Exception:
            log.exception("session %s: file transcription failed", session.id)
            host.apply(session.fail())
        finally:
            audio.close()
