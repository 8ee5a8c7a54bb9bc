"""A live stream of several channels: a call's agent and customer legs, a
stereo mix. Each channel is a LiveStream of its own (VAD, segmenter,
stabilizer, finals in its own order), so one side talking never holds back
the other's final; their decodes go to the batch collector side by side.
Utterance indices are shared, so an index names one utterance of the stream.
Every event a channel makes says which channel and speaker it came from."""

from __future__ import annotations

import dataclasses

import numpy as np

from ..wire.errors import ErrorCode, ProtocolError
from ..text.postprocess import Recognized
from ..protocols.messages import StartConfig, Update
from ..wire.audio import SAMPLE_BYTES
from .commands import DecodeJob, Output, Send
from ..wire.events import Updated
from .live import LiveStream
from .segmenter import UtteranceNumbers


class Channels:
    def __init__(self, session_id: str, config: StartConfig):
        self.config = config
        self.numbers = UtteranceNumbers()
        self.channels = [LiveStream(session_id, config, self.numbers, channel) for channel in range(config.channels)]
        self.frame_bytes = SAMPLE_BYTES[config.encoding] * config.channels

    # ---- what the session reads ---------------------------------------------
    @property
    def audio_samples(self) -> int:
        return max(c.audio_samples for c in self.channels)

    @property
    def utterances(self) -> int:
        return self.numbers.taken

    @property
    def finals_pending(self) -> int:
        return sum(c.finals_pending for c in self.channels)

    @property
    def all_delivered(self) -> bool:
        return all(c.all_delivered for c in self.channels)

    @property
    def in_speech(self) -> bool:
        return any(c.in_speech for c in self.channels)

    # ---- input ----------------------------------------------------------------
    def audio(self, data: bytes, channel: int | None = None) -> Output:
        """Interleaved samples of every channel, or one channel's own (a platform that sends legs apart)."""
        if channel is not None:
            if not 0 <= channel < len(self.channels):
                raise ProtocolError(ErrorCode.BAD_MESSAGE, f"channel {channel} is not one of this stream's "
                                    f"{len(self.channels)}")
            return self._tagged(channel, self.channels[channel].audio(data))
        if len(data) % self.frame_bytes:
            raise ProtocolError(ErrorCode.BAD_AUDIO, f"audio frame of {len(data)} bytes is not a whole number of "
                                f"{self.frame_bytes}-byte frames ({len(self.channels)} interleaved "
                                f"{self.config.encoding} channels); frame dropped")
        frames = np.frombuffer(data, np.uint8).reshape(-1, len(self.channels), self.frame_bytes // len(self.channels))
        out = Output()
        for n, stream in enumerate(self.channels):
            out.extend(self._tagged(n, stream.audio(frames[:, n, :].tobytes())))
        return out

    def update(self, update: Update) -> Output:
        out = self._each(lambda stream: stream.update(update))
        # One `updated` for the stream, not one per channel, and untagged.
        answers = [i for i, c in enumerate(out.commands) if isinstance(c, Send) and isinstance(c.event, Updated)]
        for i in reversed(answers[1:]):
            del out.commands[i]
        return out

    def flush(self, reason: str = "flush") -> Output:
        return self._each(lambda stream: stream.flush(reason))

    def clear(self) -> Output:
        return self._each(lambda stream: stream.clear())

    def stop(self, reason: str) -> Output:
        return self._each(lambda stream: stream.stop(reason))

    # ---- results ----------------------------------------------------------------
    def on_partial(self, job: DecodeJob, recognized: Recognized | None, error: str | None, taking_input: bool) -> Output:
        return self._tagged(job.channel, self.channels[job.channel].on_partial(job, recognized, error, taking_input))

    def on_final(self, job: DecodeJob, recognized: Recognized | None, error: str | None) -> Output:
        return self._tagged(job.channel, self.channels[job.channel].on_final(job, recognized, error))

    def _each(self, step) -> Output:
        out = Output()
        for n, stream in enumerate(self.channels):
            out.extend(self._tagged(n, step(stream)))
        return out

    def _tagged(self, channel: int, out: Output) -> Output:
        speaker = self.config.speaker(channel)
        for i, command in enumerate(out.commands):
            if isinstance(command, Send) and hasattr(command.event, "channel"):
                out.commands[i] = Send(dataclasses.replace(command.event, channel=channel, speaker=speaker))
        return out


def speaker_of(stream, channel: int | None) -> tuple[int | None, str | None]:
    """(channel, speaker) for an event of a channel: untagged on a stream of one unnamed channel."""
    if not isinstance(stream, Channels):
        return None, None
    channel = channel or 0
    return channel, stream.config.speaker(channel)

