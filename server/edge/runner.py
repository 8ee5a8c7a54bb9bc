"""One stream at the edge: executes its session's commands, and nothing else.

Send     -> the outbox; a writer task hands it to the stream's sinks (history
           stores it first), then writes it (in order)
Decode   -> the batch collector; the result goes back into the session
Expedite, Cancel -> the batch collector: a speculative final becomes a final, or is not needed
Store, Transcribe -> the file feed (file_feed.py): the upload spooled on disk,
           then read back and fed to the session as audio
Close    -> the outbox (after every event before it), then the transport closes

The transport (a WebSocket, an HTTP response) only sends events and closes; the
sinks (observers.py: history, metrics, captions, the room) see every event first."""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import Protocol

from ..services.access import AccessDenied, AccessPolicy, ApiKey
from ..wire.errors import ErrorCode, ProtocolError
from ..protocols.messages import ClientMessage, Start
from ..wire.audio import MODEL_RATE
from ..streaming.commands import (GOING_AWAY, POLICY, Cancel, Close, Decode, DecodeJob, Expedite, Output, Send, Store,
                                  Transcribe)
from ..services.metrics import Metrics
from ..wire.events import Event, Ready, UploadProgress
from ..streaming.session import End, Session, State
from .file_feed import FileFeed
from .observers import check_outputs, sinks_for
from .sinks import Sink, StreamInfo, StreamServices

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


class Outbox:
    """A stream's events on their way out, in order, on one writer task: each to
    every sink (history stores a final before anything else sees it), a problem
    a sink reports, then the event to the transport; a Close is written last."""

    def __init__(self, transport: Transport, sinks: list[Sink], size: int, session: Session, log):
        self.transport = transport
        self.sinks = sinks
        self.session = session
        self.log = log
        self.connected = True
        self.closing = False             # a Close is queued: nothing goes out after it
        self.queue: asyncio.Queue = asyncio.Queue(size)
        self.writer = asyncio.get_running_loop().create_task(self._write())

    def put(self, item: Event | Close) -> None:
        if self.closing:
            return
        self.closing = isinstance(item, Close)
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            # A reader this slow would grow memory without bound: end the stream, dropping the backlog.
            self.log.warning("session %s: client reads too slowly; closing", self.session.id)
            self.session.abort(ProtocolError(ErrorCode.TOO_SLOW, "client reads too slowly", fatal=True),
                               POLICY, "client too slow")
            self.close_now(POLICY, "client too slow")

    def close_now(self, code: int, reason: str) -> None:
        """Close at once, whatever is still queued."""
        self.closing = True
        self.writer.cancel()
        asyncio.get_running_loop().create_task(self._close_transport(code, reason))

    async def _write(self) -> None:
        while True:
            item = await self.queue.get()
            if isinstance(item, Close):
                await self._close_transport(item.code, item.reason)
                return
            try:
                await self._out(item)
            except Exception:      # one event that cannot go out must not silence the rest of the stream
                self.log.exception("session %s: could not send a %s event", self.session.id, item.type)

    async def _out(self, item: Event) -> None:
        problems = [problem for sink in self.sinks if (problem := await sink.observe(item)) is not None]
        for problem in problems:
            await self._transmit(problem.event())
        await self._transmit(item)

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


class AudioMeter:
    """Decoded audio, counted once toward metrics and the key's daily quota."""

    def __init__(self, metrics: Metrics, access: AccessPolicy):
        self.metrics = metrics
        self.access = access
        self.counted = 0                 # samples already counted

    def count(self, session: Session, key: ApiKey | None) -> ProtocolError | None:
        """The audio decoded since the last count; an error to end with once the key's minutes are used."""
        new = session.audio_samples - self.counted
        if new <= 0:
            return None
        self.counted = session.audio_samples
        self.metrics.audio_seconds.labels(session.mode).inc(new / MODEL_RATE)
        if not self.access.use_audio(key, new / MODEL_RATE):
            return ProtocolError(ErrorCode.QUOTA_EXCEEDED, f"key {key.name!r} has used its audio minutes for today "
                                 "(UTC): closing", fatal=True)
        return None


