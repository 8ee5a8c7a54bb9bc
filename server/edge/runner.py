"""One stream at the edge: executes its session's commands, and nothing else.

Send     -> the outbox; a writer task stores it in history, then writes it (in order)
Decode   -> the batch collector; the result goes back into the session
Expedite, Cancel -> the batch collector: a speculative final becomes a final, or is not needed
Store, Transcribe -> the file feed (file_feed.py): the upload spooled on disk,
           then read back and fed to the session as audio
Close    -> the outbox (after every event before it), then the transport closes

The transport (a WebSocket, an HTTP response) only sends events and closes."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Protocol

from ..access import AccessDenied, ApiKey
from ..errors import ErrorCode, ProtocolError
from ..protocol import ClientMessage, Start, StartConfig
from ..rooms import Room
from ..streaming.audio import MODEL_RATE
from ..streaming.commands import (GOING_AWAY, POLICY, Cancel, Close, Decode, DecodeJob, Expedite, Output, Send, Store,
                                  Transcribe)
from ..streaming.events import Event, Final, Ready, UploadProgress
from ..streaming.session import End, Session, State
from .captions import CaptionOutputs
from .file_feed import FileFeed
from .observers import HistoryRecorder, MetricsObserver
from .outbound import literal_refusal

log = logging.getLogger("lingting.server")


class Gone(Exception):
    """The client is no longer there."""


class Transport(Protocol):
    async def send(self, event: Event) -> None: ...        # raises Gone
    async def close(self, code: int, reason: str) -> None: ...


class QueueTransport:
    """Events into a queue that an HTTP response reads (NDJSON lines, an
    OpenAI answer); None in the queue is the close."""

    def __init__(self):
        self.queue: asyncio.Queue = asyncio.Queue(64)
        self.gone = False

    async def send(self, event: Event) -> None:
        if self.gone:
            raise Gone
        if isinstance(event, UploadProgress) and self.queue.qsize() >= self.queue.maxsize // 2:
            # An HTTP answer is read only once its request's body is in: progress
            # that nobody reads yet is superseded by the next, so it must not
            # fill the queues and close the stream as a slow reader.
            return
        await self.queue.put(event)

    async def close(self, code: int, reason: str) -> None:
        if not self.gone:
            await self.queue.put(None)

    def reader_left(self) -> None:
        """The client is gone: nothing is read any more, so nothing may wait to be."""
        self.gone = True
        while not self.queue.empty():
            self.queue.get_nowait()

    def queued(self) -> list[Event]:
        """What is queued now, without waiting."""
        out = []
        while not self.queue.empty():
            if (event := self.queue.get_nowait()) is not None:
                out.append(event)
        return out

    async def events(self):
        while (event := await self.queue.get()) is not None:
            yield event


class StreamRunner:
    def __init__(self, lingting, session: Session, transport: Transport, key: ApiKey | None, client: dict):
        self.lingting = lingting
        self.session = session
        self.transport = transport
        self.key = key
        self.ip = client.get("address")
        self.limits = lingting.settings.limits
        self.connected = True
        self.closing = False             # a Close is queued: nothing goes out after it
        self.outbox: asyncio.Queue = asyncio.Queue(self.limits.send_queue)
        self.recorder = HistoryRecorder(lingting.history, session, client, key.name if key else None,
                                        lingting.webhook_targets, lingting.webhook_sender)
        self.room: Room | None = None                  # live streams: where viewers watch it
        self.captions: CaptionOutputs | None = None
        self.metrics = MetricsObserver(lingting.metrics, session)
        self.file = FileFeed(self)                 # offline: the upload, and reading it back
        self.counted_samples = 0                   # audio already added to metrics and quota
        self.key_due: float | None = None          # monotonic deadline of a key still owed in-stream
        self.log = logging.LoggerAdapter(log, {"session": session.id})
        self.writer = asyncio.get_running_loop().create_task(self._write())

    # ---- into the session -------------------------------------------------
    def receive(self, message: ClientMessage) -> None:
        self._run(lambda: self._into_session(message))

    def _into_session(self, message: ClientMessage) -> Output:
        if isinstance(message, Start):
            try:
                self._check_outputs(message.config)
            except ProtocolError as exc:
                return self.session.reject(exc)
        return self.session.receive(message)

    def _check_outputs(self, config: StartConfig) -> None:
        """What the edge must allow before a start is taken: its room name, a speaker
        model for diarize, its outputs' targets."""
        live = config.mode == "stream"
        if live:
            self.lingting.rooms.check_free(self.owner, config.room)
        if config.diarize and not self.lingting.model_info.get("speaker_model"):
            raise ProtocolError(ErrorCode.UNSUPPORTED, "this server has no speaker model for diarize (install the "
                                                       "diarize extra: pip install -e '.[diarize]'; see "
                                                       "--speaker-model)")
        if config.webhooks and self.lingting.history is None:
            raise ProtocolError(ErrorCode.UNSUPPORTED, "webhooks need the history database (their outbox), and "
                                                       "this server keeps none (--history-db off)")
        allow_private = self.lingting.settings.outputs.webhook_allow_private
        for target in (*config.webhooks, *config.captions):
            if (refusal := literal_refusal(target.url, allow_private)) is not None:
                raise refusal

    @property
    def owner(self) -> str | None:
        return self.key.name if self.key else None

    def receive_frame(self, decode, frame: str | bytes) -> None:
        """A frame as it came, read by the connection's codec."""
        def step() -> Output:
            try:
                messages = decode(frame)
            except ProtocolError as exc:
                return self.session.reject(exc)
            if not isinstance(messages, list):
                return self._into_session(messages)
            out = Output()          # one frame may carry several messages (an implicit start, then audio)
            for message in messages:
                out.extend(self._into_session(message))
            return out
        self._run(step)

    def reject(self, error: ProtocolError) -> None:
        self._run(lambda: self.session.reject(error))

    def authenticate(self, secret: str | None) -> None:
        """A key presented inside the stream (Twilio's customParameters), before
        its start: the stream becomes that tenant's, under its limits."""
        try:
            key = self.lingting.access.key_for(secret)
            self.lingting.authenticated(self, key)
        except AccessDenied as exc:
            raise ProtocolError(exc.code, exc.message, fatal=True) from None
        self.key = key
        self.key_due = None
        self.recorder.owner = key.name if key else None

    def end(self, why: End, error: ProtocolError | None = None) -> None:
        self._run(lambda: self.session.end(why, error))

    def abort(self, error: ProtocolError, code: int, reason: str) -> None:
        self._run(lambda: self.session.abort(error, code, reason))

    def _run(self, step) -> None:
        try:
            out = step()
        except Exception:
            self.log.exception("session %s: internal error", self.session.id)
            out = self.session.fail()
        self.apply(out)

    # ---- the commands -----------------------------------------------------
    def apply(self, out: Output) -> None:
        for command in out.commands:
            if isinstance(command, Send):
                self._queue(self._opened(command.event) if isinstance(command.event, Ready) else command.event)
            elif isinstance(command, Decode):
                self._decode(command.job)
            elif isinstance(command, Expedite):
                self.lingting.collector.expedite(command.job)
            elif isinstance(command, Cancel):
                self.lingting.collector.cancel(command.job)
            elif isinstance(command, Store):
                self.file.store(command.data)
            elif isinstance(command, Transcribe):
                self.file.transcribe()
            elif isinstance(command, Close):
                self._queue(command)
                self.file.stop()
        self._account_audio()

    def _opened(self, ready: Ready) -> Ready:
        """The stream has started: its room opens (checked free in the same step), its outputs start."""
        config = self.session.config
        if ready.room is not None:
            self.room = self.lingting.rooms.open(self.session.id, self.owner, config.room, {
                "mode": config.mode, "language": config.language, "model": self.session.model,
                "channels": ready.channels and list(ready.channels), "protocol": self.recorder.client.get("subprotocol"),
                "countdown": config.countdown})
            ready = dataclasses.replace(ready, viewer_token=self.room.token)
        if config.captions and config.mode == "stream":
            self.captions = CaptionOutputs(config.captions, self.lingting.settings.outputs.webhook_allow_private,
                                           self._output_problem, self.lingting.metrics)
        return ready

    def _output_problem(self, error: ProtocolError) -> None:
        """A caption output could not deliver: the speaker hears of it; recognition goes on."""
        if not self.closing:
            self._queue(error.event())

    def _queue(self, item: Event | Close) -> None:
        if self.closing:
            return
        self.closing = isinstance(item, Close)
        try:
            self.outbox.put_nowait(item)
        except asyncio.QueueFull:
            # A reader this slow would grow memory without bound: end the stream, dropping the backlog.
            self.log.warning("session %s: client reads too slowly; closing", self.session.id)
            self.session.abort(ProtocolError(ErrorCode.TOO_SLOW, "client reads too slowly", fatal=True),
                               POLICY, "client too slow")
            self.closing = True
            self.writer.cancel()
            asyncio.get_running_loop().create_task(self._close_transport(POLICY, "client too slow"))

    def _decode(self, job: DecodeJob) -> None:
        future = self.lingting.collector.submit(job)
        future.add_done_callback(lambda f: self._decoded(job, f))

    def _decoded(self, job: DecodeJob, future: asyncio.Future) -> None:
        self.file.decoded.set()
        if future.cancelled():
            return
        error = future.exception()
        self._run(lambda: self.session.on_result(job, None if error else future.result(),
                                                 str(error) if error else None))

    def _account_audio(self) -> None:
        """Decoded audio counts toward metrics and the key's daily quota."""
        new = self.session.audio_samples - self.counted_samples
        if new <= 0:
            return
        self.counted_samples = self.session.audio_samples
        self.lingting.metrics.audio_seconds.labels(self.session.mode).inc(new / MODEL_RATE)
        if not self.lingting.access.use_audio(self.key, new / MODEL_RATE):
            self.end(End.QUOTA, ProtocolError(ErrorCode.QUOTA_EXCEEDED, f"key {self.key.name!r} has used its audio "
                                              "minutes for today (UTC): closing", fatal=True))

    # ---- out: history first, then the client ------------------------------
    async def _write(self) -> None:
        history_writes = self.lingting.metrics.history_writes
        while True:
            item = await self.outbox.get()
            if isinstance(item, Close):
                await self._close_transport(item.code, item.reason)
                return
            try:
                await self._out(item, history_writes)
            except Exception:      # one event that cannot go out must not silence the rest of the stream
                self.log.exception("session %s: could not send a %s event", self.session.id, item.type)

    async def _out(self, item: Event, history_writes) -> None:
        started = time.perf_counter()
        failure = await self.recorder.observe(item)
        if isinstance(item, Final) and self.recorder.recorded:
            history_writes.observe(time.perf_counter() - started)
        self.metrics.observe(item)
        if self.room is not None:
            self.lingting.rooms.publish(self.room, item)
        if self.captions is not None:
            self.captions.observe(item, self._spoken_at(item))
        if failure is not None:
            await self._transmit(failure.event())
        await self._transmit(item)

    def _spoken_at(self, event: Event) -> float:
        """The wall-clock time an utterance began: now, less the audio heard since its start."""
        start_ms = getattr(event, "start_ms", None)
        if start_ms is None:
            return time.time()
        return time.time() - max(0, self.session.audio_samples * 1000 // MODEL_RATE - start_ms) / 1000

    async def _transmit(self, event: Event) -> None:
        if self.connected:
            try:
                await self.transport.send(event)
            except Gone:
                self.connected = False

    async def _close_transport(self, code: int, reason: str) -> None:
        if self.connected:
            try:
                await self.transport.close(code, reason)
            except Gone:
                pass
            self.connected = False

    # ---- the end ----------------------------------------------------------
    def abort_now(self) -> None:
        """Shutdown's grace is over: close at once, whatever is still queued."""
        self.closing = True
        self.writer.cancel()
        asyncio.get_running_loop().create_task(self._close_transport(GOING_AWAY, "server shutting down"))

    async def finish(self, client_left: bool) -> None:
        """The input is over. If the client left mid-stream, its open utterance is
        still decoded and stored (history keeps what was said before the line
        dropped); then wait, bounded, for what is still going out."""
        if client_left:
            self.connected = False
            if self.room is not None:
                self.lingting.rooms.speaker_left(self.room)
            if self.session.state is not State.CLOSED:
                self.log.info("session %s: client left (%d finals pending)", self.session.id,
                              self.session.finals_pending)
            if self.recorder.recorded:
                self.end(End.DISCONNECT)
            else:
                self.writer.cancel()
        try:
            await asyncio.wait_for(asyncio.shield(self.writer), self.limits.finals_wait_s)
        except asyncio.TimeoutError:
            self.log.warning("session %s: finals still pending after %d s; giving up", self.session.id,
                             self.limits.finals_wait_s)
            self.writer.cancel()
        except asyncio.CancelledError:
            if not self.writer.cancelled():
                raise
        self.file.discard()
        if self.room is not None:
            self.lingting.rooms.close(self.room, self.session.outcome)
        if self.captions is not None:
            await self.captions.close()
        await self.recorder.close()
