"""Upload spooling: private directories, the disk budget, the reader thread."""

import asyncio
import os
import stat
import wave

import numpy as np
import pytest

from lingting_server.streaming.audio import AudioFormatError
from lingting_server.services.uploads import FileReader, SpoolBudget, SpoolFull, Upload


def test_each_upload_has_a_private_directory_and_gives_its_space_back(tmp_path):
    budget = SpoolBudget(10)
    first, second = Upload(str(tmp_path / "spool"), budget), Upload(str(tmp_path / "spool"), budget)
    assert first.directory != second.directory
    assert stat.S_IMODE(os.stat(first.directory).st_mode) == 0o700
    first.write(b"123456")
    with pytest.raises(SpoolFull, match="full"):
        second.write(b"12345")                              # 11 bytes against 10
    second.write(b"1234")
    first.discard()
    assert not os.path.exists(first.directory) and budget.used == 4
    second.write(b"123456")
    second.discard()
    assert budget.used == 0


def write_wav(path, seconds=1.0):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
        w.writeframes((np.sin(np.arange(int(8000 * seconds)) / 3) * 5000).astype("<i2").tobytes())


async def test_the_reader_closes_after_a_read_still_running(tmp_path):
    write_wav(tmp_path / "a.wav", 40)
    reader = FileReader(str(tmp_path / "a.wav"))
    assert await reader.open() == 40000
    read = asyncio.ensure_future(reader.read())
    await asyncio.sleep(0)
    read.cancel()            # the stream went away mid-read: close queues behind the read
    reader.close()
    reader._thread.shutdown(wait=True)
    assert reader._audio is None


async def test_playlists_and_other_reference_formats_are_refused(tmp_path):
    write_wav(tmp_path / "secret.wav")
    (tmp_path / "list.txt").write_text(f"ffconcat version 1.0\nfile {tmp_path / 'secret.wav'}\n")
    reader = FileReader(str(tmp_path / "list.txt"))
    with pytest.raises(AudioFormatError, match="not an audio file FFmpeg can read.*formats: WAV"):
        await reader.open()
    reader.close()