class StreamRunner:
    def __init__(self, services: StreamServices, session: Session, transport: Transport, key: ApiKey | None,
                 client: dict):
        self.services = services
        self.session = session
        self.key = key
        self.ip = client.get("address")
        self.log = logging.LoggerAdapter(log, {"session": session.id})
        self.info = StreamInfo(session, client, key.name if key else None)
        self.sinks = sinks_for(self.info, services, self._output_problem)
        self.recorder = self.sinks[0]              # history: whether the stream has a row decides a dropped one's end
        self.file = FileFeed(self, services.limits, services.spool)   # offline: the upload, and reading it back
        self.meter = AudioMeter(services.metrics, services.access)
        self.key_due: float | None = None          # monotonic deadline of a key still owed in-stream
        self.outbox = Outbox(transport, self.sinks, services.limits.send_queue, session, self.log)
        self.writer = self.outbox.writer

    @property
    def closing(self) -> bool:
        return self.outbox.closing

    # ---- into the session -------------------------------------------------
    def receive(self, message: ClientMessage) -> None:
        self._run(lambda: self._into_session(message))

    def _into_session(self, message: ClientMessage) -> Output:
        if isinstance(message, Start):
            try:
                check_outputs(message.config, self.info.owner, self.services)
            except ProtocolError as exc:
                return self.session.reject(exc)
        return self.session.receive(message)

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
            key = self.services.access.key_for(secret)
            self.services.authenticated(self, key)
        except AccessDenied as exc:
            raise ProtocolError(exc.code, exc.message, fatal=True) from None
        self.key = key
        self.key_due = None
        self.info.owner = key.name if key else None

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
                self.outbox.put(self._opened(command.event) if isinstance(command.event, Ready) else command.event)
            elif isinstance(command, Decode):
                self.services.collector.submit(command.job).add_done_callback(partial(self._decoded, command.job))
            elif isinstance(command, Expedite):
                self.services.collector.expedite(command.job)
            elif isinstance(command, Cancel):
                self.services.collector.cancel(command.job)
            elif isinstance(command, Store):
                self.file.store(command.data)
            elif isinstance(command, Transcribe):
                self.file.transcribe()
            elif isinstance(command, Close):
                self.outbox.put(command)
                self.file.stop()
        if (over := self.meter.count(self.session, self.key)) is not None:
            self.end(End.QUOTA, over)

    def _opened(self, ready: Ready) -> Ready:
        """The stream has started: its outputs open (a room gives the ready its viewer token)."""
        for sink in self.sinks:
            ready = sink.opened(ready) or ready
        return ready

    def _output_problem(self, error: ProtocolError) -> None:
        """An output could not deliver: the speaker hears of it; recognition goes on."""
        if not self.closing:
            self.outbox.put(error.event())

    def _decoded(self, job: DecodeJob, future: asyncio.Future) -> None:
        if self.session.offline:
            self.file.decode_done()
        if future.cancelled():
            return
        error = future.exception()
        self._run(lambda: self.session.on_result(job, None if error else future.result(),
                                                 str(error) if error else None))

    # ---- the end ----------------------------------------------------------
    def abort_now(self) -> None:
        """Shutdown's grace is over: close at once, whatever is still queued."""
        self.outbox.close_now(GOING_AWAY, "server shutting down")

    async def finish(self, client_left: bool) -> None:
        """The input is over. If the client left mid-stream, its open utterance is
        still decoded and stored (history keeps what was said before the line
        dropped); then wait, bounded, for what is still going out."""
        if client_left:
            self.outbox.connected = False
            for sink in self.sinks:
                sink.speaker_left()
            if self.session.state is not State.CLOSED:
                self.log.info("session %s: client left (%d finals pending)", self.session.id,
                              self.session.finals_pending)
            if self.recorder.recorded:
                self.end(End.DISCONNECT)
            else:
                self.writer.cancel()
        try:
            await asyncio.wait_for(asyncio.shield(self.writer), self.services.limits.finals_wait_s)
        except asyncio.TimeoutError:
            self.log.warning("session %s: finals still pending after %d s; giving up", self.session.id,
                             self.services.limits.finals_wait_s)
            self.writer.cancel()
        except asyncio.CancelledError:
            if not self.writer.cancelled():
                raise
        self.file.discard()
        for sink in reversed(self.sinks):       # the room first: its viewers hear it closed at once
            await sink.closed(self.session.outcome)
